package archive

import (
	"archive/tar"

	"golang.org/x/sys/unix"
)

// openBeneath has no one-call form on darwin: the caller walks the
// components with O_NOFOLLOW.
func openBeneath(int, string) (int, error) { return -1, unix.ENOSYS }

// mknodat: darwin has no mknodat in x/sys, so the node is made by path
// (the tree's parents were verified to be real directories).
func mknodat(_ int, path string, _ string, mode uint32, major, minor int64) error {
	return unix.Mknod(path, mode, int(unix.Mkdev(uint32(major), uint32(minor))))
}

func fsetxattr(fd int, name string, value []byte) error { return unix.Fsetxattr(fd, name, value, 0) }

func lsetxattr(path, name string, value []byte) error { return unix.Lsetxattr(path, name, value, 0) }

func statAtime(st *unix.Stat_t) (int64, int64) { return st.Atim.Sec, st.Atim.Nsec }
func statMtime(st *unix.Stat_t) (int64, int64) { return st.Mtim.Sec, st.Mtim.Nsec }

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
