//go:build !linux

package mountutil

import (
	"runtime"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
)

type flagOption struct {
	flag  uintptr
	clear bool
}

var flagOptions = map[string]flagOption{}

// Mount is not available here: darwin snapshots are plain directories that
// VMs share, not mounts the host performs.
func Mount(m mount.Mount, target string) error {
	return errdefs.NotImplemented("mount %s on %s: performing mounts is Linux-only (%s)", m.Type, target, runtime.GOOS)
}

// Unmount: see Mount.
func Unmount(target string) error {
	return errdefs.NotImplemented("unmount %s: Linux-only (%s)", target, runtime.GOOS)
}

// MountAll: see Mount.
func MountAll(mounts []mount.Mount, target string) (func() error, error) {
	return nil, errdefs.NotImplemented("performing mounts is Linux-only (%s)", runtime.GOOS)
}
