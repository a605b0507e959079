package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

const unpackConfig = `
berth {
  state_dir   = "%s/state"
  runtime_dir = "%s/run"
}
plugin "api" "grpc" {}
plugin "snapshot" "overlay" {}
plugin "isolation" "sandbox" {
  snapshotter = "overlay"
}
`

// A pull unpacks the image into the snapshotter bound to the default
// isolation mode, and removing the image releases those snapshots.
func TestPullUnpacksAndRmiReleases(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root)")
	}
	reg := newLoopbackRegistry(t)
	img, err := random.Image(64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.push(t, "unpack/app:v1", img)

	e := newEnv(t, unpackConfig)
	e.mustBerth("system", "start")
	snapshots := filepath.Join(e.dir, "state", "plugins", "snapshot-overlay", "snapshots")
	count := func() int {
		entries, err := os.ReadDir(snapshots)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return len(entries)
	}

	out := e.mustBerth("pull", ref)
	if n := strings.Count(out, ": unpacked"); n != 3 {
		t.Fatalf("pull reported %d unpacked layers, want 3:\n%s", n, out)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d snapshots after the pull, want 3 (one per layer)", n)
	}
	// A second pull finds everything in place.
	e.mustBerth("pull", ref)
	if n := count(); n != 3 {
		t.Fatalf("%d snapshots after a second pull, want 3", n)
	}
	e.mustBerth("rmi", ref)
	if n := count(); n != 0 {
		t.Fatalf("%d snapshots left after rmi, want 0", n)
	}
}
