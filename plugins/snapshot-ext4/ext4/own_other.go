//go:build !linux

package ext4

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// ownBytes returns file p's allocation (darwin has no FIEMAP: a clone's
// shared blocks are counted as its own). A missing file owns nothing.
func ownBytes(p string) (int64, error) {
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512, nil
}
