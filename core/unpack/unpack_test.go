package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/berth-dev/berth/plugins/snapshot-apfs/apfs"
	"github.com/berth-dev/berth/plugins/snapshot-overlay/overlay"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/dirsnap"
	"github.com/berth-dev/berth/sdk/snapshot/mountutil"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("unpacks into snapshot-overlay (overlayfs whiteouts, mounts): run as root (CI does)")
	}
}

func newOverlay(t *testing.T) *dirsnap.Snapshotter {
	t.Helper()
	sn := overlay.New(nil)
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	return sn
}

// testLayer is a gzipped layer of files name=content (a trailing slash
// makes a directory) whose Open calls are counted.
func testLayer(t *testing.T, opens *atomic.Int32, files ...string) Layer {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		name, content, _ := strings.Cut(f, "=")
		hdr := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(content))}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(content))
	}
	_ = tw.Close()
	var blob bytes.Buffer
	zw := gzip.NewWriter(&blob)
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()
	b := blob.Bytes()
	return Layer{
		MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
		Digest:    fmt.Sprintf("sha256:%x", sha256.Sum256(b)),
		DiffID:    fmt.Sprintf("sha256:%x", sha256.Sum256(raw.Bytes())),
		Size:      int64(len(b)),
		Open: func() (io.ReadCloser, error) {
			if opens != nil {
				opens.Add(1)
			}
			return io.NopCloser(bytes.NewReader(b)), nil
		},
	}
}

func TestChainIDs(t *testing.T) {
	// The example of the OCI image spec's config.md.
	a := "sha256:a"
	b := "sha256:b"
	got := ChainIDs([]string{a, b})
	want := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(a+" "+b)))
	if got[0] != a || got[1] != want {
		t.Errorf("ChainIDs = %v, want [%s %s]", got, a, want)
	}
}

func keys(t *testing.T, sn snapshot.Snapshotter) map[string]snapshot.Info {
	t.Helper()
	out := map[string]snapshot.Info{}
	if err := sn.Walk(context.Background(), func(_ context.Context, i snapshot.Info) error { out[i.Name] = i; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnpackSkipsWhatIsUnpacked(t *testing.T) {
	requireRoot(t)
	sn := newOverlay(t)
	ctx := context.Background()
	var opens atomic.Int32
	l1 := testLayer(t, &opens, "etc/", "etc/os=base", "bin/", "bin/sh=shell")
	l2 := testLayer(t, &opens, "etc/.wh.os", "etc/app=1")
	l3 := testLayer(t, &opens, "app/", "app/main=v1")
	var events []Progress
	res, err := Unpack(ctx, sn, []Layer{l1, l2, l3}, Options{Progress: func(p Progress) { events = append(events, p) }, Labels: map[string]string{"image": "one"}})
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	if res.Applied != 3 || res.Skipped != 0 || len(res.ChainIDs) != 3 || res.ChainID != res.ChainIDs[2] {
		t.Errorf("Result = %+v", res)
	}
	snaps := keys(t, sn)
	if len(snaps) != 3 {
		t.Errorf("snapshots after Unpack: %v; want the 3 chain IDs only (no extraction snapshot left)", snaps)
	}
	for i, c := range res.ChainIDs {
		info, ok := snaps[c]
		parent := ""
		if i > 0 {
			parent = res.ChainIDs[i-1]
		}
		if !ok || info.Kind != snapshot.KindCommitted || info.Parent != parent || info.Labels["image"] != "one" {
			t.Errorf("chain %d %s: %+v (present %v); want committed on %q with label image=one", i, c, info, ok, parent)
		}
	}
	var applied int
	for _, e := range events {
		if e.State == StateApplied {
			applied++
			if e.Read != e.Size {
				t.Errorf("applied event read %d of %d bytes", e.Read, e.Size)
			}
		}
	}
	if applied != 3 {
		t.Errorf("%d applied events: %+v", applied, events)
	}

	// The merged view.
	ms, err := sn.View(ctx, "check", res.ChainID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	undo, err := mountutil.MountAll(ms, dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"bin/sh": "shell", "etc/app": "1", "app/main": "v1"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "etc/os")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("etc/os survived its whiteout: %v", err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "check"); err != nil {
		t.Fatal(err)
	}

	// Again: nothing is opened.
	opens.Store(0)
	res2, err := Unpack(ctx, sn, []Layer{l1, l2, l3}, Options{})
	if err != nil || res2.Applied != 0 || res2.Skipped != 3 || opens.Load() != 0 {
		t.Errorf("second Unpack = %+v, %v with %d blobs opened; want everything skipped, nothing opened", res2, err, opens.Load())
	}
	// An image sharing the two lower layers applies only its own.
	l3b := testLayer(t, &opens, "app/", "app/main=v2")
	res3, err := Unpack(ctx, sn, []Layer{l1, l2, l3b}, Options{})
	if err != nil || res3.Applied != 1 || res3.Skipped != 2 || opens.Load() != 1 {
		t.Errorf("Unpack of an image sharing 2 layers = %+v, %v (%d opened); want 1 applied, 2 skipped", res3, err, opens.Load())
	}

	// Release: the second image's top goes; the shared layers stay while the
	// first image uses them.
	removed, err := Release(ctx, sn, res3.ChainIDs, func(c string) bool { return c == res.ChainIDs[1] })
	if err != nil || len(removed) != 1 || removed[0] != res3.ChainID {
		t.Errorf("Release = %v, %v; want only %s", removed, err, res3.ChainID)
	}
	removed, err = Release(ctx, sn, res.ChainIDs, nil)
	if err != nil || len(removed) != 3 {
		t.Errorf("Release of the last image = %v, %v; want all 3", removed, err)
	}
	if left := keys(t, sn); len(left) != 0 {
		t.Errorf("snapshots left: %v", left)
	}
}

func TestUnpackFailureLeavesCommittedLayersOnly(t *testing.T) {
	requireRoot(t)
	sn := newOverlay(t)
	ctx := context.Background()
	l1 := testLayer(t, nil, "a=1")
	bad := testLayer(t, nil, "b=2")
	bad.DiffID = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("not this layer")))
	_, err := Unpack(ctx, sn, []Layer{l1, bad}, Options{})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), bad.Digest) || !strings.Contains(err.Error(), "layer 2 of 2") {
		t.Errorf("Unpack with a corrupt layer = %v; want invalid argument naming layer 2 and its digest", err)
	}
	snaps := keys(t, sn)
	if len(snaps) != 1 {
		t.Errorf("snapshots after the failure: %v; want the base layer's alone", snaps)
	}

	corrupt := testLayer(t, nil, "d=4")
	corrupt.Digest = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("another blob")))
	if _, err := Unpack(ctx, sn, []Layer{l1, corrupt}, Options{}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "blob digest mismatch") {
		t.Errorf("Unpack of a blob whose digest does not match = %v; want invalid argument, digest mismatch", err)
	}
	if got := keys(t, sn); len(got) != 1 {
		t.Errorf("snapshots after a digest mismatch: %v; the layer must not be committed", got)
	}

	failing := testLayer(t, nil, "c=3")
	failing.Open = func() (io.ReadCloser, error) { return nil, errors.New("registry went away") }
	if _, err := Unpack(ctx, sn, []Layer{l1, failing}, Options{}); err == nil || !strings.Contains(err.Error(), "registry went away") {
		t.Errorf("Unpack with a blob that cannot be opened = %v", err)
	}
	if got := keys(t, sn); len(got) != 1 {
		t.Errorf("snapshots after an open failure: %v", got)
	}

	ctxc, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Unpack(ctxc, sn, []Layer{testLayer(t, nil, "z=1")}, Options{}); err == nil {
		t.Error("Unpack with a cancelled context succeeded")
	}

	for _, l := range []Layer{{DiffID: "md5:x", Open: l1.Open}, {DiffID: l1.DiffID}} {
		if _, err := Unpack(ctx, sn, []Layer{l}, Options{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Unpack of %+v = %v, want ErrInvalidArgument", l, err)
		}
	}
}

// TestUnpackLargeLayers unpacks layers of many read-ahead chunks each, into
// snapshot-apfs (plain directories: no root needed), and checks every byte.
func TestUnpackLargeLayers(t *testing.T) {
	sn := apfs.New(nil)
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	r := mrand.NewChaCha8([32]byte{9})
	var layers []Layer
	want := map[string][sha256.Size]byte{}
	for i := range 3 {
		// Half random (incompressible), half repeated: ~9 MiB per layer.
		b := make([]byte, 9<<20)
		_, _ = r.Read(b[:len(b)/2])
		for j := len(b) / 2; j < len(b); j++ {
			b[j] = byte(j % 251)
		}
		name := fmt.Sprintf("big-%d", i)
		want[name] = sha256.Sum256(b)
		layers = append(layers, testLayer(t, nil, name+"="+string(b)))
	}
	var last Progress
	res, err := Unpack(context.Background(), sn, layers, Options{Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	if last.State != StateApplied || last.Index != 2 {
		t.Errorf("last progress %+v, want layer 2 applied", last)
	}
	ms, err := sn.View(context.Background(), "check", res.ChainID)
	if err != nil {
		t.Fatal(err)
	}
	for name, sum := range want {
		b, err := os.ReadFile(filepath.Join(ms[0].Source, name))
		if err != nil || sha256.Sum256(b) != sum {
			t.Errorf("%s: %d bytes, %v; content differs from the layer's", name, len(b), err)
		}
	}
}
