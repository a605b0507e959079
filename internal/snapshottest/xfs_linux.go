package snapshottest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// XFSLoop makes a sizeMiB xfs filesystem with reflink=1 in a sparse file,
// mounts it on a loop device and returns the mount point; the filesystem
// is unmounted (the loop device is released with it) when the test ends.
// It needs root and mkfs.xfs (xfsprogs, installed by scripts/install-deps.sh).
func XFSLoop(t *testing.T, sizeMiB int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a loop xfs filesystem needs root (CI runs as root)")
	}
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		t.Fatalf("mkfs.xfs (xfsprogs) is needed for the reflink tests; scripts/install-deps.sh installs it: %v", err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop %s: %v\n%s", img, err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// FreeBytes syncs and returns the free bytes of the filesystem holding p.
func FreeBytes(t *testing.T, p string) int64 {
	t.Helper()
	unix.Sync()
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		t.Fatalf("statfs %s: %v", p, err)
	}
	return int64(st.Bfree) * int64(st.Bsize)
}
