package conformance

import (
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
)

// RunOverGRPC runs the suite against impl reached through the real gRPC
// adapters in one process: impl is served by resources.NewPlugin and the
// suite talks to the client go-plugin dispenses (goplugin.TestPluginGRPCConn
// + Dispense), so every value and error crosses the wire as it does between
// the core and a plugin process.
//
// impl is shared by every subtest (the suite names its groups uniquely).
// Configure it before calling RunOverGRPC.
//
// go-plugin's test server is a plain grpc.Server, without the errdefs
// interceptors sdk.Serve installs; the resources server adapter maps error
// kinds itself, so they survive here as they do in a plugin process.
func RunOverGRPC(t *testing.T, impl resources.Controller, opts Options) {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{
		string(plugin.LayerResources): resources.NewPlugin(impl),
	})
	t.Cleanup(func() {
		// Stop first: Close asks the server to stop itself, which races
		// with a second Stop inside go-plugin.
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(string(plugin.LayerResources))
	if err != nil {
		t.Fatalf("dispense %s: %v", plugin.LayerResources, err)
	}
	c, ok := raw.(*resources.Client)
	if !ok {
		t.Fatalf("dispensed %T, want *resources.Client", raw)
	}
	Run(t, func(*testing.T) resources.Controller { return c }, opts)
}
