package overlay

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// TestTenSnapshotsShareSpace prepares ten active snapshots of one 64 MiB
// image and measures, by the free space of a loop filesystem of its own,
// what they add.
func TestTenSnapshotsShareSpace(t *testing.T) {
	requireRoot(t)
	mnt := snapshottest.XFSLoop(t, 512)
	sn := New(nil)
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: mnt}); err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	ctx := context.Background()
	r := rand.NewChaCha8([32]byte{5, 6})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755})
	const files, size = 64, 1 << 20
	for i := range files {
		b := make([]byte, size)
		_, _ = r.Read(b)
		_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/f%02d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: size})
		_, _ = tw.Write(b)
	}
	_ = tw.Close()

	before := snapshottest.FreeBytes(t, mnt)
	if _, err := sn.Prepare(ctx, "extract", ""); err != nil {
		t.Fatal(err)
	}
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
	image, ten := before-afterImage, afterImage-afterTen
	ratio := float64(image+ten) / float64(image)
	t.Logf("one image: %d KiB; ten prepared snapshots on top: %d KiB; image+10 snapshots / image = %.3f", image>>10, ten>>10, ratio)
	if image < files*size {
		t.Fatalf("the image took %d bytes for %d bytes of data: the measurement is broken", image, files*size)
	}
	if ratio > 1.05 {
		t.Errorf("ten snapshots of one image take %.3f× the image (target ≤ 1.05)", ratio)
	}
}
