//go:build linux

package ext4

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
)

const mediaTar = "application/vnd.oci.image.layer.v1.tar"

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("reading and writing ext4 images through loop mounts needs root (CI runs as root)")
	}
}

// layerTar returns a tar of files (name → content; a name ending in / is a
// directory) in sorted order, and its diff ID.
func layerTar(files map[string]string) ([]byte, string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[n])), ModTime: time.Unix(1600000000, 0)}
		if strings.HasSuffix(n, "/") {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err)
		}
		_, _ = tw.Write([]byte(files[n]))
	}
	_ = tw.Close()
	return buf.Bytes(), fmt.Sprintf("sha256:%x", sha256.Sum256(buf.Bytes()))
}

// unpack prepares name+"-x" on parent, applies files and commits name.
func unpack(t testing.TB, sn snapshot.Snapshotter, name, parent string, files map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, name+"-x", parent); err != nil {
		t.Fatal(err)
	}
	raw, diffID := layerTar(files)
	if _, err := sn.Apply(ctx, name+"-x", snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, name, name+"-x"); err != nil {
		t.Fatal(err)
	}
}

func readFiles(t *testing.T, mounts []mount.Mount, names ...string) map[string]string {
	t.Helper()
	dir, unmount := conformance.MountBlock(t, mounts)
	defer unmount()
	got := map[string]string{}
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			got[n] = string(b)
		}
	}
	return got
}

func writeFiles(t *testing.T, mounts []mount.Mount, files map[string][]byte) {
	t.Helper()
	dir, unmount := conformance.MountBlock(t, mounts)
	defer unmount()
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func qemuImgInfo(t *testing.T, p string) map[string]any {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", p).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", p, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMountDescriptors checks the block descriptors: an active snapshot on
// a parent is a qcow2 overlay backed by the parent's raw image (or a raw
// reflink), one without a parent a raw empty filesystem, a view the
// parent's image read-only, and an active snapshot's Source stays the same
// across Apply.
func TestMountDescriptors(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, sn *Snapshotter, wantFormat string) {
		unpack(t, sn, "base", "", map[string]string{"f": "1"})
		ms, err := sn.Prepare(ctx, "ctr", "base")
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Type != "ext4" || !slices.Equal(ms[0].Options, []string{"rw", "format=" + wantFormat}) {
			t.Fatalf("Prepare on a parent = %+v, want one ext4 rw format=%s mount", ms, wantFormat)
		}
		info := qemuImgInfo(t, ms[0].Source)
		if info["format"] != wantFormat {
			t.Errorf("qemu-img says %s is %v, the descriptor says %s", ms[0].Source, info["format"], wantFormat)
		}
		vs, err := sn.View(ctx, "v", "base")
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Type != "ext4" || !slices.Equal(vs[0].Options, []string{"ro", "format=raw"}) {
			t.Fatalf("View = %+v, want one ext4 ro format=raw mount", vs)
		}
		if wantFormat == FormatQcow2 && info["backing-filename"] != vs[0].Source {
			t.Errorf("the overlay's backing file is %v, want the parent's image %s", info["backing-filename"], vs[0].Source)
		}
		if wantFormat == FormatRaw && info["backing-filename"] != nil {
			t.Errorf("a raw reflink disk has a backing file: %v", info)
		}
		empty, err := sn.Prepare(ctx, "empty", "")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(empty[0].Options, []string{"rw", "format=raw"}) {
			t.Errorf("Prepare without a parent = %+v, want raw", empty)
		}
		if fi, err := os.Stat(empty[0].Source); err != nil || fi.Size() != 2<<30 {
			t.Errorf("empty disk %v, %v: want the default 2 GiB", fi, err)
		}
		raw, diffID := layerTar(map[string]string{"g": "2"})
		if _, err := sn.Apply(ctx, "ctr", snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		after, err := sn.Mounts(ctx, "ctr")
		if err != nil || !slices.EqualFunc(after, ms, func(a, b mount.Mount) bool { return a.Source == b.Source && slices.Equal(a.Options, b.Options) }) {
			t.Errorf("Mounts after Apply = %+v, %v; want the same descriptor as before %+v", after, err, ms)
		}
		if os.Geteuid() == 0 {
			if got := readFiles(t, ms, "f", "g"); got["f"] != "1" || got["g"] != "2" {
				t.Errorf("after Apply the old descriptor shows %v, want f=1 g=2", got)
			}
		}
		if err := sn.Remove(ctx, "base"); !errdefs.IsInvalidState(err) {
			t.Errorf("Remove of a parent with children = %v, want ErrInvalidState", err)
		}
	}
	t.Run("qcow2", func(t *testing.T) { check(t, configure(t, t.TempDir(), nil), FormatQcow2) })
	t.Run("reflink", func(t *testing.T) {
		check(t, configure(t, snapshottest.XFSLoop(t, 1024), map[string]string{"copy_on_write": "reflink"}), FormatRaw)
	})
}

// TestContainerWritesAreItsOwn writes into a container's disk as a VM
// would: Usage counts those bytes (and not the image's), the image does
// not change, e2fsck finds both filesystems clean, and Remove deletes the
// disk.
func TestContainerWritesAreItsOwn(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	r := rand.NewChaCha8([32]byte{7})
	big := make([]byte, 4<<20)
	_, _ = r.Read(big)
	check := func(t *testing.T, sn *Snapshotter, stateDir string) {
		unpack(t, sn, "image", "", map[string]string{"data/": "", "data/big": string(big), "etc": "x"})
		ms, err := sn.Prepare(ctx, "ctr", "image")
		if err != nil {
			t.Fatal(err)
		}
		vs, err := sn.View(ctx, "look", "image")
		if err != nil {
			t.Fatal(err)
		}
		imageSum := fileSum(t, vs[0].Source)
		u0, err := sn.Usage(ctx, "ctr")
		if err != nil {
			t.Fatal(err)
		}
		if u0.Size > 1<<20 {
			t.Errorf("a fresh container disk owns %d bytes; it should share the image's (4 MiB of data)", u0.Size)
		}
		own := make([]byte, 8<<20)
		_, _ = r.Read(own)
		writeFiles(t, ms, map[string][]byte{"written": own, "etc": []byte("changed")})
		u1, err := sn.Usage(ctx, "ctr")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("container usage before %+v, after writing 8 MiB %+v", u0, u1)
		if u1.Size-u0.Size < 8<<20 || u1.Size > u0.Size+12<<20 || u1.Inodes < 1 {
			t.Errorf("usage went from %+v to %+v after writing 8 MiB in one new file", u0, u1)
		}
		if fileSum(t, vs[0].Source) != imageSum {
			t.Error("writing the container's disk changed the image")
		}
		if got := readFiles(t, vs, "etc", "written"); got["etc"] != "x" || got["written"] != "" {
			t.Errorf("the image shows the container's writes: %v", got)
		}
		if got := readFiles(t, ms, "etc", "data/big"); got["etc"] != "changed" || got["data/big"] != string(big) {
			t.Errorf("the container sees etc=%q and %d bytes of data/big", got["etc"], len(got["data/big"]))
		}
		// Both filesystems are clean ext4.
		fsck(t, vs[0].Source)
		raw := filepath.Join(t.TempDir(), "ctr.raw")
		if out, err := exec.Command("qemu-img", "convert", "-O", "raw", ms[0].Source, raw).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		fsck(t, raw)
		if err := sn.Remove(ctx, "ctr"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(ms[0].Source); !os.IsNotExist(err) {
			t.Errorf("the container's disk is still there after Remove: %v", err)
		}
	}
	t.Run("qcow2", func(t *testing.T) {
		d := t.TempDir()
		check(t, configure(t, d, map[string]string{"size": "256MiB"}), d)
	})
	t.Run("reflink", func(t *testing.T) {
		d := snapshottest.XFSLoop(t, 1024)
		check(t, configure(t, d, map[string]string{"copy_on_write": "reflink", "size": "256MiB"}), d)
	})
}

func fsck(t *testing.T, img string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// TestApplyAndCommitKeepContainerWrites: a disk written through a mount
// (as a VM writes it) is read back before a layer is applied on top, and
// a commit of it (docker commit) keeps the writes and the ownership.
func TestApplyAndCommitKeepContainerWrites(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	sn := configure(t, t.TempDir(), nil)
	unpack(t, sn, "image", "", map[string]string{"a": "image"})
	ms, err := sn.Prepare(ctx, "ctr", "image")
	if err != nil {
		t.Fatal(err)
	}
	dir, unmount := conformance.MountBlock(t, ms)
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("container"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "b"), 123, 456); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	unmount()
	raw, diffID := layerTar(map[string]string{"c": "layer"})
	if _, err := sn.Apply(ctx, "ctr", snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "committed", "ctr"); err != nil {
		t.Fatal(err)
	}
	vs, err := sn.View(ctx, "v", "committed")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ = conformance.MountBlock(t, vs)
	for n, want := range map[string]string{"b": "container", "c": "layer"} {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", n, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Errorf("a, deleted by the container, is back: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(interface{}); sys != nil {
		uid, gid := ownerOf(st)
		if uid != 123 || gid != 456 || st.Mode().Perm() != 0o600 {
			t.Errorf("b is %d:%d %o, want 123:456 600", uid, gid, st.Mode().Perm())
		}
	}
}

// TestConfigure checks settings and their errors.
func TestConfigure(t *testing.T) {
	cases := []struct {
		settings map[string]string
		check    func(error) bool
	}{
		{map[string]string{"size": "1MiB"}, errdefs.IsInvalidArgument},
		{map[string]string{"size": "big"}, errdefs.IsInvalidArgument},
		{map[string]string{"copy_on_write": "zfs"}, errdefs.IsInvalidArgument},
		{map[string]string{"copy_on_write": "reflink"}, errdefs.IsNotImplemented}, // the temp dir is ext4 here
		{map[string]string{"mkfs_ext4": "/nonexistent/mkfs.ext4"}, errdefs.IsInvalidArgument},
		{map[string]string{"qemu_img": "/nonexistent/qemu-img"}, errdefs.IsInvalidArgument},
		{map[string]string{"unknown": "x"}, errdefs.IsInvalidArgument},
	}
	for _, c := range cases {
		b, _ := json.Marshal(c.settings)
		sn := New(nil)
		err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: t.TempDir(), Config: schema.Config{JSON: b}})
		if !c.check(err) {
			t.Errorf("Configure(%v) = %v", c.settings, err)
		} else if err != nil && !strings.Contains(err.Error(), "snapshot-ext4") {
			t.Errorf("Configure(%v) error %q does not name the plugin", c.settings, err)
		}
		_ = sn.Close()
	}
	sn := configure(t, t.TempDir(), map[string]string{"size": "256MiB"})
	ms, err := sn.Prepare(context.Background(), "k", "")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ms[0].Source); err != nil || fi.Size() != 256<<20 {
		t.Errorf("disk with size = 256MiB: %v, %v", fi, err)
	}
	if _, err := New(nil).Prepare(context.Background(), "k", ""); !errdefs.IsUnavailable(err) {
		t.Errorf("Prepare before Configure = %v, want ErrUnavailable", err)
	}
}

// TestImageGrowsWithContent: a chain whose content does not fit the
// configured size gets a bigger image.
func TestImageGrowsWithContent(t *testing.T) {
	sn := configure(t, t.TempDir(), map[string]string{"size": "64MiB"})
	r := rand.NewChaCha8([32]byte{9})
	files := map[string]string{"d/": ""}
	for i := range 3 {
		b := make([]byte, 16<<20)
		_, _ = r.Read(b)
		files[fmt.Sprintf("d/%d", i)] = string(b)
	}
	unpack(t, sn, "big", "", files)
	vs, err := sn.View(context.Background(), "v", "big")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(vs[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 48<<20+48<<20/4+128<<20 {
		t.Errorf("image of 48 MiB of content is %d bytes", fi.Size())
	}
	fsck(t, vs[0].Source)
}

// TestUnpackSnapshotsAreLazy: snapshots labelled LabelUnpack get no disk
// and their committed layers no image until something asks: a container on
// the top of the chain builds that one image only, and Mounts of an unpack
// snapshot makes its disk then.
func TestUnpackSnapshotsAreLazy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sn := configure(t, dir, nil)
	unpackOpt := snapshot.WithLabels(map[string]string{LabelUnpack: "chain"})
	parent := ""
	for i := range 3 {
		key, name := fmt.Sprint("x", i), fmt.Sprint("c", i)
		ms, err := sn.Prepare(ctx, key, parent, unpackOpt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(ms[0].Source); !os.IsNotExist(err) {
			t.Errorf("an unpack snapshot's disk exists before anyone asked for it: %v", err)
		}
		raw, diffID := layerTar(map[string]string{fmt.Sprint("f", i): fmt.Sprint(i)})
		if _, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		if u, err := sn.Usage(ctx, key); err != nil || u.Inodes == 0 {
			t.Errorf("Usage of a lazy snapshot = %+v, %v", u, err)
		}
		if err := sn.Commit(ctx, name, key); err != nil {
			t.Fatal(err)
		}
		parent = name
	}
	images := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "current", "image.raw"))
		return len(m)
	}
	if n := images(); n != 0 {
		t.Errorf("%d images built while unpacking; want none", n)
	}
	ms, err := sn.Prepare(ctx, "ctr", "c2")
	if err != nil {
		t.Fatal(err)
	}
	if n := images(); n != 1 {
		t.Errorf("%d images after a container's Prepare on the top layer; want 1 (the top's)", n)
	}
	// Mounts of a lazy snapshot makes its disk, with its content.
	if _, err := sn.Prepare(ctx, "late", "c1", unpackOpt); err != nil {
		t.Fatal(err)
	}
	late, err := sn.Mounts(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(late[0].Source); err != nil {
		t.Errorf("Mounts did not make the lazy snapshot's disk: %v", err)
	}
	if os.Geteuid() == 0 {
		if got := readFiles(t, late, "f0", "f1", "f2"); fmt.Sprint(got) != "map[f0:0 f1:1]" {
			t.Errorf("the lazy snapshot's disk holds %v, want f0 and f1", got)
		}
		if got := readFiles(t, ms, "f0", "f1", "f2"); fmt.Sprint(got) != "map[f0:0 f1:1 f2:2]" {
			t.Errorf("the container holds %v", got)
		}
	}
}

// TestIntermediateImagesDropped: once a layer is committed on a parent and
// no disk or view uses the parent's image any more, that image is deleted
// (each image holds its whole chain); a container on the parent later
// rebuilds it, and an image still in use is kept.
func TestIntermediateImagesDropped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sn := configure(t, dir, nil)
	image := func(key string) bool {
		e, _ := sn.env()
		st, err := e.get(key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(filepath.Join(e.current(st.ID), "image.raw"))
		return err == nil
	}
	unpack(t, sn, "c0", "", map[string]string{"f0": "0"})
	ctr, err := sn.Prepare(ctx, "ctr-on-c0", "c0")
	if err != nil {
		t.Fatal(err)
	}
	unpack(t, sn, "c1", "c0", map[string]string{"f1": "1"})
	unpack(t, sn, "c2", "c1", map[string]string{"f2": "2"})
	if !image("c0") {
		t.Error("c0's image was dropped while a container's disk is on it")
	}
	if image("c1") {
		t.Error("c1's image is still there: only committed layers are on it")
	}
	if !image("c2") {
		t.Error("the top layer c2 has no image (Commit keeps the last layer's disk as its image)")
	}
	mid, err := sn.Prepare(ctx, "ctr-on-c1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !image("c1") {
		t.Error("a container on c1 did not rebuild its image")
	}
	if os.Geteuid() == 0 {
		if got := readFiles(t, mid, "f0", "f1", "f2"); fmt.Sprint(got) != "map[f0:0 f1:1]" {
			t.Errorf("a container on the rebuilt c1 holds %v", got)
		}
		if got := readFiles(t, ctr, "f0", "f1"); fmt.Sprint(got) != "map[f0:0]" {
			t.Errorf("the container on c0 holds %v", got)
		}
	}
}
