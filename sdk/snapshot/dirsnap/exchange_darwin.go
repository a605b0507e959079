package dirsnap

import (
	"os"

	"golang.org/x/sys/unix"
)

// exchange swaps directories a and b atomically (renamex_np RENAME_SWAP).
func exchange(a, b string) error {
	if err := unix.RenamexNp(a, b, unix.RENAME_SWAP); err != nil {
		return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
	}
	return nil
}
