package apfs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/internal/clonetree"
	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
	"github.com/berth-dev/berth/sdk/snapshot/dirsnap"
)

var caps = []string{snapshot.CapMountBind, snapshot.CapApplyGzip, snapshot.CapApplyZstd}

// countingCloner counts the files the platform cloner cloned.
type countingCloner struct{ cloned atomic.Int64 }

func (c *countingCloner) Clone(src *os.File, dst string) error {
	err := clonetree.Platform().Clone(src, dst)
	if err == nil {
		c.cloned.Add(1)
	}
	return err
}

func configure(t *testing.T, c clonetree.Cloner, stateDir string) *dirsnap.Snapshotter {
	t.Helper()
	sn := NewWithCloner(c, nil)
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: stateDir}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	return sn
}

// TestConformanceOnReflinkXFS runs the suite with the state dir on a real
// xfs (reflink=1) loop filesystem: Prepare clones with FICLONE.
func TestConformanceOnReflinkXFS(t *testing.T) {
	mnt := snapshottest.XFSLoop(t, 1024)
	c := &countingCloner{}
	sn := configure(t, c, mnt)
	conformance.Run(t, func(*testing.T) snapshot.Snapshotter { return sn }, conformance.Options{Capabilities: caps})
	if c.cloned.Load() == 0 {
		t.Error("no file was cloned by reflink on xfs reflink=1; Prepare copied everything")
	}
	t.Logf("%d files cloned by FICLONE", c.cloned.Load())
}

// TestConformanceOverGRPCWithCopyFallback runs the suite over gRPC with
// the state dir on the test's temp dir (ext4 here: FICLONE is refused and
// every file is copied). Copying makes a deep chain quadratic in files, so
// this run's chain is 32 layers; the 128-layer chain runs on xfs above and
// in the plugin-process test.
func TestConformanceOverGRPCWithCopyFallback(t *testing.T) {
	conformance.RunOverGRPC(t, configure(t, nil, t.TempDir()), conformance.Options{Capabilities: caps, ChainDepth: 32})
}

// TestTenSnapshotsShareSpace prepares ten active snapshots of one image on
// reflink xfs and measures the space they take by the filesystem's free
// space (du would count the shared extents ten times).
func TestTenSnapshotsShareSpace(t *testing.T) {
	mnt := snapshottest.XFSLoop(t, 1024)
	sn := configure(t, nil, mnt)
	ctx := context.Background()
	const files, size = 64, 1 << 20 // 64 MiB of incompressible data
	r := rand.NewChaCha8([32]byte{3, 4})
	var entries []string
	payload := map[string][]byte{}
	for i := range files {
		b := make([]byte, size)
		_, _ = r.Read(b)
		name := fmt.Sprintf("data/f%02d", i)
		entries = append(entries, name)
		payload[name] = b
	}
	before := snapshottest.FreeBytes(t, mnt)
	if _, err := sn.Prepare(ctx, "extract", ""); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	writeTar(t, &buf, payload)
	if _, err := sn.Apply(ctx, "extract", snapshot.Layer{MediaType: "application/vnd.oci.image.layer.v1.tar"}, &buf); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "image", "extract"); err != nil {
		t.Fatal(err)
	}
	afterImage := snapshottest.FreeBytes(t, mnt)
	for i := range 10 {
		if _, err := sn.Prepare(ctx, fmt.Sprint("container-", i), "image"); err != nil {
			t.Fatal(err)
		}
	}
	afterTen := snapshottest.FreeBytes(t, mnt)
	image := before - afterImage
	ten := afterImage - afterTen
	ratio := float64(image+ten) / float64(image)
	t.Logf("one image: %d KiB; ten prepared snapshots on top: %d KiB; image+10 snapshots / image = %.3f", image>>10, ten>>10, ratio)
	if image < files*size {
		t.Fatalf("the image took %d bytes for %d bytes of data: the measurement is broken", image, files*size)
	}
	if ratio > 1.05 {
		t.Errorf("ten snapshots of one image take %.3f× the image (target ≤ 1.05): reflinks are not shared", ratio)
	}
	// The clones are real copies: writing one leaves the image alone.
	ms, err := sn.Mounts(ctx, "container-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ms[0].Source+"/data/f00", []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	view, err := sn.View(ctx, "v", "image")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(view[0].Source + "/data/f00")
	if err != nil || !bytes.Equal(b, payload["data/f00"]) {
		t.Errorf("writing a clone changed the image's file (%d bytes read, %v)", len(b), err)
	}
}
