package conformance

import (
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// RunOverGRPC runs the suite against impl reached through the real gRPC
// adapters in one process: impl is served by snapshot.NewPlugin and the
// suite talks to the client go-plugin dispenses (TestPluginGRPCConn), so
// every value, error and Apply stream crosses the wire as it does between
// the core and a plugin process. Configure impl before calling it.
func RunOverGRPC(t *testing.T, impl snapshot.Snapshotter, opts Options) {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{
		string(plugin.LayerSnapshot): snapshot.NewPlugin(impl),
	})
	t.Cleanup(func() {
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(string(plugin.LayerSnapshot))
	if err != nil {
		t.Fatalf("dispense %s: %v", plugin.LayerSnapshot, err)
	}
	c, ok := raw.(*snapshot.Client)
	if !ok {
		t.Fatalf("dispensed %T, want *snapshot.Client", raw)
	}
	Run(t, func(*testing.T) snapshot.Snapshotter { return c }, opts)
}
