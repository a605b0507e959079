package conformance

import (
	"context"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
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
// interceptors sdk.Serve installs on a plugin's server; RunOverGRPC maps
// impl's errors with errdefs.ToGRPC on the server side instead, which is
// what those interceptors do.
func RunOverGRPC(t *testing.T, impl resources.Controller, opts Options) {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{
		string(plugin.LayerResources): resources.NewPlugin(grpcErrors{impl}),
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

// grpcErrors returns impl's errors as gRPC statuses (errdefs.ToGRPC), as
// the interceptors of a Berth gRPC server do.
type grpcErrors struct{ impl resources.Controller }

var _ resources.Controller = grpcErrors{}

func (g grpcErrors) Info(ctx context.Context) (plugin.Info, error) {
	i, err := g.impl.Info(ctx)
	return i, errdefs.ToGRPC(err)
}

func (g grpcErrors) ConfigSchema(ctx context.Context) (*schema.Spec, error) {
	s, err := g.impl.ConfigSchema(ctx)
	return s, errdefs.ToGRPC(err)
}

func (g grpcErrors) Configure(ctx context.Context, req plugin.ConfigureRequest) error {
	return errdefs.ToGRPC(g.impl.Configure(ctx, req))
}

func (g grpcErrors) CreateGroup(ctx context.Context, id string, l resources.Limits) (resources.Placement, error) {
	p, err := g.impl.CreateGroup(ctx, id, l)
	return p, errdefs.ToGRPC(err)
}

func (g grpcErrors) Attach(ctx context.Context, id string, pid int) error {
	return errdefs.ToGRPC(g.impl.Attach(ctx, id, pid))
}

func (g grpcErrors) Update(ctx context.Context, id string, l resources.Limits) error {
	return errdefs.ToGRPC(g.impl.Update(ctx, id, l))
}

func (g grpcErrors) SetPaused(ctx context.Context, id string, paused bool) error {
	return errdefs.ToGRPC(g.impl.SetPaused(ctx, id, paused))
}

func (g grpcErrors) Usage(ctx context.Context, id string) (resources.Usage, error) {
	u, err := g.impl.Usage(ctx, id)
	return u, errdefs.ToGRPC(err)
}

func (g grpcErrors) List(ctx context.Context) ([]resources.Group, error) {
	gs, err := g.impl.List(ctx)
	return gs, errdefs.ToGRPC(err)
}

func (g grpcErrors) Delete(ctx context.Context, id string) error {
	return errdefs.ToGRPC(g.impl.Delete(ctx, id))
}

func (g grpcErrors) Events(ctx context.Context) (<-chan resources.LimitEvent, error) {
	ch, err := g.impl.Events(ctx)
	return ch, errdefs.ToGRPC(err)
}
