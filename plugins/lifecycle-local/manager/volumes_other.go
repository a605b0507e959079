//go:build !linux

package manager

import (
	"context"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// copyUp needs a rootfs mounted on the host, which only Linux does here.
func copyUp(context.Context, string, string, string) error {
	return errdefs.NotImplemented("filling a volume from the image is implemented on Linux only")
}
