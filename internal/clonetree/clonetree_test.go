package clonetree_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/clonetree"
	"github.com/berth-dev/berth/internal/snapshottest"
)

// makeTree builds a source tree with every kind of entry.
func makeTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "d/sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "d/file"), []byte("content"), 0o640))
	must(os.Chmod(filepath.Join(root, "d/file"), 0o4750))
	must(os.Link(filepath.Join(root, "d/file"), filepath.Join(root, "d/sub/hard")))
	must(os.Symlink("../file", filepath.Join(root, "d/sub/sym")))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	must(os.Chmod(filepath.Join(root, "d/sub"), 0o711))
	_ = unix.Lsetxattr(filepath.Join(root, "d/file"), "user.k", []byte("v"), 0)
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(root, "d/file"), 1000, 1001))
		must(os.Lchown(filepath.Join(root, "d/sub/sym"), 1002, 1003))
		must(unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
}

func checkCopy(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		var a, b unix.Stat_t
		if err := unix.Lstat(p, &a); err != nil {
			return err
		}
		if err := unix.Lstat(filepath.Join(dst, rel), &b); err != nil {
			t.Errorf("%s missing from the copy: %v", rel, err)
			return nil
		}
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev || a.Size != b.Size || a.Mtim != b.Mtim {
			t.Errorf("%s: copy has mode %o %d:%d rdev %d size %d mtime %v, source %o %d:%d rdev %d size %d mtime %v",
				rel, b.Mode, b.Uid, b.Gid, b.Rdev, b.Size, b.Mtim, a.Mode, a.Uid, a.Gid, a.Rdev, a.Size, a.Mtim)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var f, h unix.Stat_t
	_ = unix.Lstat(filepath.Join(dst, "d/file"), &f)
	_ = unix.Lstat(filepath.Join(dst, "d/sub/hard"), &h)
	if f.Ino != h.Ino {
		t.Error("hardlinked files were copied apart")
	}
	if l, _ := os.Readlink(filepath.Join(dst, "d/sub/sym")); l != "../file" {
		t.Errorf("symlink -> %q", l)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(src, "d/file"), "user.k", buf); err == nil && n > 0 {
		if n, err := unix.Lgetxattr(filepath.Join(dst, "d/file"), "user.k", buf); err != nil || string(buf[:n]) != "v" {
			t.Errorf("xattr user.k on the copy = %q, %v", buf[:n], err)
		}
	}
}

func TestCopyFallbackThroughTheSeam(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	var asked int
	refuse := clonetree.ClonerFunc(func(*os.File, string) error { asked++; return unix.EOPNOTSUPP })
	dst := filepath.Join(t.TempDir(), "dst")
	st, err := clonetree.Tree(src, dst, clonetree.Options{Cloner: refuse})
	if err != nil {
		t.Fatalf("Tree: %v", err)
	}
	if asked != 1 || st.Copied != 1 || st.Cloned != 0 || st.Linked != 1 {
		t.Errorf("cloner asked %d times, stats %+v; want one regular file copied after the refusal, one hardlink", asked, st)
	}
	checkCopy(t, src, dst)
	if _, err := clonetree.Tree(src, dst, clonetree.Options{Cloner: refuse}); err == nil {
		t.Error("Tree onto an existing destination succeeded")
	}
}

func TestCloneErrorIsReportedAndUndone(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	broken := clonetree.ClonerFunc(func(*os.File, string) error { return unix.EIO })
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := clonetree.Tree(src, dst, clonetree.Options{Cloner: broken}); !errors.Is(err, unix.EIO) {
		t.Errorf("Tree with a failing cloner = %v, want EIO", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Tree left %s behind", dst)
	}
}

func TestReflinkOnXFS(t *testing.T) {
	mnt := snapshottest.XFSLoop(t, 512)
	src := filepath.Join(mnt, "src")
	makeTree(t, src)
	big := make([]byte, 32<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(src, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshottest.FreeBytes(t, mnt)
	st, err := clonetree.Tree(src, filepath.Join(mnt, "dst"), clonetree.Options{})
	if err != nil {
		t.Fatalf("Tree: %v", err)
	}
	used := before - snapshottest.FreeBytes(t, mnt)
	if st.Cloned != 2 || st.Copied != 0 {
		t.Errorf("stats %+v; want both regular files cloned by FICLONE", st)
	}
	if used > 4<<20 {
		t.Errorf("cloning a 32 MiB tree took %d KiB of free space: the extents are not shared", used>>10)
	}
	t.Logf("clone of a 32 MiB tree took %d KiB", used>>10)
	checkCopy(t, src, filepath.Join(mnt, "dst"))
}
