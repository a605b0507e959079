package main

import (
	"testing"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
)

// TestPluginProcessConformance runs the suite against the plugin binary,
// launched by core/host as the daemon launches it.
func TestPluginProcessConformance(t *testing.T) {
	bin := snapshottest.Build(t, "github.com/berth-dev/berth/plugins/snapshot-apfs", "apfs")
	sn := snapshottest.Launch(t, bin, "apfs", "")
	conformance.Run(t, func(*testing.T) snapshot.Snapshotter { return sn }, conformance.Options{
		Capabilities: []string{snapshot.CapMountBind, snapshot.CapApplyGzip, snapshot.CapApplyZstd},
	})
}
