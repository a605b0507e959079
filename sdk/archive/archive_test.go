//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
)

func apply(t *testing.T, root string, blob []byte, opts Options) (Result, error) {
	t.Helper()
	return Apply(context.Background(), root, bytes.NewReader(blob), opts)
}

func mustApply(t *testing.T, root string, opts Options, entries ...entry) Result {
	t.Helper()
	raw := layerTar(t, entries...)
	opts.DiffID = digestOf(raw)
	res, err := apply(t, root, raw, opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func TestApplyEntryKinds(t *testing.T) {
	root := t.TempDir()
	mt := time.Unix(1500000000, 123000000)
	entries := []entry{
		dir("usr/"),
		{name: "usr/bin/", typ: tar.TypeDir, mode: 0o750, mtime: mt},
		{name: "usr/bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o4755, mtime: mt, xattrs: map[string]string{"user.note": "hello"}},
		{name: "usr/bin/same", typ: tar.TypeLink, link: "usr/bin/tool"},
		{name: "usr/bin/ln", typ: tar.TypeSymlink, link: "/usr/bin/tool", mtime: mt},
		{name: "./tmp/", typ: tar.TypeDir, mode: 0o1777},
		{name: "/abs/file", typ: tar.TypeReg, body: "absolute names are relative to the root", mode: 0o600},
		{name: "run/fifo", typ: tar.TypeFifo, mode: 0o620},
	}
	if isRoot() {
		entries = append(entries,
			entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
			entry{name: "home/u/owned", typ: tar.TypeReg, body: "x", mode: 0o640, uid: 1000, gid: 1001},
			entry{name: "home/u/link", typ: tar.TypeSymlink, link: "owned", uid: 1002, gid: 1003},
		)
	}
	res := mustApply(t, root, Options{}, entries...)
	if res.Entries != len(entries) {
		t.Errorf("Entries = %d, want %d", res.Entries, len(entries))
	}

	st := lstat(t, filepath.Join(root, "usr/bin/tool"))
	if st.Mode&0o7777 != 0o4755 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("usr/bin/tool mode %o, want regular 4755", st.Mode)
	}
	if st.Mtim.Sec != mt.Unix() || st.Mtim.Nsec != int64(mt.Nanosecond()) {
		t.Errorf("usr/bin/tool mtime %v, want %v", time.Unix(st.Mtim.Sec, st.Mtim.Nsec), mt)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/bin/tool")); string(b) != "#!/bin/sh\n" {
		t.Errorf("usr/bin/tool content %q", b)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(root, "usr/bin/tool"), "user.note", buf); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("xattr user.note = %q, %v", buf[:n], err)
	}
	if st2 := lstat(t, filepath.Join(root, "usr/bin/same")); st2.Ino != st.Ino || st2.Nlink != 2 {
		t.Errorf("hardlink usr/bin/same: inode %d nlink %d, want inode %d nlink 2", st2.Ino, st2.Nlink, st.Ino)
	}
	if l, err := os.Readlink(filepath.Join(root, "usr/bin/ln")); err != nil || l != "/usr/bin/tool" {
		t.Errorf("symlink usr/bin/ln -> %q, %v", l, err)
	}
	if st := lstat(t, filepath.Join(root, "usr/bin/ln")); st.Mtim.Sec != mt.Unix() {
		t.Errorf("symlink mtime %d, want %d", st.Mtim.Sec, mt.Unix())
	}
	// Directory times survive the children written after them.
	if st := lstat(t, filepath.Join(root, "usr/bin")); st.Mtim.Sec != mt.Unix() || st.Mode&0o7777 != 0o750 {
		t.Errorf("usr/bin: mode %o mtime %d, want 750 and %d", st.Mode&0o7777, st.Mtim.Sec, mt.Unix())
	}
	if st := lstat(t, filepath.Join(root, "tmp")); st.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode %o, want 1777", st.Mode&0o7777)
	}
	if _, err := os.Stat(filepath.Join(root, "abs/file")); err != nil {
		t.Errorf("absolute entry name: %v", err)
	}
	if st := lstat(t, filepath.Join(root, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o620 {
		t.Errorf("run/fifo mode %o, want fifo 620", st.Mode)
	}
	if isRoot() {
		st := lstat(t, filepath.Join(root, "dev/null"))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 || st.Mode&0o777 != 0o666 {
			t.Errorf("dev/null: mode %o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if st := lstat(t, filepath.Join(root, "home/u/owned")); st.Uid != 1000 || st.Gid != 1001 {
			t.Errorf("home/u/owned owner %d:%d, want 1000:1001", st.Uid, st.Gid)
		}
		if st := lstat(t, filepath.Join(root, "home/u/link")); st.Uid != 1002 || st.Gid != 1003 {
			t.Errorf("symlink owner %d:%d, want 1002:1003 (lchown, not the target)", st.Uid, st.Gid)
		}
	} else {
		t.Log("not root: device nodes and ownership are not checked")
	}
}

func TestApplyCompressionsAndDigests(t *testing.T) {
	raw := layerTar(t, dir("a/"), file("a/f", strings.Repeat("data", 10000)))
	diffID := digestOf(raw)
	blobs := map[string][]byte{
		"application/vnd.oci.image.layer.v1.tar":            raw,
		"application/vnd.oci.image.layer.v1.tar+gzip":       gzipped(t, raw),
		"application/vnd.oci.image.layer.v1.tar+zstd":       zstded(t, raw),
		"application/vnd.docker.image.rootfs.diff.tar.gzip": gzipped(t, raw),
		"": zstded(t, raw), // sniffed
		"application/vnd.oci.image.layer.nondistributable.v1.tar": raw,
	}
	for mt, blob := range blobs {
		t.Run(mt, func(t *testing.T) {
			root := t.TempDir()
			var progress []int64
			res, err := apply(t, root, blob, Options{MediaType: mt, DiffID: diffID, Digest: digestOf(blob), Progress: func(n int64) { progress = append(progress, n) }})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if res.DiffID != diffID || res.Size != int64(len(raw)) || res.Read != int64(len(blob)) {
				t.Errorf("Result = %+v, want diff ID %s size %d read %d", res, diffID, len(raw), len(blob))
			}
			if len(progress) == 0 || progress[len(progress)-1] != int64(len(blob)) {
				t.Errorf("progress %v, want it to end at %d", progress, len(blob))
			}
			if b, _ := os.ReadFile(filepath.Join(root, "a/f")); len(b) != 40000 {
				t.Errorf("a/f has %d bytes", len(b))
			}
		})
	}

	t.Run("diff ID mismatch", func(t *testing.T) {
		wrong := digestOf([]byte("something else"))
		_, err := apply(t, t.TempDir(), gzipped(t, raw), Options{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", DiffID: wrong})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), diffID) {
			t.Errorf("err = %v, want invalid argument naming both digests", err)
		}
	})
	t.Run("blob digest mismatch", func(t *testing.T) {
		wrong := digestOf([]byte("x"))
		_, err := apply(t, t.TempDir(), gzipped(t, raw), Options{DiffID: diffID, Digest: wrong})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), wrong) {
			t.Errorf("err = %v, want invalid argument naming %s", err, wrong)
		}
	})
	t.Run("not gzip", func(t *testing.T) {
		_, err := apply(t, t.TempDir(), raw, Options{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "gzip") {
			t.Errorf("err = %v, want invalid argument about gzip", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		_, err := apply(t, t.TempDir(), raw[:len(raw)/2+100], Options{DiffID: diffID})
		if err == nil {
			t.Error("a truncated layer applied without error")
		}
	})
	t.Run("unsupported digest", func(t *testing.T) {
		_, err := apply(t, t.TempDir(), raw, Options{DiffID: "md5:abc"})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("err = %v, want invalid argument", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Apply(ctx, t.TempDir(), bytes.NewReader(raw), Options{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestApplyReplacesAcrossTypes(t *testing.T) {
	root := t.TempDir()
	mustApply(t, root, Options{}, dir("x/"), file("x/inside", "1"), file("f", "file"), symlink("l", "f"), dir("d/"))
	mustApply(t, root, Options{}, file("x", "now a file"), dir("f/"), file("l", "was a symlink"), symlink("d", "x"))
	if b, _ := os.ReadFile(filepath.Join(root, "x")); string(b) != "now a file" {
		t.Errorf("x = %q", b)
	}
	if st := lstat(t, filepath.Join(root, "f")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("f is %o, want a directory", st.Mode)
	}
	if st := lstat(t, filepath.Join(root, "l")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("l is %o, want a regular file", st.Mode)
	}
	if l, _ := os.Readlink(filepath.Join(root, "d")); l != "x" {
		t.Errorf("d -> %q, want x", l)
	}
}

func TestWhiteoutsDelete(t *testing.T) {
	root := t.TempDir()
	mustApply(t, root, Options{}, dir("etc/"), file("etc/a", "a"), file("etc/b", "b"), dir("opq/"), file("opq/old", "o"), dir("opq/sub/"), file("opq/sub/deep", "d"), dir("gone/"), file("gone/x", "x"))
	mustApply(t, root, Options{},
		file("etc/.wh.a", ""),
		file(".wh.gone", ""),
		file("opq/new", "n"),
		file("opq/.wh..wh..opq", ""),
		file("nothere/.wh.x", ""), // whiteout in a directory that does not exist: nothing to do
	)
	got := snapshotTree(t, root)
	for _, p := range []string{"etc/a", "gone", "gone/x", "opq/old", "opq/sub", "nothere"} {
		if _, ok := got[p]; ok {
			t.Errorf("%s survived its whiteout", p)
		}
	}
	for _, p := range []string{"etc/b", "opq/new"} {
		if _, ok := got[p]; !ok {
			t.Errorf("%s is gone; only lower entries may be whited out", p)
		}
	}
	for p := range got {
		if strings.Contains(p, ".wh.") {
			t.Errorf("whiteout marker %s was written as a file", p)
		}
	}
}

func TestWhiteoutsOverlay(t *testing.T) {
	if !isRoot() {
		t.Skip("overlay whiteouts are device nodes and trusted.* xattrs: run as root (CI does)")
	}
	lower := t.TempDir()
	mustApply(t, lower, Options{}, entry{name: "usr/", typ: tar.TypeDir, mode: 0o711, uid: 7, gid: 8, mtime: time.Unix(1400000000, 0)}, dir("usr/lib/"), file("usr/lib/a", "a"), dir("opq/"), file("opq/old", "o"))
	upper := t.TempDir()
	mustApply(t, upper, Options{Whiteouts: WhiteoutOverlay, Parents: []string{lower}},
		file("usr/lib/.wh.a", ""),
		file("usr/lib/b", "b"),
		file("opq/.wh..wh..opq", ""),
		file("opq/new", "n"),
		entry{name: "evil", typ: tar.TypeReg, body: "x", mode: 0o644, xattrs: map[string]string{"trusted.overlay.opaque": "y"}},
	)
	st := lstat(t, filepath.Join(upper, "usr/lib/a"))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("usr/lib/a: mode %o rdev %d, want a 0:0 character device", st.Mode, st.Rdev)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(upper, "opq"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opq trusted.overlay.opaque = %q, %v; want y", buf[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(upper, "opq/new")); err != nil {
		t.Errorf("opq/new: %v", err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(upper, "evil"), "trusted.overlay.opaque", buf); err == nil {
		t.Error("a layer set trusted.overlay.opaque on its own entry")
	}
	// usr was not listed by the layer: it takes the lower's attributes.
	st = lstat(t, filepath.Join(upper, "usr"))
	if st.Mode&0o7777 != 0o711 || st.Uid != 7 || st.Gid != 8 || st.Mtim.Sec != 1400000000 {
		t.Errorf("usr in upper: mode %o owner %d:%d mtime %d; want the lower's 711 7:8 1400000000", st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec)
	}
}

// sandbox returns dir/root, the root to apply into, with canaries beside it
// (dir/etc/passwd, dir/etc/shadow, dir/victim) that a layer must never reach.
func sandbox(t *testing.T) (dir, root string) {
	dir = t.TempDir()
	root = filepath.Join(dir, "root")
	for _, d := range []string{root, filepath.Join(dir, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/shadow", "victim"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("canary "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, root
}

func TestRefusesEscapes(t *testing.T) {
	cases := []struct {
		name  string
		lower []entry // applied first, must succeed
		layer func(outside string) []entry
		bad   string // the entry the error must name
	}{
		{name: "dot-dot traversal", layer: func(string) []entry { return []entry{file("../victim", "pwned")} }, bad: "../victim"},
		{name: "dot-dot in the middle", layer: func(string) []entry { return []entry{dir("a/"), file("a/../../victim", "pwned")} }, bad: "a/../../victim"},
		{name: "absolute climbing out", layer: func(string) []entry { return []entry{file("/../etc/passwd", "pwned")} }, bad: "/../etc/passwd"},
		{name: "symlink to an outside dir then a file under it", layer: func(o string) []entry {
			return []entry{symlink("etc", filepath.Join(o, "etc")), file("etc/passwd", "pwned")}
		}, bad: "etc/passwd"},
		{name: "symlink to /etc then a file under it", layer: func(string) []entry {
			return []entry{symlink("etc", "/etc"), file("etc/passwd", "pwned")}
		}, bad: "etc/passwd"},
		{name: "relative symlink climbing out then a file under it", layer: func(string) []entry {
			return []entry{dir("a/"), symlink("a/up", "../../etc"), file("a/up/shadow", "pwned")}
		}, bad: "a/up/shadow"},
		{name: "symlink planted by a lower layer", lower: []entry{symlink("lib", "/etc")}, layer: func(string) []entry {
			return []entry{file("lib/passwd", "pwned")}
		}, bad: "lib/passwd"},
		{name: "directory entry through a symlink", layer: func(o string) []entry {
			return []entry{symlink("d", o), dir("d/newdir/")}
		}, bad: "d/newdir/"},
		{name: "hardlink to /etc/shadow", layer: func(string) []entry { return []entry{hardlink("shadow", "/etc/shadow")} }, bad: "shadow"},
		{name: "hardlink climbing out", layer: func(string) []entry { return []entry{hardlink("shadow", "../etc/shadow")} }, bad: "shadow"},
		{name: "hardlink through a symlink", layer: func(o string) []entry {
			return []entry{symlink("e", filepath.Join(o, "etc")), hardlink("shadow", "e/shadow")}
		}, bad: "shadow"},
		{name: "hardlink to a directory", layer: func(string) []entry { return []entry{dir("d/"), hardlink("h", "d")} }, bad: "h"},
		{name: "whiteout climbing out", layer: func(string) []entry { return []entry{file("../.wh.victim", "")} }, bad: "../.wh.victim"},
		{name: "whiteout through a symlink", layer: func(o string) []entry {
			return []entry{symlink("o", o), file("o/.wh.victim", "")}
		}, bad: "o/.wh.victim"},
		{name: "whiteout of dot-dot", layer: func(string) []entry { return []entry{dir("a/"), file("a/.wh...", "")} }, bad: "a/.wh..."},
		{name: "opaque whiteout through a symlink", layer: func(o string) []entry {
			return []entry{symlink("o", filepath.Join(o, "etc")), file("o/.wh..wh..opq", "")}
		}, bad: "o/.wh..wh..opq"},
	}
	for _, mode := range []WhiteoutMode{WhiteoutDelete, WhiteoutOverlay} {
		for _, c := range cases {
			t.Run(c.name+map[WhiteoutMode]string{WhiteoutDelete: "", WhiteoutOverlay: " (overlay)"}[mode], func(t *testing.T) {
				if mode == WhiteoutOverlay && !isRoot() {
					t.Skip("overlay mode writes device nodes: run as root (CI does)")
				}
				outside, root := sandbox(t)
				before := snapshotTree(t, outside)
				if c.lower != nil {
					mustApply(t, root, Options{Whiteouts: mode}, c.lower...)
					before = snapshotTree(t, outside)
				}
				_, err := apply(t, root, layerTar(t, c.layer(outside)...), Options{Whiteouts: mode})
				t.Logf("refused: %v", err)
				var ee *EntryError
				if !errors.As(err, &ee) || ee.Entry != c.bad || !errdefs.IsInvalidArgument(err) {
					t.Errorf("err = %v; want an invalid-argument EntryError naming %q", err, c.bad)
				}
				after := snapshotTree(t, outside)
				for k := range after {
					if k == "root" || strings.HasPrefix(k, "root/") {
						delete(after, k)
						delete(before, k)
					}
				}
				if d := diffTrees(before, after); d != "" {
					t.Errorf("the layer changed things outside its root:\n%s", d)
				}
			})
		}
	}
}

// A whiteout and a new entry of the same name in one layer: the whiteout
// hides the lower layers' entry, the layer's own entry stays, whatever the
// order.
func TestWhiteoutAndRecreateInOneLayer(t *testing.T) {
	lowerEntries := []entry{dir("d/"), file("d/lower", "l"), dir("e/"), file("e/lower", "l")}
	layer := []entry{
		file(".wh.d", ""), dir("d/"), file("d/new", "n"), // whiteout first
		dir("e/"), file("e/new", "n"), file(".wh.e", ""), // whiteout last
	}
	t.Run("delete", func(t *testing.T) {
		root := t.TempDir()
		mustApply(t, root, Options{}, lowerEntries...)
		mustApply(t, root, Options{}, layer...)
		got := snapshotTree(t, root)
		for _, p := range []string{"d/lower", "e/lower"} {
			if _, ok := got[p]; ok {
				t.Errorf("%s (lower) survived the whiteout", p)
			}
		}
		for _, p := range []string{"d/new", "e/new"} {
			if _, ok := got[p]; !ok {
				t.Errorf("%s (this layer) was deleted by the layer's own whiteout", p)
			}
		}
	})
	t.Run("overlay", func(t *testing.T) {
		if !isRoot() {
			t.Skip("overlay whiteouts need root (CI runs as root)")
		}
		lower := t.TempDir()
		mustApply(t, lower, Options{}, lowerEntries...)
		upper := t.TempDir()
		mustApply(t, upper, Options{Whiteouts: WhiteoutOverlay, Parents: []string{lower}}, layer...)
		buf := make([]byte, 4)
		for _, d := range []string{"d", "e"} {
			if n, err := unix.Lgetxattr(filepath.Join(upper, d), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
				t.Errorf("%s is not opaque (%q, %v): the lower %s/lower would show through", d, buf[:n], err, d)
			}
			if _, err := os.Lstat(filepath.Join(upper, d, "new")); err != nil {
				t.Errorf("%s/new: %v", d, err)
			}
		}
	})
}

// TestApplyManyChunks applies layers far larger than the read-ahead, and
// stops one in the middle (a refused entry after a large file): neither may
// hang or lose bytes.
func TestApplyManyChunks(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 6<<20/16) // 6 MiB
	big[12345] = 'x'
	raw := layerTar(t, file("a/big", string(big)), file("b/big", string(big[:3<<20])), file("c", "end"))
	root := t.TempDir()
	res, err := apply(t, root, gzipped(t, raw), Options{DiffID: digestOf(raw)})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.Size != int64(len(raw)) {
		t.Errorf("Size = %d, want %d", res.Size, len(raw))
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a/big")); !bytes.Equal(b, big) {
		t.Errorf("a/big differs (%d bytes)", len(b))
	}
	stopped := layerTar(t, file("a/big", string(big)), file("../out", "x"), file("b/big", string(big)))
	if _, err := apply(t, t.TempDir(), zstded(t, stopped), Options{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Apply with a refused entry between large files = %v, want ErrInvalidArgument", err)
	}
}

// TestCancelStopsALargeFile cancels while a large file is being written.
func TestCancelStopsALargeFile(t *testing.T) {
	raw := layerTar(t, file("big", string(make([]byte, 64<<20))))
	ctx, cancel := context.WithCancel(context.Background())
	var once bool
	_, err := Apply(ctx, t.TempDir(), bytes.NewReader(raw), Options{Progress: func(n int64) {
		if n > 8<<20 && !once {
			once = true
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply cancelled in the middle of a file = %v, want context.Canceled", err)
	}
}
