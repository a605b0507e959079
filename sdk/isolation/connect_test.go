package isolation

import (
	"context"
	"reflect"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// connector is the fake with NetworkConnector.
type connector struct{ *fake }

func (c connector) ConnectNetwork(_ context.Context, id string, a NetworkAttachment) error {
	return c.record("ConnectNetwork", id, a)
}

func (c connector) DisconnectNetwork(_ context.Context, id, bridge string) error {
	return c.record("DisconnectNetwork", id, bridge)
}

func dialRuntime(t *testing.T, r Runtime) *Client {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{"isolation": NewPlugin(r)})
	t.Cleanup(func() { server.Stop(); _ = client.Close() })
	raw, err := client.Dispense("isolation")
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	return raw.(*Client)
}

// TestNetworkConnector: ConnectNetwork and DisconnectNetwork cross the
// adapters with their arguments and errors; a runtime without
// NetworkConnector answers NotImplemented.
func TestNetworkConnector(t *testing.T) {
	ctx := t.Context()
	a := NetworkAttachment{Mode: "bridge", Hostname: "web", Interfaces: []Interface{{
		Bridge: "br-1", MAC: "02:be:0a:00:00:05", Addresses: []string{"10.0.0.5/24"}, MTU: 1500}}}
	f := newFake()
	c := dialRuntime(t, connector{f})
	if err := c.ConnectNetwork(ctx, "t1", a); err != nil {
		t.Fatal(err)
	}
	if call, args := f.last(); call != "ConnectNetwork" || args[0] != "t1" || !reflect.DeepEqual(args[1], a) {
		t.Errorf("runtime saw %s %+v", call, args)
	}
	if err := c.DisconnectNetwork(ctx, "t1", "br-1"); err != nil {
		t.Fatal(err)
	}
	if call, args := f.last(); call != "DisconnectNetwork" || args[0] != "t1" || args[1] != "br-1" {
		t.Errorf("runtime saw %s %+v", call, args)
	}
	f.err = errdefs.InvalidState("task t1 is not running")
	if err := c.ConnectNetwork(ctx, "t1", a); !errdefs.IsInvalidState(err) {
		t.Errorf("error = %v, want InvalidState through", err)
	}

	plain := dialRuntime(t, newFake())
	if err := plain.ConnectNetwork(ctx, "t1", a); !errdefs.IsNotImplemented(err) {
		t.Errorf("ConnectNetwork on a runtime without it = %v, want NotImplemented", err)
	}
	if err := plain.DisconnectNetwork(ctx, "t1", "br-1"); !errdefs.IsNotImplemented(err) {
		t.Errorf("DisconnectNetwork on a runtime without it = %v, want NotImplemented", err)
	}
}
