package ext4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/snapshot"
)

// linkTree makes dst (which must not exist) a copy of tree src that shares
// every non-directory with it: directories are made anew with src's mode,
// owner, xattrs and times, everything else is hardlinked. It is how a
// snapshot's tree is based on its parent's, and it is safe because nothing
// ever changes a tree's non-directory in place: sdk/archive creates every
// file, symlink and node anew (O_EXCL after unlinking what was there),
// hardlink entries only add names, readback writes fresh trees, and
// removal only unlinks names. Where a link is refused (EMLINK: the
// filesystem's link limit, e.g. 65000 on ext4; EXDEV; EPERM) the entry is
// copied. It returns how many entries it linked and copied.
func linkTree(src, dst string) (linked, copied int, err error) {
	if _, err := os.Lstat(dst); err == nil {
		return 0, 0, fmt.Errorf("link tree %s to %s: destination exists", src, dst)
	}
	l := &linker{privileged: os.Geteuid() == 0}
	if err := l.dir(src, dst); err != nil {
		_ = os.RemoveAll(dst)
		return l.linked, l.copied, err
	}
	return l.linked, l.copied, nil
}

type linker struct {
	privileged     bool
	linked, copied int
}

func (l *linker) dir(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("link tree: %s is not a directory", src)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if e.IsDir() {
			if err := l.dir(s, d); err != nil {
				return err
			}
			continue
		}
		err := unix.Linkat(unix.AT_FDCWD, s, unix.AT_FDCWD, d, 0) // the entry itself, symlinks too
		if err == nil {
			l.linked++
			continue
		}
		if !errors.Is(err, unix.EMLINK) && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EPERM) {
			return &os.LinkError{Op: "link", Old: s, New: d, Err: err}
		}
		if err := l.copyEntry(s, d); err != nil {
			return err
		}
		l.copied++
	}
	return l.meta(src, dst, &st)
}

// copyEntry copies non-directory src to dst with its metadata.
func (l *linker) copyEntry(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default:
		if err := unix.Mknod(dst, uint32(st.Mode), int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	}
	return l.meta(src, dst, &st)
}

// meta gives dst (a new entry) the owner, mode, xattrs and times of src.
func (l *linker) meta(src, dst string, st *unix.Stat_t) error {
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if l.privileged {
		if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return &os.PathError{Op: "lchown", Path: dst, Err: err}
		}
	}
	if !isLink {
		if err := unix.Chmod(dst, uint32(st.Mode)&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	if size, err := unix.Llistxattr(src, nil); err == nil && size > 0 {
		names := make([]byte, size)
		if size, err = unix.Llistxattr(src, names); err == nil {
			for _, name := range strings.Split(strings.TrimRight(string(names[:size]), "\x00"), "\x00") {
				vsize, err := unix.Lgetxattr(src, name, nil)
				if err != nil {
					continue
				}
				val := make([]byte, vsize)
				if vsize, err = unix.Lgetxattr(src, name, val); err != nil {
					continue
				}
				if err := unix.Lsetxattr(dst, name, val[:vsize], 0); err != nil &&
					!errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
					return fmt.Errorf("copy xattr %s to %s: %w", name, dst, err)
				}
			}
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

// treeUsage measures the entries of tree that are not parent's too (trees
// share their parent's files through hardlinks): their allocated bytes
// and count, each inode once. A missing tree measures nothing.
func treeUsage(ctx context.Context, tree, parent string) (snapshot.Usage, error) {
	type ino struct{ dev, ino uint64 }
	walk := func(dir string, fn func(k ino, st *unix.Stat_t)) error {
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			fn(ino{uint64(st.Dev), uint64(st.Ino)}, &st)
			return nil
		})
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	seen := map[ino]bool{}
	if parent != "" {
		if err := walk(parent, func(k ino, st *unix.Stat_t) {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
				seen[k] = true
			}
		}); err != nil {
			return snapshot.Usage{}, err
		}
	}
	var u snapshot.Usage
	err := walk(tree, func(k ino, st *unix.Stat_t) {
		if seen[k] {
			return
		}
		seen[k] = true
		u.Inodes++
		u.Size += int64(st.Blocks) * 512
	})
	return u, err
}
