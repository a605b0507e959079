package daemon

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
)

func TestCheckBindings(t *testing.T) {
	plugins := []api.PluginStatus{
		{Layer: plugin.LayerIsolation, Name: "sandbox", Capabilities: []string{isolation.CapRootfsOverlay, isolation.CapRootfsBind, isolation.CapExec}},
		{Layer: plugin.LayerIsolation, Name: "vm", Capabilities: []string{isolation.CapRootfsBlock}},
		{Layer: plugin.LayerSnapshot, Name: "overlay", Capabilities: []string{snapshot.CapMountOverlay, snapshot.CapMountBind}},
		{Layer: plugin.LayerSnapshot, Name: "ext4", Capabilities: []string{snapshot.CapMountBlock}},
	}
	ok := []host.Spec{
		{Layer: plugin.LayerIsolation, Name: "sandbox", Snapshotter: "overlay"},
		{Layer: plugin.LayerIsolation, Name: "vm", Snapshotter: "ext4"},
		{Layer: plugin.LayerSnapshot, Name: "overlay"},
	}
	if err := checkBindings(plugins, ok); err != nil {
		t.Fatalf("matching bindings: %v", err)
	}
	bad := []host.Spec{{Layer: plugin.LayerIsolation, Name: "vm", Snapshotter: "overlay"}}
	err := checkBindings(plugins, bad)
	want := `isolation "vm" accepts [rootfs.block] but its snapshotter "overlay" offers [mount.bind mount.overlay]`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("mismatched binding error = %v; want %q", err, want)
	}
}
