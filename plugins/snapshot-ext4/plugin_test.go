//go:build linux

package main

import (
	"testing"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/conformance"
)

// TestPluginProcessConformance runs the suite against the plugin binary,
// launched by core/host as the daemon launches it, with its state dir on a
// reflink xfs loop filesystem (disks are raw reflinks; the qcow2 path runs
// in process and over gRPC in package ext4). Root only: the suite reads and
// writes the images through loop mounts.
func TestPluginProcessConformance(t *testing.T) {
	stateRoot := snapshottest.XFSLoop(t, 2048) // skips when not root
	bin := snapshottest.Build(t, "github.com/berth-dev/berth/plugins/snapshot-ext4", "ext4")
	sn := snapshottest.Launch(t, bin, "ext4", stateRoot)
	conformance.Run(t, func(*testing.T) snapshot.Snapshotter { return sn }, conformance.Options{
		Capabilities: []string{snapshot.CapMountBlock, snapshot.CapApplyGzip, snapshot.CapApplyZstd},
	})
}
