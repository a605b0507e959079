package rootfs

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/archive"
)

// Extract applies the tar r in dir, an existing directory inside root
// (symlinks in dir resolved inside root). Entries are applied with the
// hardened layer applier: a name that climbs out of dir, a hard link to
// outside it, or an entry below a symlink is refused with
// ErrInvalidArgument; owners and modes are taken from the tar.
func Extract(ctx context.Context, root, dir string, r io.Reader, log hclog.Logger) error {
	d, err := openDirInRoot(root, dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// The applier opens its root by path: the descriptor's magic link is
	// the directory already resolved, whatever happens to dir meanwhile.
	fdPath := "/proc/self/fd/" + strconv.Itoa(int(d.Fd()))
	if _, err := archive.Apply(ctx, fdPath, r, archive.Options{Whiteouts: archive.WhiteoutDelete, Logger: log}); err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	return nil
}
