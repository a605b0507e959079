package overlay

import (
	"context"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
	"github.com/berth-dev/berth/sdk/snapshot/dirsnap"
)

// These tests mount real overlayfs (the suite's content checks), so they
// need root; CI runs as root.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("snapshot-overlay mounts overlayfs and writes whiteout devices: run as root (CI does)")
	}
}

func newConfigured(t *testing.T) *dirsnap.Snapshotter {
	t.Helper()
	sn := New(hclog.NewNullLogger())
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() { _ = sn.Close() })
	return sn
}

var caps = []string{snapshot.CapMountOverlay, snapshot.CapMountBind, snapshot.CapApplyGzip, snapshot.CapApplyZstd}

func TestConformance(t *testing.T) {
	requireRoot(t)
	conformance.Run(t, func(t *testing.T) snapshot.Snapshotter { return newConfigured(t) }, conformance.Options{Capabilities: caps})
}

func TestConformanceOverGRPC(t *testing.T) {
	requireRoot(t)
	conformance.RunOverGRPC(t, newConfigured(t), conformance.Options{Capabilities: caps})
}
