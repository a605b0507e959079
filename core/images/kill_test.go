package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk/images"
)

// Environment of the pulling child process TestKilledPullLeavesStoreConsistent
// starts (this test binary, re-executed).
const (
	envPullRoot = "BERTH_IMAGES_TEST_PULL_ROOT"
	envPullRef  = "BERTH_IMAGES_TEST_PULL_REF"
)

func TestMain(m *testing.M) {
	if root := os.Getenv(envPullRoot); root != "" {
		os.Exit(pullChild(root, os.Getenv(envPullRef)))
	}
	os.Exit(m.Run())
}

// pullChild is the writer the test kills: the same store code the daemon
// runs, in a process of its own.
func pullChild(root, ref string) int {
	s, err := New(Options{Root: root, Platform: testPlatform, PullParallelism: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := s.Pull(context.Background(), ref, images.PullOptions{}, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestKilledPullLeavesStoreConsistent(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 512<<10, 3, "amd64")
	reg.push(t, "killme:1", img)
	m, _ := img.Manifest()
	// Layers download one at a time (PullParallelism 1); the last one
	// stalls after half its bytes, once the first two are committed.
	stall := m.Layers[2]
	layer, err := img.LayerByDigest(stall.Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := layer.Compressed()
	blob, _ := io.ReadAll(rc)
	rc.Close()
	stalled := make(chan struct{}, 1)
	release := make(chan struct{})
	reg.setOverride(stall.Digest.String(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
		_, _ = w.Write(blob[:len(blob)/2])
		w.(http.Flusher).Flush()
		select {
		case stalled <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)

	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envPullRoot+"="+root, envPullRef+"="+reg.ref("killme:1"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the pull never reached the stalling layer: %s", stderr.String())
	}
	// Wait until the writer has the half layer on disk, then kill it.
	ingest := ingestLister(root)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if files, _ := ingest.IngestFiles(); len(files) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no temp file appeared in ingest/")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// The daemon's next start opens the store: the temp file goes, every
	// committed blob is intact, no name points at a half image.
	s := newService(t, root)
	checkStoreConsistent(t, s)
	if refs := s.snapshot().Refs; len(refs) != 0 {
		t.Errorf("killed pull left names %v", refs)
	}
	for _, l := range m.Layers[:2] {
		if !s.store.Has(contentDigest(l.Digest.String())) {
			t.Errorf("layer %s committed before the kill is gone", l.Digest)
		}
	}
	if s.store.Has(contentDigest(stall.Digest.String())) {
		t.Error("the interrupted layer was committed")
	}

	// A second pull succeeds and fetches only what is missing.
	reg.setOverride(stall.Digest.String(), nil)
	before := reg.getCount(m.Layers[0].Digest.String())
	if _, err := s.Pull(context.Background(), reg.ref("killme:1"), images.PullOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if after := reg.getCount(m.Layers[0].Digest.String()); after != before {
		t.Errorf("second pull fetched an already committed layer again")
	}
	checkStoreConsistent(t, s)
}

func contentDigest(s string) content.Digest { return content.Digest(s) }

// ingestLister lists a store's ingest dir without opening (and so
// cleaning) the store.
type ingestLister string

func (l ingestLister) IngestFiles() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(string(l), "ingest"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}
