package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

var testPlatform = images.Platform{OS: "linux", Architecture: "amd64"}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestPullThreeLayerImage(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 64<<10, 3, "amd64")
	reg.push(t, "app:v1", img)
	s := newService(t, t.TempDir())
	ctx := context.Background()

	var mu sync.Mutex
	done := map[string]bool{}
	got, err := s.Pull(ctx, reg.ref("app:v1"), images.PullOptions{}, func(p images.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Phase == images.PhaseDone {
			done[p.ID] = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) || got.Name != reg.ref("app:v1") || got.Tag != "v1" {
		t.Fatalf("pulled %+v, want digest %s", got, digestOf(t, img))
	}
	m, _ := img.Manifest()
	for _, l := range m.Layers {
		if !done[l.Digest.String()] {
			t.Errorf("no done progress for layer %s", l.Digest)
		}
	}
	d, err := s.Inspect(ctx, reg.ref("app:v1"))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if len(d.Layers) != 3 {
		t.Fatalf("layers = %d, want 3", len(d.Layers))
	}
	for i, l := range d.Layers {
		if l.Digest != m.Layers[i].Digest.String() || l.DiffID != cf.RootFS.DiffIDs[i].String() || l.Size != m.Layers[i].Size {
			t.Errorf("layer %d = %+v, want digest %s diffID %s", i, l, m.Layers[i].Digest, cf.RootFS.DiffIDs[i])
		}
		rc, err := s.OpenBlob(ctx, l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		b := new(bytes.Buffer)
		_, _ = b.ReadFrom(rc)
		rc.Close()
		if content.FromBytes(b.Bytes()) != content.Digest(l.Digest) {
			t.Errorf("OpenBlob(%s) returned other bytes", l.Digest)
		}
	}
	if d.Platform != testPlatform || d.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("inspect = platform %v cmd %v", d.Platform, d.Config.Cmd)
	}
	// By ID prefix too.
	if d2, err := s.Inspect(ctx, strings.TrimPrefix(got.Digest, "sha256:")[:12]); err != nil || d2.Digest != got.Digest {
		t.Errorf("inspect by ID prefix: %v %v", d2.Digest, err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Size <= 3*64<<10 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	checkStoreConsistent(t, s)

	// A second pull fetches nothing again.
	before := reg.getCount(m.Layers[0].Digest.String())
	if _, err := s.Pull(ctx, reg.ref("app:v1"), images.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if after := reg.getCount(m.Layers[0].Digest.String()); after != before {
		t.Errorf("second pull fetched layer again (%d → %d GETs)", before, after)
	}

	// A new service on the same root sees the image.
	s2 := newService(t, s.opts.Root)
	if _, err := s2.Inspect(ctx, reg.ref("app:v1")); err != nil {
		t.Errorf("after reopen: %v", err)
	}
}

func TestPullMultiArchIndex(t *testing.T) {
	reg := newTestRegistry(t)
	idx, byArch := multiArch(t, "amd64", "arm64")
	reg.pushIndex(t, "multi:latest", idx)
	idxDigest, _ := idx.Digest()
	s := newService(t, t.TempDir())
	ctx := context.Background()

	got, err := s.Pull(ctx, reg.ref("multi"), images.PullOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, byArch["amd64"]) || got.RepoDigest != idxDigest.String() || got.Platform.Architecture != "amd64" {
		t.Errorf("default platform pull = %+v, want amd64 image %s from index %s", got, digestOf(t, byArch["amd64"]), idxDigest)
	}
	got, err = s.Pull(ctx, reg.ref("multi:latest"), images.PullOptions{Platform: images.Platform{OS: "linux", Architecture: "arm64"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, byArch["arm64"]) {
		t.Errorf("arm64 pull = %s, want %s", got.Digest, digestOf(t, byArch["arm64"]))
	}
	before := stateOf(t, s)
	_, err = s.Pull(ctx, reg.ref("multi"), images.PullOptions{Platform: images.Platform{OS: "linux", Architecture: "s390x"}}, nil)
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "linux/s390x") {
		t.Errorf("pull of a platform the index lacks: %v", err)
	}
	if !stateOf(t, s).equal(before) {
		t.Error("failed pull changed the store")
	}
}

func TestSharedLayersStoredOnceAndRemovedLast(t *testing.T) {
	reg := newTestRegistry(t)
	base := randomImage(t, 32<<10, 2, "amd64")
	extra, err := random.Layer(16<<10, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	child, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "base:1", base)
	reg.push(t, "child:1", child)
	s := newService(t, t.TempDir())
	ctx := context.Background()
	for _, r := range []string{"base:1", "child:1"} {
		if _, err := s.Pull(ctx, reg.ref(r), images.PullOptions{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	bm, _ := base.Manifest()
	shared := bm.Layers[0].Digest.String()
	if n := reg.getCount(shared); n != 1 {
		t.Errorf("shared layer fetched %d times, want 1", n)
	}
	// 2 manifests + 2 configs + 2 shared layers + 1 extra layer.
	if n := len(stateOf(t, s).blobs); n != 7 {
		t.Errorf("store holds %d blobs, want 7", n)
	}

	// A tag keeps the image when one name goes.
	if _, err := s.Tag(ctx, reg.ref("base:1"), "berth.local/base:kept"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Remove(ctx, reg.ref("base:1"), images.RemoveOptions{})
	if err != nil || len(res.Deleted) != 0 || len(res.Untagged) != 1 {
		t.Fatalf("remove of one of two names = %+v, %v", res, err)
	}
	res, err = s.Remove(ctx, "berth.local/base:kept", images.RemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// base's manifest and config go; its layers stay for child.
	if len(res.Deleted) != 2 {
		t.Errorf("removing base deleted %v, want its manifest and config", res.Deleted)
	}
	if !s.store.Has(content.Digest(shared)) {
		t.Fatal("shared layer deleted while child uses it")
	}
	released := 0
	s.OnRelease(func(_ context.Context, manifest string, layers []images.Layer) error {
		released++
		if manifest != digestOf(t, child) || len(layers) != 3 {
			t.Errorf("release hook got %s with %d layers", manifest, len(layers))
		}
		return nil
	})
	res, err = s.Remove(ctx, reg.ref("child:1"), images.RemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if released != 1 || len(res.Deleted) != 5 || res.BytesFreed <= 0 {
		t.Errorf("remove child: released %d, deleted %v (%d bytes)", released, res.Deleted, res.BytesFreed)
	}
	if st := stateOf(t, s); len(st.blobs) != 0 || len(st.refs) != 0 {
		t.Errorf("store not empty after removing every image: %+v", st)
	}
	if _, err := s.Remove(ctx, reg.ref("child:1"), images.RemoveOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second remove: %v, want not found", err)
	}
}

func TestConcurrentPullsFetchSharedLayerOnce(t *testing.T) {
	reg := newTestRegistry(t)
	base := randomImage(t, 256<<10, 1, "amd64")
	a, _ := mutate.AppendLayers(base, mustLayer(t, 8<<10))
	b, _ := mutate.AppendLayers(base, mustLayer(t, 8<<10))
	reg.push(t, "a:1", a)
	reg.push(t, "b:1", b)
	bm, _ := base.Manifest()
	shared := bm.Layers[0].Digest.String()
	// Hold the shared layer's first GET until both pulls have asked for
	// their manifests, so the pulls really overlap.
	var manifests sync.WaitGroup
	manifests.Add(2)
	var seen sync.Map
	reg.mu.Lock()
	reg.hook = func(r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
			repo := strings.Split(r.URL.Path, "/")[2]
			if _, loaded := seen.LoadOrStore(repo, true); !loaded {
				manifests.Done()
			}
		}
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, shared) {
			manifests.Wait()
			time.Sleep(50 * time.Millisecond) // let the other pull reach the layer
		}
	}
	reg.mu.Unlock()

	s := newService(t, t.TempDir())
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, r := range []string{"a:1", "b:1"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Pull(context.Background(), reg.ref(r), images.PullOptions{}, nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.getCount(shared); n != 1 {
		t.Errorf("registry served the shared layer %d times, want 1", n)
	}
	checkStoreConsistent(t, s)
}

func mustLayer(t *testing.T, size int64) v1.Layer {
	t.Helper()
	l, err := random.Layer(size, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPullBadInputLeavesStoreUnchanged(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	s := newService(t, t.TempDir())
	// Something already in the store, which must survive every failure.
	good := randomImage(t, 4096, 1, "amd64")
	reg.push(t, "good:1", good)
	if _, err := s.Pull(ctx, reg.ref("good:1"), images.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}

	// Each case gets its own 3-layer image whose last layer misbehaves; the
	// first two layers are fine, so a failed pull has really written
	// something it must undo.
	badLayer := func(t *testing.T, repo string) (string, int64) {
		img := randomImage(t, 32<<10, 3, "amd64")
		reg.push(t, repo+":1", img)
		m, _ := img.Manifest()
		return m.Layers[2].Digest.String(), m.Layers[2].Size
	}
	unknownMedia, err := mutate.Append(randomImage(t, 1024, 1, "amd64"), mutate.Addendum{Layer: mustLayer(t, 1024), MediaType: "application/vnd.example.unknown"})
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "unknownmedia:1", unknownMedia)

	cases := []struct {
		name  string
		ref   string
		setup func(t *testing.T)
		kind  error
		want  string
	}{
		{
			name: "digest mismatch", ref: reg.ref("mismatch:1"), kind: errdefs.ErrInvalidArgument, want: "layer sha256:",
			setup: func(t *testing.T) {
				d, size := badLayer(t, "mismatch")
				reg.setOverride(d, func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Length", fmt.Sprint(size))
					_, _ = w.Write(bytes.Repeat([]byte{'x'}, int(size)))
				})
			},
		},
		{
			name: "truncated blob", ref: reg.ref("truncated:1"), want: "layer sha256:",
			setup: func(t *testing.T) {
				d, _ := badLayer(t, "truncated")
				reg.setOverride(d, func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Length", "100000")
					_, _ = w.Write(bytes.Repeat([]byte{'x'}, 1000))
					w.(http.Flusher).Flush()
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
				})
			},
		},
		{
			name: "manifest references a missing blob", ref: reg.ref("missing:1"), kind: errdefs.ErrNotFound, want: "layer sha256:",
			setup: func(t *testing.T) {
				d, _ := badLayer(t, "missing")
				reg.setOverride(d, func(w http.ResponseWriter, _ *http.Request) {
					w.WriteHeader(http.StatusNotFound)
					_, _ = fmt.Fprint(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`)
				})
			},
		},
		{name: "unknown media type", ref: reg.ref("unknownmedia:1"), kind: errdefs.ErrInvalidArgument, want: "application/vnd.example.unknown"},
		{name: "invalid name", ref: "Not A Valid/Name:!!", kind: errdefs.ErrInvalidArgument, want: "invalid image reference"},
		{name: "unknown image", ref: reg.ref("nosuch:1"), kind: errdefs.ErrNotFound, want: "nosuch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			before := stateOf(t, s)
			_, err := s.Pull(ctx, tc.ref, images.PullOptions{}, nil)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("error kind: %v, want %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if after := stateOf(t, s); !after.equal(before) {
				t.Errorf("store changed:\nbefore %+v\nafter  %+v", before, after)
			}
			checkStoreConsistent(t, s)
		})
	}
}

func TestPullUnauthorized(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "private:1", randomImage(t, 1024, 1, "amd64"))
	reg.mu.Lock()
	reg.hook = nil
	reg.mu.Unlock()
	// Every request now needs credentials we do not have.
	locked := newAuthRegistry(t, reg)
	s := newService(t, t.TempDir())
	before := stateOf(t, s)
	_, err := s.Pull(context.Background(), locked+"/private:1", images.PullOptions{}, nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "berth registry login") {
		t.Errorf("pull without credentials: %v", err)
	}
	if !stateOf(t, s).equal(before) {
		t.Error("store changed")
	}
}

// newAuthRegistry fronts reg with a server that answers 401 to everything,
// returning its host.
func newAuthRegistry(t *testing.T, _ *testRegistry) string {
	t.Helper()
	srv := newTestRegistry(t)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	})
	return srv.host
}

func TestPushSaveLoadRoundTrip(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 16<<10, 3, "amd64")
	reg.push(t, "src:1", img)
	ctx := context.Background()
	s := newService(t, t.TempDir())
	if _, err := s.Pull(ctx, reg.ref("src:1"), images.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	want := digestOf(t, img)

	// Push under another name, pull it into a fresh store.
	if _, err := s.Tag(ctx, reg.ref("src:1"), reg.ref("dst:2")); err != nil {
		t.Fatal(err)
	}
	pushed := map[string]bool{}
	if err := s.Push(ctx, reg.ref("dst:2"), images.PushOptions{}, func(p images.Progress) {
		if p.Phase == images.PhasePushed {
			pushed[p.ID] = true
		}
	}); err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	for _, l := range m.Layers {
		if !pushed[l.Digest.String()] {
			t.Errorf("no pushed progress for layer %s", l.Digest)
		}
	}
	if !pushed[reg.ref("dst:2")] {
		t.Error("no pushed progress for the image")
	}
	s2 := newService(t, t.TempDir())
	got, err := s2.Pull(ctx, reg.ref("dst:2"), images.PullOptions{}, nil)
	if err != nil || got.Digest != want {
		t.Fatalf("pull of pushed image = %s, %v; want %s", got.Digest, err, want)
	}

	for _, format := range []string{images.FormatOCI, images.FormatDocker} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := s.Save(ctx, []string{reg.ref("src:1")}, images.SaveOptions{Format: format}, &buf); err != nil {
				t.Fatal(err)
			}
			s3 := newService(t, t.TempDir())
			loaded, err := s3.Load(ctx, bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != 1 || loaded[0].Name != reg.ref("src:1") {
				t.Fatalf("loaded %+v", loaded)
			}
			// Both formats keep the compressed layers, so the image is
			// byte for byte the one pulled.
			if loaded[0].Digest != want {
				t.Errorf("loaded digest %s, want %s", loaded[0].Digest, want)
			}
			d, err := s3.Inspect(ctx, reg.ref("src:1"))
			if err != nil || len(d.Layers) != 3 {
				t.Fatalf("inspect loaded: %+v %v", d.Layers, err)
			}
			checkStoreConsistent(t, s3)

			// A corrupted archive changes nothing (in a fresh store, where
			// no blob of it exists already and would be skipped).
			s4 := newService(t, t.TempDir())
			before := stateOf(t, s4)
			corrupt := bytes.Clone(buf.Bytes())
			i := bytes.Index(corrupt, []byte("blobs/sha256/"))
			if format == images.FormatDocker {
				i = len(corrupt) / 2
			}
			for j := i + 1024; j < i+1024+512 && j < len(corrupt); j++ {
				corrupt[j] ^= 0xff
			}
			_, err = s4.Load(ctx, bytes.NewReader(corrupt))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("load of corrupted archive: %v", err)
			}
			_, err = s4.Load(ctx, bytes.NewReader(buf.Bytes()[:len(buf.Bytes())/2]))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("load of truncated archive: %v", err)
			}
			if !stateOf(t, s4).equal(before) {
				t.Error("failed loads changed the store")
			}
			checkStoreConsistent(t, s4)
		})
	}
}

func TestLoadCorruptLayerInsideArchive(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 16<<10, 2, "amd64")
	reg.push(t, "c:1", img)
	ctx := context.Background()
	s := newService(t, t.TempDir())
	if _, err := s.Pull(ctx, reg.ref("c:1"), images.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Save(ctx, []string{reg.ref("c:1")}, images.SaveOptions{}, &buf); err != nil {
		t.Fatal(err)
	}
	// Flip bytes inside the last layer's content in the tar: the tar stays
	// valid, the blob no longer matches its digest.
	m, _ := img.Manifest()
	hexName := []byte("blobs/sha256/" + m.Layers[1].Digest.Hex)
	b := bytes.Clone(buf.Bytes())
	i := bytes.Index(b, hexName)
	if i < 0 {
		t.Fatal("layer not found in archive")
	}
	data := (i/512 + 1) * 512 // first data block after the header
	for j := data + 100; j < data+200; j++ {
		b[j] ^= 0xff
	}
	s2 := newService(t, t.TempDir())
	_, err := s2.Load(ctx, bytes.NewReader(b))
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), m.Layers[1].Digest.Hex[:12]) {
		t.Errorf("load with a corrupt layer: %v", err)
	}
	if st := stateOf(t, s2); len(st.blobs) != 0 || len(st.refs) != 0 {
		t.Errorf("failed load left %+v", st)
	}
}

func TestLeasesAndForceRemove(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "l:1", randomImage(t, 4096, 2, "amd64"))
	ctx := context.Background()
	s := newService(t, t.TempDir())
	if _, err := s.Pull(ctx, reg.ref("l:1"), images.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLease(ctx, images.ContainerLease+"c1", reg.ref("l:1")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Remove(ctx, reg.ref("l:1"), images.RemoveOptions{})
	if !errors.Is(err, errdefs.ErrInvalidState) || !strings.Contains(err.Error(), "c1") {
		t.Fatalf("remove of an image a container uses: %v", err)
	}
	res, err := s.Remove(ctx, reg.ref("l:1"), images.RemoveOptions{Force: true})
	if err != nil || len(res.Deleted) != 0 {
		t.Fatalf("forced remove = %+v, %v (blobs must stay while leased)", res, err)
	}
	if p, _ := s.Prune(ctx); len(p.Deleted) != 0 {
		t.Errorf("prune deleted leased blobs %v", p.Deleted)
	}
	if err := s.DeleteLease(ctx, images.ContainerLease+"c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLease(ctx, images.ContainerLease+"c1"); err != nil {
		t.Errorf("second DeleteLease: %v", err)
	}
	if st := stateOf(t, s); len(st.blobs) != 0 {
		t.Errorf("blobs left after the lease ended: %v", st.blobs)
	}
}

func TestPruneReportsBytesFreed(t *testing.T) {
	s := newService(t, t.TempDir())
	ctx := context.Background()
	orphan := []byte("an orphan blob nothing references")
	if _, err := s.store.WriteBytes(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(ctx)
	if err != nil || len(res.Deleted) != 1 || res.BytesFreed != int64(len(orphan)) {
		t.Fatalf("prune = %+v, %v", res, err)
	}
	if res, _ := s.Prune(ctx); len(res.Deleted) != 0 {
		t.Errorf("second prune deleted %v", res.Deleted)
	}
}

func TestImportDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hello", filepath.Join(dir, "bin", "hi")); err != nil {
		t.Fatal(err)
	}
	s := newService(t, t.TempDir())
	ctx := context.Background()
	opts := images.ImportOptions{Dir: dir, Name: "berth.local/imported:1", Config: images.Config{Cmd: []string{"/bin/hello"}, Env: []string{"A=b"}}}
	img, err := s.Import(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Inspect(ctx, "berth.local/imported:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Layers) != 1 || d.Layers[0].MediaType != string(types.OCILayer) || d.Config.Cmd[0] != "/bin/hello" || d.Platform != testPlatform {
		t.Errorf("imported image = %+v", d)
	}
	// The same directory gives the same image.
	again, err := s.Import(ctx, opts)
	if err != nil || again.Digest != img.Digest {
		t.Errorf("re-import digest %s, want %s (%v)", again.Digest, img.Digest, err)
	}
	if _, err := s.Import(ctx, images.ImportOptions{Dir: filepath.Join(dir, "nope"), Name: "x:1"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("import of a missing dir: %v", err)
	}
	checkStoreConsistent(t, s)
}

func TestPullFromUnreachableRegistry(t *testing.T) {
	reg := newTestRegistry(t)
	host := reg.host
	reg.Close() // nothing listens there any more
	s := newService(t, t.TempDir())
	_, err := s.Pull(context.Background(), host+"/gone:1", images.PullOptions{}, nil)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), host) {
		t.Errorf("pull from a closed registry: %v", err)
	}
}
