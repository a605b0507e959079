package clonetree

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Platform returns the clonefile(2) cloner: APFS makes dst share src's
// blocks (it refuses with ENOTSUP on other filesystems and EXDEV across
// volumes, and the caller copies).
func Platform() Cloner { return ClonerFunc(clonefile) }

func clonefile(src *os.File, dst string) error {
	dir, err := os.Open(filepath.Dir(dst))
	if err != nil {
		return err
	}
	defer dir.Close()
	// Clone by path relative to the source's own directory would race;
	// the source file's path is what clonefileat needs, and the tree being
	// copied must not change while Tree runs.
	if err := unix.Clonefileat(unix.AT_FDCWD, src.Name(), int(dir.Fd()), filepath.Base(dst), unix.CLONE_NOFOLLOW|unix.CLONE_NOOWNERCOPY); err != nil {
		return &os.PathError{Op: "clonefileat", Path: dst, Err: err}
	}
	return nil
}

func atime(st *unix.Stat_t) unix.Timespec { return st.Atim }
func mtime(st *unix.Stat_t) unix.Timespec { return st.Mtim }
