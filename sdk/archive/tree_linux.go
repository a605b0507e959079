package archive

import (
	"archive/tar"
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noOpenat2 is set once the kernel says it has no openat2 (before 5.6).
var noOpenat2 atomic.Bool

// openBeneath opens directory rel below dirFD in one system call, refusing
// any symlink on the way; an error sends the caller to the component walk.
func openBeneath(dirFD int, rel string) (int, error) {
	if noOpenat2.Load() {
		return -1, unix.ENOSYS
	}
	fd, err := unix.Openat2(dirFD, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		noOpenat2.Store(true)
	}
	return fd, err
}

func mknodat(dirFD int, _ string, name string, mode uint32, major, minor int64) error {
	return unix.Mknodat(dirFD, name, mode, int(unix.Mkdev(uint32(major), uint32(minor))))
}

func fsetxattr(fd int, name string, value []byte) error { return unix.Fsetxattr(fd, name, value, 0) }

func lsetxattr(path, name string, value []byte) error { return unix.Lsetxattr(path, name, value, 0) }

func statAtime(st *unix.Stat_t) (int64, int64) { return st.Atim.Sec, st.Atim.Nsec }
func statMtime(st *unix.Stat_t) (int64, int64) { return st.Mtim.Sec, st.Mtim.Nsec }

// nodeMode is the mknod mode of a device or FIFO entry.
func nodeMode(hdr *tar.Header) uint32 {
	perm := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeChar:
		return unix.S_IFCHR | perm
	case tar.TypeBlock:
		return unix.S_IFBLK | perm
	}
	return unix.S_IFIFO | perm
}
