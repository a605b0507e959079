// Package clonetree copies a directory tree so that the copy shares its
// file data with the original wherever the filesystem can: each regular
// file is cloned (copy-on-write) by a Cloner — clonefile(2) on darwin's
// APFS, the FICLONE reflink ioctl on Linux (xfs with reflink=1, btrfs) —
// and copied byte for byte where cloning is not supported (ENOTSUP,
// EOPNOTSUPP, EXDEV, EINVAL). Everything else is recreated: directories,
// symlinks, hardlinks (files linked together in the source are linked
// together in the copy), FIFOs and device nodes (as root), permission bits,
// ownership (as root), extended attributes and times.
//
// The walk never follows a symlink. The tree being copied must not change
// while Tree runs.
package clonetree

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Cloner creates file dst as a copy-on-write clone of the open regular file
// src (dst does not exist). It returns an error for which NotSupported is
// true when the filesystem cannot clone, so the caller copies instead.
type Cloner interface {
	Clone(src *os.File, dst string) error
}

// ClonerFunc adapts a function to Cloner.
type ClonerFunc func(src *os.File, dst string) error

// Clone calls f.
func (f ClonerFunc) Clone(src *os.File, dst string) error { return f(src, dst) }

// Stats counts what Tree did.
type Stats struct {
	// Cloned and Copied count regular files by how their data was
	// duplicated; Linked counts hardlinks recreated.
	Cloned, Copied, Linked int
	// CopiedBytes is the data written by copying (not cloning).
	CopiedBytes int64
}

// Options tune Tree.
type Options struct {
	// Cloner clones regular files; nil means the platform's (Platform).
	Cloner Cloner
	// NoClone copies every file without trying to clone.
	NoClone bool
}

// NotSupported reports whether err says the filesystem cannot clone this
// file, so it must be copied.
func NotSupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.ENOTTY)
}

type inode struct{ dev, ino uint64 }

type copier struct {
	opts       Options
	privileged bool
	links      map[inode]string
	stats      Stats
	buf        []byte
}

// Tree copies directory src to dst, which must not exist; see the package
// comment. On error dst is removed.
func Tree(src, dst string, opts Options) (Stats, error) {
	if opts.Cloner == nil {
		opts.Cloner = Platform()
	}
	c := &copier{opts: opts, privileged: os.Geteuid() == 0, links: map[inode]string{}}
	if _, err := os.Lstat(dst); err == nil {
		return Stats{}, fmt.Errorf("clone %s to %s: destination exists", src, dst)
	}
	st, err := lstat(src)
	if err != nil {
		return Stats{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return Stats{}, fmt.Errorf("clone %s: not a directory", src)
	}
	if err := c.dir(src, dst, st); err != nil {
		_ = os.RemoveAll(dst)
		return c.stats, err
	}
	return c.stats, nil
}

func lstat(p string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &st, nil
}

func (c *copier) dir(src, dst string, st *unix.Stat_t) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		est, err := lstat(s)
		if err != nil {
			return err
		}
		if err := c.entry(s, d, est); err != nil {
			return err
		}
	}
	return c.meta(src, dst, st)
}

func (c *copier) entry(src, dst string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return c.dir(src, dst, st)
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := inode{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := c.links[key]; ok {
				if err := os.Link(first, dst); err != nil {
					return err
				}
				c.stats.Linked++
				return nil
			}
			c.links[key] = dst
		}
		if err := c.file(src, dst, st); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default: // FIFOs, sockets, devices
		if st.Mode&unix.S_IFMT != unix.S_IFIFO && !c.privileged {
			return nil
		}
		if err := unix.Mknod(dst, uint32(st.Mode), int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	}
	return c.meta(src, dst, st)
}

func (c *copier) file(src, dst string, st *unix.Stat_t) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if !c.opts.NoClone {
		err := c.opts.Cloner.Clone(f, dst)
		if err == nil {
			c.stats.Cloned++
			return nil
		}
		if !NotSupported(err) {
			return fmt.Errorf("clone %s: %w", src, err)
		}
		_ = os.Remove(dst) // a half-made clone
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if c.buf == nil {
		c.buf = make([]byte, 1<<20)
	}
	n, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{f}, c.buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	c.stats.Copied++
	c.stats.CopiedBytes += n
	return nil
}

// meta copies owner, mode, xattrs and times from src to dst.
func (c *copier) meta(src, dst string, st *unix.Stat_t) error {
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if c.privileged {
		if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return &os.PathError{Op: "lchown", Path: dst, Err: err}
		}
	}
	if !isLink {
		if err := unix.Chmod(dst, uint32(st.Mode)&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	if err := copyXattrs(src, dst, c.privileged); err != nil {
		return err
	}
	ts := []unix.Timespec{atime(st), mtime(st)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

func copyXattrs(src, dst string, privileged bool) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		return nil // no xattrs, or none this filesystem keeps
	}
	names := make([]byte, size)
	size, err = unix.Llistxattr(src, names)
	if err != nil {
		return nil
	}
	for _, name := range splitNul(names[:size]) {
		vsize, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, vsize)
		if vsize, err = unix.Lgetxattr(src, name, val); err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, val[:vsize], 0); err != nil {
			if NotSupported(err) || (!privileged && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES))) {
				continue
			}
			return fmt.Errorf("copy xattr %s to %s: %w", name, dst, err)
		}
	}
	return nil
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, ch := range b {
		if ch == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}
