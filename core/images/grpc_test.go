package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// serveOverGRPC serves s through the sdk's server adapter on a unix socket
// and returns the sdk client for it: the path every plugin and the CLI use.
func serveOverGRPC(t *testing.T, s *Service) *images.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "images.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := sdk.NewGRPCServer(nil)
	images.RegisterServer(srv, s)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, errdefs.DialOptions()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return images.NewClient(conn)
}

func TestServiceOverGRPC(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 600<<10, 3, "amd64") // layers larger than a chunk
	reg.push(t, "wire:1", img)
	s := newService(t, t.TempDir())
	c := serveOverGRPC(t, s)
	ctx := context.Background()

	var events []images.Progress
	got, err := c.Pull(ctx, reg.ref("wire:1"), images.PullOptions{}, func(p images.Progress) { events = append(events, p) })
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) || len(events) == 0 || events[0].Phase != images.PhaseResolving {
		t.Fatalf("pull over gRPC = %+v with %d events", got, len(events))
	}
	d, err := c.Inspect(ctx, reg.ref("wire:1"))
	if err != nil || len(d.Layers) != 3 || d.Layers[0].DiffID == "" {
		t.Fatalf("inspect = %+v, %v", d.Layers, err)
	}
	for _, l := range d.Layers {
		rc, err := c.OpenBlob(ctx, l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || content.FromBytes(b) != content.Digest(l.Digest) {
			t.Fatalf("OpenBlob(%s): %d bytes, %v", l.Digest, len(b), err)
		}
	}
	if _, err := c.OpenBlob(ctx, "sha256:"+strings.Repeat("0", 64)); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("OpenBlob of a missing blob: %v", err)
	}
	if _, err := c.Inspect(ctx, "berth.local/nope:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("inspect of a missing image: %v", err)
	}

	var archive bytes.Buffer
	if err := c.Save(ctx, []string{reg.ref("wire:1")}, images.SaveOptions{Format: images.FormatDocker}, &archive); err != nil {
		t.Fatal(err)
	}
	c2 := serveOverGRPC(t, newService(t, t.TempDir()))
	loaded, err := c2.Load(ctx, &archive)
	if err != nil || len(loaded) != 1 || loaded[0].Digest != got.Digest {
		t.Fatalf("load over gRPC = %+v, %v", loaded, err)
	}
	if _, err := c2.Load(ctx, strings.NewReader("not a tar")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("load of garbage: %v", err)
	}
	if _, err := c.Tag(ctx, reg.ref("wire:1"), "berth.local/wire:2"); err != nil {
		t.Fatal(err)
	}
	if list, err := c.List(ctx); err != nil || len(list) != 2 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if err := c.AddLease(ctx, images.ContainerLease+"x", "berth.local/wire:2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Remove(ctx, got.Digest, images.RemoveOptions{}); !errors.Is(err, errdefs.ErrInvalidState) {
		t.Errorf("remove of a leased image: %v", err)
	}
	if err := c.DeleteLease(ctx, images.ContainerLease+"x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Remove(ctx, got.Digest, images.RemoveOptions{}); !errors.Is(err, errdefs.ErrInvalidState) {
		t.Errorf("remove by digest of an image with two names: %v", err)
	}
	res, err := c.Remove(ctx, got.Digest, images.RemoveOptions{Force: true})
	if err != nil || len(res.Untagged) != 2 || len(res.Deleted) != 5 {
		t.Fatalf("remove by digest = %+v, %v", res, err)
	}
	if p, err := c.Prune(ctx); err != nil || len(p.Deleted) != 0 {
		t.Errorf("prune = %+v, %v", p, err)
	}
}
