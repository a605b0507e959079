//go:build linux

package boot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// SwitchRoot moves the agent off the initramfs onto a fresh tmpfs, as
// switch_root does: the tmpfs gets the sandbox init (not /init: the
// running agent keeps its deleted image mapped, and a copy would only
// double its memory), the
// pseudo filesystems move over, the initramfs's files are deleted (their
// memory returns), the tmpfs is moved onto / and the agent chroots into
// it. Containers can then pivot_root, which an initramfs root refuses.
func SwitchRoot(log hclog.Logger) error {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return err
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		log.Info("root is not an initramfs; staying on it", "fs_type", fmt.Sprintf("%#x", st.Type))
		return nil
	}
	const newRoot = "/newroot"
	if err := mountAt("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return err
	}
	for _, f := range []string{SandboxInit} {
		if err := copyFile(f, filepath.Join(newRoot, f)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				log.Warn("missing from the initramfs", "file", f)
				continue
			}
			return err
		}
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := os.MkdirAll(newRoot+d, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(d, newRoot+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", d, err)
		}
	}
	var rootSt unix.Stat_t
	if err := unix.Stat("/", &rootSt); err != nil {
		return err
	}
	entries, _ := os.ReadDir("/")
	for _, e := range entries {
		if "/"+e.Name() == newRoot {
			continue
		}
		removeSameDevice("/"+e.Name(), rootSt.Dev)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the tmpfs onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the tmpfs: %w", err)
	}
	return unix.Chdir("/")
}

// removeSameDevice deletes path and what is below it on device dev,
// never crossing into another mount.
func removeSameDevice(path string, dev uint64) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Dev != dev {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		entries, _ := os.ReadDir(path)
		for _, e := range entries {
			removeSameDevice(filepath.Join(path, e.Name()), dev)
		}
	}
	_ = os.Remove(path)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
