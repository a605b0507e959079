package vmtemplate

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Clone makes dst a copy of src: a clonefile(2) on APFS, else a plain
// copy. dst is replaced. It returns "reflink" or "copy".
func Clone(src, dst string) (string, error) {
	os.Remove(dst)
	if err := unix.Clonefile(src, dst, 0); err == nil {
		return "reflink", nil
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return "copy", out.Close()
}

// CloneDir is where the RAM files of VMs started from this store's
// templates go: next to the templates (APFS clonefile).
func (s *Store) CloneDir() string { return filepath.Join(s.Dir, ".clones") }

// cloneReadOnly makes dst (replaced) a copy of src that nobody writes (a
// template's saved state): a clonefile(2) on APFS, else a hard link (same
// volume; safe because neither side is written), else a copy. It returns
// "reflink", "link" or "copy".
func cloneReadOnly(src, dst string) (string, error) {
	os.Remove(dst)
	if err := unix.Clonefile(src, dst, 0); err == nil {
		return "reflink", nil
	}
	if os.Link(src, dst) == nil {
		return "link", nil
	}
	return Clone(src, dst)
}
