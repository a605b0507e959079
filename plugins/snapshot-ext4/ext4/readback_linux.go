package ext4

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/clonetree"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// readBack copies the ext4 filesystem in raw image img into directory dst
// (which must not exist): img is attached to a loop device (read-write, so
// the kernel can replay a journal left by a VM that did not shut down
// cleanly: img must be a copy) and mounted read-only at a directory beside
// dst — in a private mount namespace of one locked thread, so the mount
// exists for nobody else and vanishes if the process dies — and its tree
// is copied with internal/clonetree (owners, modes, xattrs, hardlinks,
// devices). lost+found at the root is dropped: mke2fs makes its own. Root
// only.
func readBack(ctx context.Context, img, dst string) error {
	if os.Geteuid() != 0 {
		return errdefs.NotImplemented("reading a written ext4 disk back needs root (a loop mount)")
	}
	mnt := dst + ".mnt"
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return err
	}
	defer os.Remove(mnt)
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with this goroutine and
		// takes its mount namespace with it.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare a mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make the mount namespace private: %w", err)
			}
			dev, err := attachLoop(img)
			if err != nil {
				return err
			}
			err = unix.Mount(dev.Name(), mnt, "ext4", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "")
			_ = dev.Close() // autoclear: the loop device goes with the mount
			if err != nil {
				return fmt.Errorf("mount %s (%s) read-only: %w", img, dev.Name(), err)
			}
			defer func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) }()
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, err := clonetree.Tree(mnt, dst, clonetree.Options{NoClone: true}); err != nil {
				return fmt.Errorf("copy the tree out of %s: %w", img, err)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		return err
	}
	lf := filepath.Join(dst, "lost+found")
	if st, err := os.Lstat(lf); err == nil && st.IsDir() {
		return os.RemoveAll(lf)
	}
	return nil
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
