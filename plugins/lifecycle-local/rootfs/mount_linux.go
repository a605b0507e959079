package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/snapshot/mountutil"
)

// Mount mounts a snapshot's mounts (overlay or bind, as a sandbox's
// snapshotter returns them) on a new directory below under, read-only
// when readOnly, and returns that directory and the function that
// unmounts and removes it. Block images (VM snapshots) are
// ErrNotImplemented.
func Mount(mounts []mount.Mount, under string, readOnly bool) (string, func() error, error) {
	if len(mounts) == 0 {
		return "", nil, errdefs.InvalidArgument("the snapshot has no mounts")
	}
	ms := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		switch m.Type {
		case "overlay", "bind", "rbind":
		default:
			return "", nil, errdefs.NotImplemented("a %s rootfs (a VM's block image) cannot be reached from the host yet", m.Type)
		}
		m.Options = slices.Clone(m.Options)
		if readOnly {
			m.Options = append(slices.DeleteFunc(m.Options, func(o string) bool { return o == "rw" }), "ro")
		}
		ms[i] = m
	}
	if err := os.MkdirAll(under, 0o700); err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(under, "rootfs-")
	if err != nil {
		return "", nil, err
	}
	unmount, err := mountutil.MountAll(ms, dir)
	if err != nil {
		_ = os.Remove(dir)
		return "", nil, fmt.Errorf("mount the container's rootfs: %w", err)
	}
	return dir, func() error {
		err := unmount()
		if err != nil {
			return err
		}
		return os.Remove(dir)
	}, nil
}

// Cleanup unmounts and removes what Mount left below under (a process
// that died while it held a mount).
func Cleanup(under string) error {
	entries, err := os.ReadDir(under)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(under, e.Name())
		if err := mountutil.Unmount(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MountBinds bind-mounts each bind's host source at its destination
// inside root (a mounted rootfs), so a stopped container's volumes and
// binds are seen where the container sees them. Destinations resolve
// inside root, parents before children; one missing in root is skipped
// (the container would have had it made at start). It returns the
// unmount, which undoes them in reverse.
func MountBinds(root string, binds []Bind) (func() error, error) {
	binds = slices.Clone(binds)
	slices.SortStableFunc(binds, func(a, b Bind) int {
		return strings.Count(filepath.Clean(a.Destination), "/") - strings.Count(filepath.Clean(b.Destination), "/")
	})
	var done []string
	release := func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			errs = append(errs, mountutil.Unmount(done[i]))
		}
		done = nil
		return errors.Join(errs...)
	}
	for _, b := range binds {
		target, err := securejoin.SecureJoin(root, b.Destination)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("mount point %s: %w", b.Destination, err), release())
		}
		if _, err := os.Lstat(target); err != nil {
			continue
		}
		opts := []string{"rbind"}
		if b.ReadOnly {
			opts = append(opts, "ro")
		}
		if err := mountutil.Mount(mount.Mount{Type: "bind", Source: b.Source, Options: opts}, target); err != nil {
			return nil, errors.Join(err, release())
		}
		done = append(done, target)
	}
	return release, nil
}
