package conformance

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// tarEntry is one entry of a layer the suite builds.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func reg(name, body string) tarEntry {
	return tarEntry{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func dirEntry(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }

// buildLayer returns the tar of entries and its diff ID.
func buildLayer(entries ...tarEntry) ([]byte, string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: time.Unix(1600000000, 0), Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err) // entries are the suite's own
		}
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	_ = tw.Close()
	return buf.Bytes(), fmt.Sprintf("sha256:%x", sha256.Sum256(buf.Bytes()))
}

func gzipOf(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

const (
	mediaTar  = "application/vnd.oci.image.layer.v1.tar"
	mediaGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	mediaZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
)

func zstdOf(b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// applyLayer prepares key on parent, applies entries and commits name.
func applyLayer(t *testing.T, sn snapshot.Snapshotter, name, parent string, gz bool, entries ...tarEntry) {
	t.Helper()
	ctx := context.Background()
	key := name + "-extract"
	if _, err := sn.Prepare(ctx, key, parent); err != nil {
		t.Fatalf("Prepare(%q, %q): %v", key, parent, err)
	}
	raw, diffID := buildLayer(entries...)
	blob, mt := raw, mediaTar
	if gz {
		blob, mt = gzipOf(raw), mediaGzip
	}
	res, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: mt, DiffID: diffID, Size: int64(len(blob))}, bytes.NewReader(blob))
	if err != nil {
		_ = sn.Remove(ctx, key)
		t.Fatalf("Apply to %q: %v", key, err)
	}
	if res.DiffID != diffID || res.Size != int64(len(raw)) {
		t.Errorf("Apply result %+v, want diff ID %s and size %d", res, diffID, len(raw))
	}
	if err := sn.Commit(ctx, name, key); err != nil {
		t.Fatalf("Commit(%q, %q): %v", name, key, err)
	}
}

func (s *suite) testApply(t *testing.T, sn snapshot.Snapshotter) {
	info, err := sn.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l1, l2, l3 := s.key(t, "l1"), s.key(t, "l2"), s.key(t, "l3")
	remove(t, sn, l3, l2, l1)
	applyLayer(t, sn, l1, "", false,
		reg("a", "a1"), dirEntry("dir/"), reg("dir/b", "b1"), reg("dir/c", "c1"),
		dirEntry("opq/"), reg("opq/x", "x1"), tarEntry{name: "ln", typ: tar.TypeSymlink, link: "dir/c"},
		tarEntry{name: "hl", typ: tar.TypeLink, link: "a"})
	applyLayer(t, sn, l2, l1, info.HasCapability(snapshot.CapApplyGzip),
		reg("dir/.wh.b", ""), reg("opq/.wh..wh..opq", ""), reg("opq/y", "y2"), reg("new", "n2"), reg("a", "a2"))
	if info.HasCapability(snapshot.CapApplyZstd) {
		raw, diffID := buildLayer(reg("zstd-file", "z"))
		ctx := context.Background()
		if _, err := sn.Prepare(ctx, l3+"-extract", l2); err != nil {
			t.Fatal(err)
		}
		blob := zstdOf(raw)
		if _, err := sn.Apply(ctx, l3+"-extract", snapshot.Layer{MediaType: mediaZstd, DiffID: diffID}, bytes.NewReader(blob)); err != nil {
			t.Fatalf("Apply of a zstd layer (the snapshotter declares %s): %v", snapshot.CapApplyZstd, err)
		}
		if err := sn.Commit(ctx, l3, l3+"-extract"); err != nil {
			t.Fatal(err)
		}
	}
	if why := s.canMount(); why != "" {
		t.Skip("applied; content not checked: " + why)
	}
	if info.HasCapability(snapshot.CapApplyZstd) {
		expectFiles(t, s.view(t, sn, l3), map[string]string{"zstd-file": "z", "a": "a2"})
	}
	dir := s.view(t, sn, l2)
	expectFiles(t, dir, map[string]string{"a": "a2", "dir/c": "c1", "opq/y": "y2", "new": "n2", "hl": "a1"})
	expectAbsent(t, dir, "dir/b", "opq/x", "dir/.wh.b", "opq/.wh..wh..opq")
	if l, err := os.Readlink(filepath.Join(dir, "ln")); err != nil || l != "dir/c" {
		t.Errorf("symlink ln -> %q, %v; want dir/c", l, err)
	}
	dir1 := s.view(t, sn, l1)
	expectFiles(t, dir1, map[string]string{"a": "a1", "dir/b": "b1", "opq/x": "x1", "hl": "a1"})

	key := s.key(t, "k")
	remove(t, sn, key)
	raw, diffID := buildLayer(reg("z", "z"))
	if _, err := sn.Apply(context.Background(), l1, snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err == nil {
		t.Error("Apply to a committed snapshot succeeded")
	}
	if _, err := sn.Apply(context.Background(), s.key(t, "missing"), snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); !errdefs.IsNotFound(err) {
		t.Errorf("Apply to a missing key = %v, want ErrNotFound", err)
	}
}

func (s *suite) testApplyFailure(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	base, key := s.key(t, "base"), s.key(t, "k")
	remove(t, sn, key, base)
	applyLayer(t, sn, base, "", false, reg("keep", "base"))
	if _, err := sn.Prepare(ctx, key, base); err != nil {
		t.Fatal(err)
	}
	raw, _ := buildLayer(reg("partial", "must not be visible"), reg("keep", "overwritten"))
	wrong := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("another layer")))
	_, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: mediaTar, DiffID: wrong}, bytes.NewReader(raw))
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("Apply with a wrong diff ID = %v, want ErrInvalidArgument", err)
	}
	evil, evilID := buildLayer(reg("fine", "x"), reg("../escape", "x"))
	_, err = sn.Apply(ctx, key, snapshot.Layer{MediaType: mediaTar, DiffID: evilID}, bytes.NewReader(evil))
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("Apply of a layer escaping its root = %v, want ErrInvalidArgument", err)
	}
	if why := s.canMount(); why != "" {
		t.Skip("refusals checked; content not checked: " + why)
	}
	ms, err := sn.Mounts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	dir, unmount := s.mount(t, ms)
	expectFiles(t, dir, map[string]string{"keep": "base"})
	expectAbsent(t, dir, "partial", "fine")
	unmount()
	// The snapshot is still usable.
	good, goodID := buildLayer(reg("after", "ok"))
	if _, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: mediaTar, DiffID: goodID}, bytes.NewReader(good)); err != nil {
		t.Fatalf("Apply after failed ones: %v", err)
	}
	dir, _ = s.mount(t, ms)
	expectFiles(t, dir, map[string]string{"keep": "base", "after": "ok"})
}

func (s *suite) testDeepChain(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	n := s.opts.ChainDepth
	var names []string
	t.Cleanup(func() {
		for i := len(names) - 1; i >= 0; i-- {
			if err := sn.Remove(context.Background(), names[i]); err != nil && !errdefs.IsNotFound(err) {
				t.Errorf("cleanup: Remove(%q): %v", names[i], err)
			}
		}
	})
	parent := ""
	for i := range n {
		name := s.key(t, fmt.Sprintf("layer-%03d", i))
		entries := []tarEntry{reg(fmt.Sprintf("layers/%03d", i), fmt.Sprint(i)), reg("top", fmt.Sprint(i))}
		if i == 0 {
			entries = append([]tarEntry{dirEntry("layers/")}, entries...)
		}
		applyLayer(t, sn, name, parent, false, entries...)
		names = append(names, name)
		parent = name
	}
	info, err := sn.Stat(ctx, parent)
	if err != nil || info.Parent != names[n-2] {
		t.Fatalf("Stat(top) = %+v, %v", info, err)
	}
	if why := s.canMount(); why != "" {
		t.Skip("chain built; content not checked: " + why)
	}
	top := s.key(t, "container")
	mounts, err := sn.Prepare(ctx, top, parent)
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, top)
	dir, unmount := s.mount(t, mounts)
	defer unmount()
	want := map[string]string{"top": fmt.Sprint(n - 1)}
	for i := range n {
		want[fmt.Sprintf("layers/%03d", i)] = fmt.Sprint(i)
	}
	expectFiles(t, dir, want)
	if err := writeFile(dir, "written-on-top", "rw", 0o644); err != nil {
		t.Errorf("write into a %d-layer active snapshot: %v", n, err)
	}
}

// testFileSemantics writes through mounted active snapshots and checks
// what the committed layers show, as containerd's testsuite does.
func (s *suite) testFileSemantics(t *testing.T, sn snapshot.Snapshotter) {
	if why := s.canMount(); why != "" {
		t.Skip(why)
	}
	chain := func(t *testing.T, steps ...func(dir string) error) []string {
		var names []string
		parent := ""
		for i, step := range steps {
			name := s.key(t, fmt.Sprint("l", i))
			s.layer(t, sn, name, parent, step)
			names = append(names, name)
			parent = name
		}
		t.Cleanup(func() {
			for i := len(names) - 1; i >= 0; i-- {
				_ = sn.Remove(context.Background(), names[i])
			}
		})
		return names
	}
	t.Run("FileUpdateInLayer", func(t *testing.T) {
		l := chain(t,
			func(d string) error { return writeFile(d, "foo", "a", 0o644) },
			func(d string) error { return writeFile(d, "foo", "bb", 0o644) },
			func(d string) error { return writeFile(d, "foo", "ccc", 0o600) },
		)
		expectFiles(t, s.view(t, sn, l[2]), map[string]string{"foo": "ccc"})
		expectFiles(t, s.view(t, sn, l[1]), map[string]string{"foo": "bb"})
		expectFiles(t, s.view(t, sn, l[0]), map[string]string{"foo": "a"})
	})
	t.Run("RemoveDirectoryInLowerLayer", func(t *testing.T) {
		l := chain(t,
			func(d string) error {
				return errors.Join(writeFile(d, "somedir/f1", "1", 0o644), writeFile(d, "somedir/sub/f2", "2", 0o644), writeFile(d, "other", "o", 0o644))
			},
			func(d string) error { return os.RemoveAll(filepath.Join(d, "somedir")) },
		)
		dir := s.view(t, sn, l[1])
		expectAbsent(t, dir, "somedir")
		expectFiles(t, dir, map[string]string{"other": "o"})
		expectFiles(t, s.view(t, sn, l[0]), map[string]string{"somedir/sub/f2": "2"})
	})
	t.Run("Chown", func(t *testing.T) {
		l := chain(t,
			func(d string) error { return writeFile(d, "owned", "content", 0o640) },
			func(d string) error { return os.Lchown(filepath.Join(d, "owned"), 1000, 1001) },
		)
		dir := s.view(t, sn, l[1])
		expectFiles(t, dir, map[string]string{"owned": "content"})
		uid, gid, mode := owner(t, filepath.Join(dir, "owned"))
		if uid != 1000 || gid != 1001 || mode != 0o640 {
			t.Errorf("owned: %d:%d %o, want 1000:1001 640", uid, gid, mode)
		}
	})
	t.Run("DirectoryPermissionsOnCommit", func(t *testing.T) {
		perms := map[string]os.FileMode{"d1": 0o700, "d1/d2": 0o750, "d1/d2/d3": 0o711, "sticky": os.ModeSticky | 0o777}
		l := chain(t,
			func(d string) error {
				for _, p := range []string{"d1", "d1/d2", "d1/d2/d3", "sticky"} {
					if err := os.Mkdir(filepath.Join(d, p), 0o700); err != nil {
						return err
					}
					if err := os.Chmod(filepath.Join(d, p), perms[p]); err != nil {
						return err
					}
				}
				return nil
			},
			func(d string) error { return os.Chmod(filepath.Join(d, "d1"), 0o755) },
		)
		dir0 := s.view(t, sn, l[0])
		for p, want := range perms {
			if _, _, got := owner(t, filepath.Join(dir0, p)); got != want {
				t.Errorf("%s in the first layer: mode %o, want %o", p, got, want)
			}
		}
		if _, _, got := owner(t, filepath.Join(s.view(t, sn, l[1]), "d1")); got != 0o755 {
			t.Errorf("d1 after chmod in the second layer: mode %o, want 755", got)
		}
	})
	t.Run("DeletedFilesInChild", func(t *testing.T) {
		l := chain(t,
			func(d string) error { return errors.Join(writeFile(d, "a", "a", 0o644), writeFile(d, "b", "b", 0o644)) },
			func(d string) error { return os.Remove(filepath.Join(d, "a")) },
		)
		dir := s.view(t, sn, l[1])
		expectAbsent(t, dir, "a")
		expectFiles(t, dir, map[string]string{"b": "b"})
		expectFiles(t, s.view(t, sn, l[0]), map[string]string{"a": "a", "b": "b"})
	})
	t.Run("MoveFileFromLowerLayer", func(t *testing.T) {
		l := chain(t,
			func(d string) error {
				return errors.Join(writeFile(d, "dir1/f", "moved", 0o644), os.MkdirAll(filepath.Join(d, "dir2"), 0o755))
			},
			func(d string) error { return os.Rename(filepath.Join(d, "dir1/f"), filepath.Join(d, "dir2/f")) },
		)
		dir := s.view(t, sn, l[1])
		expectAbsent(t, dir, "dir1/f")
		expectFiles(t, dir, map[string]string{"dir2/f": "moved"})
		expectFiles(t, s.view(t, sn, l[0]), map[string]string{"dir1/f": "moved"})
	})
}
