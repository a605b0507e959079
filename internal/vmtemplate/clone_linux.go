package vmtemplate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Clone makes dst a copy of src: a reflink (FICLONE) where the filesystem
// shares extents (xfs, btrfs), else a sparse copy (only src's data
// extents). dst is replaced. It returns "reflink" or "copy".
func Clone(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", err
	}
	os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		out.Close()
		if !ok {
			os.Remove(dst)
		}
	}()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		ok = true
		return "reflink", nil
	}
	if err := out.Truncate(fi.Size()); err != nil {
		return "", err
	}
	if err := sparseCopy(in, out, fi.Size()); err != nil {
		return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	ok = true
	return "copy", nil
}

// sparseCopy copies the data extents of in (SEEK_DATA/SEEK_HOLE) into out
// at the same offsets; out is already size bytes long (holes).
func sparseCopy(in, out *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	var off int64
	for off < size {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) { // no data after off
				return nil
			}
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data), buf); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// CloneDir is where the RAM files of VMs started from this store's
// templates go: next to the templates when their filesystem reflinks (a
// clone costs no copy), else a per-store dir on /dev/shm when that is a
// tmpfs (a copy either way; on tmpfs the running VM's RAM is not written
// back to a disk, as a share=on mapping of an ext4 file is), else next to
// the templates. Measured here: see NOTES (issue 10).
func (s *Store) CloneDir() string {
	local := filepath.Join(s.Dir, ".clones")
	if reflinks(s.Dir) {
		return local
	}
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC {
		h := sha256.Sum256([]byte(s.Dir))
		return "/dev/shm/berth-vm-ram-" + hex.EncodeToString(h[:6])
	}
	return local
}

// reflinks reports whether files in dir can be reflinked (FICLONE).
func reflinks(dir string) bool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	a, err := os.CreateTemp(dir, ".reflink-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(a.Name())
	defer a.Close()
	if _, err := a.Write([]byte("probe")); err != nil {
		return false
	}
	b, err := os.CreateTemp(dir, ".reflink-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(b.Name())
	defer b.Close()
	return unix.IoctlFileClone(int(b.Fd()), int(a.Fd())) == nil
}

// cloneReadOnly makes dst (replaced) a copy of src that nobody writes (a
// template's saved state): a reflink where the filesystem shares extents,
// else a hard link (same filesystem: free, and safe because neither side
// is written), else a sparse copy. It returns "reflink", "link" or "copy".
func cloneReadOnly(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	err = unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
	out.Close()
	if err == nil {
		return "reflink", nil
	}
	os.Remove(dst)
	if os.Link(src, dst) == nil {
		return "link", nil
	}
	return Clone(src, dst)
}
