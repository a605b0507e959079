package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// WriteTar writes p (a path inside root) and, for a directory, everything
// below it to w as a tar. A symlink at p itself is written as a link, not
// followed (docker cp); symlinks in the components before it are resolved
// inside root. A missing p is ErrNotFound.
func WriteTar(w io.Writer, root, p string, opts TarOptions) error {
	parent, base := splitPath(p)
	dir, err := openDirInRoot(root, parent)
	if err != nil {
		return err
	}
	defer dir.Close()
	tw := tar.NewWriter(w)
	tw2 := &tarWalker{tw: tw, skip: opts.Skip, links: map[fileID]string{}}
	if base == "" { // the root itself
		if opts.Name != "" {
			var st unix.Stat_t
			if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
				return fmt.Errorf("stat the container's root: %w", err)
			}
			if err := tw2.header(&st, opts.Name+"/", tar.TypeDir, ""); err != nil {
				return err
			}
		}
		err = tw2.dirContent(dir, "/", opts.Name)
	} else {
		err = tw2.entry(int(dir.Fd()), base, path.Join(parent, base), opts.Name, opts.Name != "")
	}
	if err != nil {
		return err
	}
	return tw.Close()
}

// splitPath cleans p (relative to "/") into its parent and base name; base
// is "" for the root.
func splitPath(p string) (string, string) {
	p = path.Clean("/" + p)
	if p == "/" {
		return "/", ""
	}
	return path.Dir(p), path.Base(p)
}

// openDirInRoot opens directory p inside root for reading, resolving
// symlinks inside root.
func openDirInRoot(root, p string) (*os.File, error) {
	h, err := securejoin.OpenInRoot(root, p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound("no such directory in the container: %s", p)
		}
		return nil, fmt.Errorf("open %s in the container: %w", p, err)
	}
	defer h.Close()
	d, err := securejoin.Reopen(h, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return nil, errdefs.InvalidArgument("%s in the container is not a directory", p)
		}
		return nil, fmt.Errorf("open %s in the container: %w", p, err)
	}
	return d, nil
}

type fileID struct{ dev, ino uint64 }

type tarWalker struct {
	tw    *tar.Writer
	skip  func(string) bool
	links map[fileID]string
}

// entry writes the entry name (relative to dirfd) as tarName and, with
// self set, the entry itself; a directory's content follows.
func (t *tarWalker) entry(dirfd int, name, inRoot, tarName string, self bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errdefs.NotFound("no such file or directory in the container: %s", inRoot)
		}
		return fmt.Errorf("stat %s: %w", inRoot, err)
	}
	if tarName == "" && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errdefs.InvalidArgument("%s in the container is not a directory", inRoot)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", inRoot, err)
		}
		d := os.NewFile(uintptr(fd), inRoot)
		defer d.Close()
		if err := unix.Fstat(int(d.Fd()), &st); err != nil {
			return fmt.Errorf("stat %s: %w", inRoot, err)
		}
		if self {
			if err := t.header(&st, tarName+"/", tar.TypeDir, ""); err != nil {
				return err
			}
		}
		if t.skip != nil && inRoot != "/" && t.skip(inRoot) {
			return nil
		}
		return t.dirContent(d, inRoot, tarName)
	case unix.S_IFREG:
		return t.file(dirfd, name, inRoot, tarName)
	case unix.S_IFLNK:
		target, err := readlinkat(dirfd, name)
		if err != nil {
			return fmt.Errorf("read link %s: %w", inRoot, err)
		}
		return t.header(&st, tarName, tar.TypeSymlink, target)
	case unix.S_IFCHR:
		return t.header(&st, tarName, tar.TypeChar, "")
	case unix.S_IFBLK:
		return t.header(&st, tarName, tar.TypeBlock, "")
	case unix.S_IFIFO:
		return t.header(&st, tarName, tar.TypeFifo, "")
	default: // sockets have no tar form
		return nil
	}
}

// dirContent writes the entries of the open directory d, sorted by name.
func (t *tarWalker) dirContent(d *os.File, inRoot, tarName string) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", inRoot, err)
	}
	slices.Sort(names)
	for _, n := range names {
		child := n
		if tarName != "" {
			child = tarName + "/" + n
		}
		if err := t.entry(int(d.Fd()), n, path.Join(inRoot, n), child, true); err != nil {
			if errdefs.IsNotFound(err) {
				continue // removed while we walked
			}
			return err
		}
	}
	return nil
}

// file writes a regular file, opened without following symlinks and
// without blocking (it may have become a FIFO since the stat), as a hard
// link when an earlier entry is the same inode.
func (t *tarWalker) file(dirfd int, name, inRoot, tarName string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errdefs.NotFound("no such file in the container: %s", inRoot)
		}
		return fmt.Errorf("open %s: %w", inRoot, err)
	}
	f := os.NewFile(uintptr(fd), inRoot)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", inRoot, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil // changed under us; skip it
	}
	id := fileID{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if first, ok := t.links[id]; ok {
			return t.header(&st, tarName, tar.TypeLink, first)
		}
		t.links[id] = tarName
	}
	if err := t.header(&st, tarName, tar.TypeReg, ""); err != nil {
		return err
	}
	n, err := io.Copy(t.tw, io.LimitReader(f, st.Size))
	if err != nil {
		return fmt.Errorf("read %s: %w", inRoot, err)
	}
	if n < st.Size { // shrank while we read: pad, the header is written
		if _, err := io.CopyN(t.tw, zeros{}, st.Size-n); err != nil {
			return err
		}
	}
	return nil
}

func (t *tarWalker) header(st *unix.Stat_t, name string, typ byte, link string) error {
	h := &tar.Header{
		Typeflag: typ, Name: strings.TrimPrefix(name, "/"), Linkname: link,
		Mode: int64(st.Mode & 0o7777),
		Uid:  int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	if typ == tar.TypeReg {
		h.Size = st.Size
	}
	if typ == tar.TypeChar || typ == tar.TypeBlock {
		h.Devmajor, h.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
	}
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar entry %s: %w", name, err)
	}
	return nil
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
