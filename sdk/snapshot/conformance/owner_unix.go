//go:build unix

package conformance

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// owner returns the uid, gid and permission bits of p.
func owner(t *testing.T, p string) (int, int, os.FileMode) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Errorf("lstat %s: %v", p, err)
		return -1, -1, 0
	}
	mode := os.FileMode(st.Mode & 0o777)
	if st.Mode&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return int(st.Uid), int(st.Gid), mode
}
