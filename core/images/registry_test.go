package images

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/core/images/content"
)

// testRegistry is go-containerregistry's in-memory registry on loopback,
// wrapped so tests can count requests and make blobs misbehave.
type testRegistry struct {
	*httptest.Server
	host string

	mu   sync.Mutex
	gets map[string]int // GETs by blob digest
	// blob overrides, by blob digest: a handler that replaces the real one.
	override map[string]http.HandlerFunc
	// hook, when set, is called before each request is served.
	hook func(r *http.Request)
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{gets: map[string]int{}, override: map[string]http.HandlerFunc{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		hook := tr.hook
		var blob string
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 {
			blob = r.URL.Path[i+len("/blobs/"):]
		}
		if blob != "" && r.Method == http.MethodGet {
			tr.gets[blob]++
		}
		h := tr.override[blob]
		tr.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		if h != nil && r.Method == http.MethodGet {
			h(w, r)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.Close)
	tr.host = strings.TrimPrefix(tr.URL, "http://")
	return tr
}

func (tr *testRegistry) ref(repoTag string) string { return tr.host + "/" + repoTag }

func (tr *testRegistry) getCount(d string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.gets[d]
}

func (tr *testRegistry) setOverride(d string, h http.HandlerFunc) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.override[d] = h
}

func (tr *testRegistry) push(t *testing.T, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(tr.ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
}

func (tr *testRegistry) pushIndex(t *testing.T, repoTag string, idx v1.ImageIndex) {
	t.Helper()
	ref, err := name.ParseReference(tr.ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
}

// randomImage returns an image of n random layers of size bytes each, for
// platform linux/arch.
func randomImage(t *testing.T, size, n int64, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(size, n)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// multiArch returns an index of one random image per arch.
func multiArch(t *testing.T, archs ...string) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	byArch := map[string]v1.Image{}
	for _, a := range archs {
		img := randomImage(t, 1024, 2, a)
		byArch[a] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: a}},
		})
	}
	return idx, byArch
}

func newService(t *testing.T, root string) *Service {
	t.Helper()
	s, err := New(Options{Root: root, Platform: testPlatform})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeState is what "the store is unchanged" compares: names and blobs.
type storeState struct {
	refs  []string
	blobs []string
}

func stateOf(t *testing.T, s *Service) storeState {
	t.Helper()
	var st storeState
	for n, e := range s.snapshot().Refs {
		st.refs = append(st.refs, n+"="+string(e.Digest))
	}
	if err := s.store.Walk(func(d content.Digest, _ int64) error {
		st.blobs = append(st.blobs, string(d))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(st.refs)
	slices.Sort(st.blobs)
	return st
}

func (a storeState) equal(b storeState) bool {
	return slices.Equal(a.refs, b.refs) && slices.Equal(a.blobs, b.blobs)
}

// checkStoreConsistent verifies every blob against its digest, that no
// temp file remains, and that every name's image is complete.
func checkStoreConsistent(t *testing.T, s *Service) {
	t.Helper()
	if err := s.store.Walk(func(d content.Digest, _ int64) error {
		if err := s.store.Verify(d); err != nil {
			t.Errorf("blob %s: %v", d, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if tmp, _ := s.store.IngestFiles(); len(tmp) > 0 {
		t.Errorf("temp files remain in ingest/: %v", tmp)
	}
	if left, _ := os.ReadDir(filepath.Join(s.opts.Root, "tmp")); len(left) > 0 {
		t.Errorf("temp files remain in tmp/: %d", len(left))
	}
	for n, e := range s.snapshot().Refs {
		si, err := loadManifest(s.store, e.Digest)
		if err != nil {
			t.Errorf("name %s: %v", n, err)
			continue
		}
		for _, b := range si.blobs() {
			if !s.store.Has(b) {
				t.Errorf("name %s: blob %s missing", n, b)
			}
		}
	}
}
