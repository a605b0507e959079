//go:build linux

package ext4

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
)

var caps = []string{snapshot.CapMountBlock, snapshot.CapApplyGzip, snapshot.CapApplyZstd}

// configure returns a snapshotter configured on stateDir with settings
// (nil: the defaults), closed when the test ends.
func configure(t *testing.T, stateDir string, settings map[string]string) *Snapshotter {
	t.Helper()
	b, _ := json.Marshal(settings)
	if settings == nil {
		b = nil
	}
	level := hclog.LevelFromString(os.Getenv("EXT4_TEST_LOG")) // e.g. debug
	if level == hclog.NoLevel {
		level = hclog.Warn
	}
	sn := New(hclog.New(&hclog.LoggerOptions{Level: level}))
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: stateDir, Config: schema.Config{JSON: b}}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	return sn
}

// TestConformanceQcow2 runs the suite in process with the state dir on the
// test's temp dir (ext4 here: no reflinks), so containers' disks are qcow2
// overlays on their parent's raw image.
func TestConformanceQcow2(t *testing.T) {
	sn := configure(t, t.TempDir(), nil)
	if got := sn.CopyOnWrite(); got != FormatQcow2 {
		t.Fatalf("copy-on-write on the temp dir = %q, want qcow2 (is the temp dir on a reflink filesystem?)", got)
	}
	conformance.Run(t, func(*testing.T) snapshot.Snapshotter { return sn }, conformance.Options{Capabilities: caps, ChainDepth: 32})
}

// TestConformanceReflinkXFS runs the suite with the state dir on a real xfs
// (reflink=1) loop filesystem: disks are raw reflinks of their parent's
// image.
func TestConformanceReflinkXFS(t *testing.T) {
	mnt := snapshottest.XFSLoop(t, 2048)
	sn := configure(t, mnt, map[string]string{"copy_on_write": CowReflink})
	conformance.Run(t, func(*testing.T) snapshot.Snapshotter { return sn }, conformance.Options{Capabilities: caps, ChainDepth: 32})
}

// TestConformanceOverGRPC runs the suite through the real gRPC adapters
// (qcow2 disks on the temp dir).
func TestConformanceOverGRPC(t *testing.T) {
	conformance.RunOverGRPC(t, configure(t, t.TempDir(), nil), conformance.Options{Capabilities: caps, ChainDepth: 32})
}
