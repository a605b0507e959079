//go:build linux

package ext4

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/snapshot"
)

// TestLinkTree: directories are new with the source's metadata, every
// other entry (files, symlinks, hardlinked pairs) is the source's inode,
// and copyEntry (the fallback when a link is refused) copies content and
// metadata.
func TestLinkTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "d/e"), 0o755))
	must(os.WriteFile(filepath.Join(src, "d/f"), []byte("data"), 0o755))
	must(os.Chmod(filepath.Join(src, "d/f"), os.ModeSetuid|0o755))
	must(os.Link(filepath.Join(src, "d/f"), filepath.Join(src, "hl")))
	must(os.Symlink("d/f", filepath.Join(src, "ln")))
	must(os.Chmod(filepath.Join(src, "d"), os.ModeSticky|0o750))
	_ = unix.Lsetxattr(filepath.Join(src, "d"), "user.k", []byte("v"), 0)
	if os.Geteuid() == 0 {
		must(os.Chown(filepath.Join(src, "d"), 12, 34))
	}
	dst := filepath.Join(t.TempDir(), "dst")
	linked, copied, err := linkTree(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if linked != 3 || copied != 0 {
		t.Errorf("linked %d, copied %d; want 3 and 0", linked, copied)
	}
	ino := func(p string) uint64 {
		var st unix.Stat_t
		must(unix.Lstat(p, &st))
		return st.Ino
	}
	for _, n := range []string{"d/f", "hl", "ln"} {
		if ino(filepath.Join(src, n)) != ino(filepath.Join(dst, n)) {
			t.Errorf("%s is not the source's inode", n)
		}
	}
	if ino(filepath.Join(src, "d")) == ino(filepath.Join(dst, "d")) {
		t.Error("directory d is shared")
	}
	st, err := os.Lstat(filepath.Join(dst, "d"))
	must(err)
	if st.Mode()&os.ModePerm != 0o750 || st.Mode()&os.ModeSticky == 0 {
		t.Errorf("d has mode %v, want sticky 750", st.Mode())
	}
	if os.Geteuid() == 0 {
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 12 || sys.Gid != 34 {
			t.Errorf("d is owned by %d:%d, want 12:34", sys.Uid, sys.Gid)
		}
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(src, "d"), "user.k", buf); err == nil && n > 0 {
		if n, err := unix.Lgetxattr(filepath.Join(dst, "d"), "user.k", buf); err != nil || string(buf[:n]) != "v" {
			t.Errorf("d's xattr user.k = %q, %v", buf[:n], err)
		}
	}
	// Usage counts what the linked tree does not share: its directories.
	all, err := treeUsage(context.Background(), src, "")
	must(err)
	own, err := treeUsage(context.Background(), dst, src)
	must(err)
	if all.Inodes != 5 || own.Inodes != 3 {
		t.Errorf("treeUsage: source %+v (want 5 inodes: 3 dirs, f = hl, ln), linked tree on it %+v (want its 3 dirs)", all, own)
	}
	l := &linker{privileged: os.Geteuid() == 0}
	for _, n := range []string{"d/f", "ln"} {
		c := filepath.Join(t.TempDir(), "copy")
		must(l.copyEntry(filepath.Join(src, n), c))
		a, _ := os.Lstat(filepath.Join(src, n))
		b, _ := os.Lstat(c)
		if a.Mode() != b.Mode() || a.ModTime() != b.ModTime() || a.Size() != b.Size() {
			t.Errorf("copy of %s: %v %v %d, want %v %v %d", n, b.Mode(), b.ModTime(), b.Size(), a.Mode(), a.ModTime(), a.Size())
		}
	}
}

// TestApplyLeavesParentTreeAlone: a layer that replaces, deletes and
// hardlinks files of its parent, and changes a directory's mode, leaves
// the parent's tree (whose files the child's tree shares) as it was.
func TestApplyLeavesParentTreeAlone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sn := configure(t, dir, nil)
	unpack(t, sn, "p", "", map[string]string{"d/": "", "d/a": "parent a", "d/b": "parent b", "c": "parent c"})
	e, _ := sn.env()
	st, _ := e.get("p")
	tree := filepath.Join(e.current(st.ID), "fs")
	snap := func() map[string]string {
		m := map[string]string{}
		_ = filepath.Walk(tree, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			b, _ := os.ReadFile(p)
			m[p] = fi.Mode().String() + " " + fi.ModTime().String() + " " + string(b)
			return nil
		})
		return m
	}
	before := snap()
	if _, err := sn.Prepare(ctx, "child", "p"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	raw, diffID := layerTar(map[string]string{"d/a": "child a", "d/.wh.b": "", "d/": "", "c": "child c"})
	buf.Write(raw)
	if _, err := sn.Apply(ctx, "child", snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, &buf); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "cc", "child"); err != nil {
		t.Fatal(err)
	}
	after := snap()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("the parent's %s changed: %q → %q", p, v, after[p])
		}
	}
	// The child's image, made from a tree of hardlinks, is a clean ext4
	// with the child's content (each file one link).
	vs, err := sn.View(ctx, "v", "cc")
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, vs[0].Source)
	if os.Geteuid() == 0 {
		if got := readFiles(t, vs, "d/a", "d/b", "c"); fmt.Sprint(got) != "map[c:child c d/a:child a]" {
			t.Errorf("the child's image holds %v", got)
		}
	}
}
