package conformance

import (
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
)

// RunOverGRPC runs the suite against impl reached through the real gRPC
// adapters in one process (go-plugin's TestPluginGRPCConn and Dispense),
// so every value, error and event crosses the wire as it does between
// the core and a plugin process. Configure impl before calling it.
func RunOverGRPC(t *testing.T, impl lifecycle.Manager, opts Options) {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{
		string(plugin.LayerLifecycle): lifecycle.NewPlugin(impl),
	})
	t.Cleanup(func() {
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(string(plugin.LayerLifecycle))
	if err != nil {
		t.Fatalf("dispense %s: %v", plugin.LayerLifecycle, err)
	}
	c, ok := raw.(*lifecycle.Client)
	if !ok {
		t.Fatalf("dispensed %T, want *lifecycle.Client", raw)
	}
	Run(t, func(*testing.T) lifecycle.Manager { return c }, opts)
}
