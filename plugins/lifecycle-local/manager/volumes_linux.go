package manager

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/plugins/lifecycle-local/rootfs"
)

// copyUp copies the content of directory dest of the image mounted at
// root into data, and gives data dest's owner and mode; a dest the image
// lacks, or that is not a directory there, leaves data as it is.
func copyUp(ctx context.Context, root, dest, data string) error {
	h, err := securejoin.OpenInRoot(root, dest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st unix.Stat_t
	err = unix.Fstat(int(h.Fd()), &st)
	h.Close()
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := rootfs.WriteTar(pw, root, dest, rootfs.TarOptions{})
		werr <- err
		pw.CloseWithError(err)
	}()
	err = rootfs.Extract(ctx, data, "/", pr, nil)
	_ = pr.CloseWithError(errors.New("copy ended"))
	if wErr := <-werr; wErr != nil {
		return wErr
	}
	if err != nil {
		return err
	}
	if err := os.Chown(data, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return os.Chmod(data, fs.FileMode(st.Mode&0o777))
}
