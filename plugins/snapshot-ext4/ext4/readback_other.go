//go:build !linux

package ext4

import (
	"context"
	"runtime"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// readBack would copy a written disk's filesystem out; only Linux can
// mount ext4, so a disk a VM wrote cannot be committed here.
func readBack(context.Context, string, string) error {
	return errdefs.NotImplemented("reading a written ext4 disk back (docker commit of a VM container) needs Linux; this is %s", runtime.GOOS)
}
