package ext4

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/clonetree"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// readBack copies the ext4 filesystem in raw image img into directory dst
// (which must not exist). img is attached to a loop device (read-write, so
// the kernel can replay a journal left by a VM that did not shut down
// cleanly: img must be a copy) and mounted read-only as a detached mount
// (fsopen/fsmount: it is in no mount namespace, so no other process's
// unshare can copy and pin it, and it vanishes with its file descriptor,
// also when this process dies); its tree is copied through
// /proc/self/fd/N/ with internal/clonetree (owners, modes, xattrs,
// hardlinks, devices). lost+found at the root is dropped: mke2fs makes
// its own. Root only.
func readBack(ctx context.Context, img, dst string) error {
	if os.Geteuid() != 0 {
		return errdefs.NotImplemented("reading a written ext4 disk back needs root (a loop mount)")
	}
	dev, err := attachLoop(img)
	if err != nil {
		return err
	}
	mfd, err := mountDetached(dev.Name())
	_ = dev.Close() // autoclear: the loop device goes with the mount
	if err != nil {
		return fmt.Errorf("mount %s (%s) read-only: %w", img, dev.Name(), err)
	}
	defer unix.Close(mfd)
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := clonetree.Tree(fmt.Sprintf("/proc/self/fd/%d/", mfd), dst, clonetree.Options{NoClone: true}); err != nil {
		return fmt.Errorf("copy the tree out of %s: %w", img, err)
	}
	lf := filepath.Join(dst, "lost+found")
	if st, err := os.Lstat(lf); err == nil && st.IsDir() {
		return os.RemoveAll(lf)
	}
	return nil
}

// mountDetached mounts the ext4 on device read-only, nodev, nosuid, noexec
// as a detached mount and returns its file descriptor.
func mountDetached(device string) (int, error) {
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen ext4: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", device); err != nil {
		return -1, fmt.Errorf("fsconfig source: %w", err)
	}
	if err := unix.FsconfigSetFlag(fsfd, "ro"); err != nil {
		return -1, fmt.Errorf("fsconfig ro: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("fsconfig create: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsmount: %w", err)
	}
	return mfd, nil
}

// attachLoop attaches img to a free loop device with autoclear and returns
// the open device.
func attachLoop(img string) (*os.File, error) {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()
	for range 32 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open loop device %d: %w", n, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		_ = dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach %s to loop device %d: %w", img, n, err)
		}
		// Another process took it between GET_FREE and CONFIGURE.
	}
	return nil, fmt.Errorf("attach %s: every free loop device was taken by someone else", img)
}
