package ext4

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FIEMAP (linux/fiemap.h).
const (
	fsIocFiemap        = 0xC020660B
	fiemapFlagSync     = 0x1
	fiemapExtentLast   = 0x1
	fiemapExtentShared = 0x2000
	fiemapBatch        = 128
)

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

type fiemap struct {
	Start, Length                uint64
	Flags, Mapped, Count, Unused uint32
	Extents                      [fiemapBatch]fiemapExtent
}

// ownBytes returns the bytes file p occupies that no other file shares: its
// extents without FIEMAP_EXTENT_SHARED (a reflinked disk shares all of its
// parent's extents it did not write), or its allocation where the
// filesystem has no FIEMAP. A missing file owns nothing.
func ownBytes(p string) (int64, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	allocated := st.Sys().(*syscall.Stat_t).Blocks * 512
	var own int64
	m := &fiemap{}
	for start := uint64(0); ; {
		*m = fiemap{Start: start, Length: ^uint64(0) - start, Flags: fiemapFlagSync, Count: fiemapBatch}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(m))); e != 0 {
			return allocated, nil
		}
		if m.Mapped == 0 {
			return own, nil
		}
		for _, x := range m.Extents[:m.Mapped] {
			if x.Flags&fiemapExtentShared == 0 {
				own += int64(x.Length)
			}
			start = x.Logical + x.Length
			if x.Flags&fiemapExtentLast != 0 {
				return own, nil
			}
		}
	}
}
