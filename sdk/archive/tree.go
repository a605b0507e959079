//go:build unix

package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// tree is the root of one Apply: a descriptor of the root directory from
// which every path is resolved without following symlinks, and the state the
// layer builds up.
type tree struct {
	root       string
	rootFD     int
	mode       WhiteoutMode
	parents    []string
	privileged bool
	log        hclog.Logger
	buf        []byte
	ctx        context.Context // stops long file copies

	// written holds every path this layer wrote, below every directory
	// with written entries beneath it (for whiteouts, which hide only
	// what lower layers have).
	written, below map[string]struct{}
	// dirTimes are applied, last first, once the layer is in.
	dirTimes []dirTime
	// cached is the last parent directory resolved, kept open because tar
	// entries come grouped by directory.
	cachedRel string
	cachedFD  int
}

func openTree(root string, opts Options) (*tree, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open layer root %s: %w", root, err)
	}
	return &tree{
		root:       root,
		rootFD:     fd,
		mode:       opts.Whiteouts,
		parents:    opts.Parents,
		privileged: os.Geteuid() == 0,
		log:        opts.Logger,
		buf:        make([]byte, 1<<20),
		written:    map[string]struct{}{},
		below:      map[string]struct{}{},
		cachedFD:   -1,
	}, nil
}

func (t *tree) close() {
	t.forget("")
	closeFD(t.rootFD)
}

// path returns the host path of rel, for the few calls that take a path (on
// a tree whose parents were verified to be real directories).
func (t *tree) path(rel string) string { return filepath.Join(t.root, rel) }

// forget drops the cached directory descriptor if it is rel or below it
// ("" drops it whatever it is): rel was removed or replaced.
func (t *tree) forget(rel string) {
	if t.cachedFD < 0 {
		return
	}
	if rel == "" || t.cachedRel == rel || strings.HasPrefix(t.cachedRel, rel+"/") {
		closeFD(t.cachedFD)
		t.cachedFD, t.cachedRel = -1, ""
	}
}

// dir returns a descriptor of directory rel ("" is the root), owned by the
// tree: callers must not close it, and it stays valid until the next call of
// dir or forget. With create, missing directories are made.
func (t *tree) dir(entry, rel string, create bool) (int, error) {
	if rel == "" {
		return t.rootFD, nil
	}
	if t.cachedFD >= 0 && t.cachedRel == rel {
		return t.cachedFD, nil
	}
	fd, err := t.open(entry, rel, create)
	if err != nil {
		return -1, err
	}
	t.forget("")
	t.cachedFD, t.cachedRel = fd, rel
	return fd, nil
}

// open returns a new descriptor of directory rel (not "") that the caller
// closes. No component may be a symlink or a non-directory.
func (t *tree) open(entry, rel string, create bool) (int, error) {
	if fd, err := openBeneath(t.rootFD, rel); err == nil {
		return fd, nil
	}
	// Slow path: one component at a time, to create what is missing and to
	// say precisely what is wrong.
	cur := t.rootFD
	walked := ""
	for comp := range strings.SplitSeq(rel, "/") {
		if walked == "" {
			walked = comp
		} else {
			walked += "/" + comp
		}
		fd, err := openDirAt(cur, comp)
		if errors.Is(err, unix.ENOENT) && create {
			if err := t.mkparent(entry, cur, walked, comp); err != nil {
				if cur != t.rootFD {
					closeFD(cur)
				}
				return -1, err
			}
			fd, err = openDirAt(cur, comp)
		}
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EMLINK) {
				err = describeNonDir(cur, comp, walked, entry)
			} else if errors.Is(err, unix.ENOENT) {
				err = &EntryError{Entry: entry, Err: fmt.Errorf("parent directory %q: %w", walked, os.ErrNotExist)}
			} else {
				err = entryErr(entry, fmt.Errorf("open parent directory %q: %w", walked, err))
			}
			if cur != t.rootFD {
				closeFD(cur)
			}
			return -1, err
		}
		if cur != t.rootFD {
			closeFD(cur)
		}
		cur = fd
	}
	return cur, nil
}

// describeNonDir explains why component comp (at walked) cannot be a parent.
func describeNonDir(dirFD int, comp, walked, entry string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, comp, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, _ := readlinkAt(dirFD, comp)
		return unsafe(entry, "parent %q is a symlink (to %q); refusing to write through it", walked, target)
	}
	return unsafe(entry, "parent %q is not a directory", walked)
}

// mkparent makes directory comp (at rel) in dirFD for an entry whose parent
// the layer did not list, copying the attributes the directory has in the
// first of the parents that has it.
func (t *tree) mkparent(entry string, dirFD int, rel, comp string) error {
	if err := mkdirat(dirFD, comp, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return entryErr(entry, fmt.Errorf("create parent directory %q: %w", rel, err))
	}
	for _, p := range t.parents {
		st, ok := lstatBeneath(p, rel)
		if !ok {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			break // a lower non-directory: the new directory hides it
		}
		fd, err := openDirAt(dirFD, comp)
		if err != nil {
			return entryErr(entry, err)
		}
		defer closeFD(fd)
		if t.privileged {
			if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
				return entryErr(entry, fmt.Errorf("chown parent directory %q: %w", rel, err))
			}
		}
		if err := unix.Fchmod(fd, uint32(st.Mode)&0o7777); err != nil {
			return entryErr(entry, fmt.Errorf("chmod parent directory %q: %w", rel, err))
		}
		t.dirTimes = append(t.dirTimes, dirTime{rel: rel, entry: entry,
			atime: time.Unix(statAtime(&st)), mtime: time.Unix(statMtime(&st))})
		return nil
	}
	return nil
}

// lstatBeneath stats rel under root without following any symlink.
func lstatBeneath(root, rel string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, false
	}
	defer closeFD(rfd)
	dir, base := splitRel(rel)
	pfd := rfd
	if dir != "" {
		fd, err := openBeneath(rfd, dir)
		if err != nil {
			fd = -1
			cur := rfd
			for comp := range strings.SplitSeq(dir, "/") {
				next, err := openDirAt(cur, comp)
				if cur != rfd {
					closeFD(cur)
				}
				if err != nil {
					return st, false
				}
				cur = next
			}
			fd = cur
		}
		defer closeFD(fd)
		pfd = fd
	}
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, false
	}
	return st, true
}

// statInfo is what the applier needs of an lstat.
type statInfo struct {
	isDir bool
}

// lstatAt reports whether name exists in dirFD, without following it.
func lstatAt(dirFD int, name string, si *statInfo) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lstat %q: %w", name, err)
	}
	si.isDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	return true, nil
}

func openDirAt(dirFD int, name string) (int, error) {
	return unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

func createAt(dirFD int, name string) (int, error) {
	return unix.Openat(dirFD, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

func mkdirat(dirFD int, name string, mode uint32) error { return unix.Mkdirat(dirFD, name, mode) }

func symlinkat(target string, dirFD int, name string) error {
	return unix.Symlinkat(target, dirFD, name)
}

func linkat(oldDirFD int, oldName string, newDirFD int, newName string) error {
	return unix.Linkat(oldDirFD, oldName, newDirFD, newName, 0)
}

func readlinkAt(dirFD int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirFD, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func closeFD(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}

// chownAt changes the owner of name in dirFD (through fd when it is open),
// never following a symlink.
func chownAt(dirFD int, name string, fd, uid, gid int) error {
	if fd >= 0 {
		return unix.Fchown(fd, uid, gid)
	}
	return unix.Fchownat(dirFD, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// chmodAt sets the permission bits of name in dirFD (never a symlink: the
// caller created it just now as a non-symlink).
func chmodAt(dirFD int, name string, fd int, mode uint32) error {
	if fd >= 0 {
		return unix.Fchmod(fd, mode)
	}
	return unix.Fchmodat(dirFD, name, mode, 0)
}

func utimesAt(dirFD int, name string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return unix.UtimesNanoAt(dirFD, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// readDirNames lists dirFD without disturbing its offset.
func readDirNames(dirFD int) ([]string, error) {
	fd, err := unix.Openat(dirFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeAllAt removes name from dirFD and, if it is a directory, everything
// below it, never following a symlink. A missing name is not an error.
func removeAllAt(dirFD int, name string) error {
	err := unix.Unlinkat(dirFD, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	fd, oerr := openDirAt(dirFD, name)
	if oerr != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	names, lerr := readDirNames(fd)
	if lerr == nil {
		for _, n := range names {
			if lerr = removeAllAt(fd, n); lerr != nil {
				break
			}
		}
	}
	closeFD(fd)
	if lerr != nil {
		return lerr
	}
	if err := unix.Unlinkat(dirFD, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove directory %q: %w", name, err)
	}
	return nil
}

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT)
}

func isNotSupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// charDevice is the file type of an overlayfs whiteout (a 0:0 character
// device).
const charDevice = unix.S_IFCHR
