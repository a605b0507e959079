//go:build linux

package ext4

import (
	"os"
	"syscall"
)

func ownerOf(fi os.FileInfo) (int, int) {
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
