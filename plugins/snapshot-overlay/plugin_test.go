package main

import (
	"os"
	"testing"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
)

// TestPluginProcessConformance runs the suite against the plugin binary,
// launched by core/host as the daemon launches it.
func TestPluginProcessConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("snapshot-overlay mounts overlayfs: run as root (CI does)")
	}
	bin := snapshottest.Build(t, "github.com/berth-dev/berth/plugins/snapshot-overlay", "overlay")
	sn := snapshottest.Launch(t, bin, "overlay", "")
	conformance.Run(t, func(*testing.T) snapshot.Snapshotter { return sn }, conformance.Options{
		Capabilities: []string{snapshot.CapMountOverlay, snapshot.CapMountBind, snapshot.CapApplyGzip, snapshot.CapApplyZstd},
	})
}
