package main

import (
	"os"
	"testing"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
)

// TestPluginProcessConformance runs the suite against the plugin binary,
// launched by core/host as the daemon launches it, with its state dir on a
// reflink xfs loop filesystem (as root; on the temp dir otherwise).
func TestPluginProcessConformance(t *testing.T) {
	bin := snapshottest.Build(t, "github.com/berth-dev/berth/plugins/snapshot-apfs", "apfs")
	stateRoot := ""
	if os.Geteuid() == 0 {
		stateRoot = snapshottest.XFSLoop(t, 1024)
	}
	sn := snapshottest.Launch(t, bin, "apfs", stateRoot)
	conformance.Run(t, func(*testing.T) snapshot.Snapshotter { return sn }, conformance.Options{
		Capabilities: []string{snapshot.CapMountBind, snapshot.CapApplyGzip, snapshot.CapApplyZstd},
	})
}
