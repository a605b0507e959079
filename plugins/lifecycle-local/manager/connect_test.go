package manager

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	sdknet "github.com/berth-dev/berth/sdk/network"
)

// connIso is the fake runtime with NetworkConnector, recording calls.
type connIso struct {
	*fakeIso
	mu    sync.Mutex
	calls []string
	fail  error
}

func (c *connIso) ConnectNetwork(_ context.Context, id string, a isolation.NetworkAttachment) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "connect "+id[:12]+" "+a.Interfaces[0].Bridge+" "+a.Interfaces[0].Addresses[0]+" gw="+a.Interfaces[0].Gateway)
	return c.fail
}

func (c *connIso) DisconnectNetwork(_ context.Context, id, bridge string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "disconnect "+id[:12]+" "+bridge)
	return nil
}

// connLayers: the network layers with a mode of the given capabilities
// whose runtime is connIso.
type connLayers struct {
	*netLayers
	caps []string
	iso  *connIso
}

func (l *connLayers) Modes() []Mode {
	modes := l.fakeLayers.Modes()
	modes[0].Capabilities = l.caps
	return modes
}

func (l *connLayers) Isolation(mode string) (isolation.Runtime, error) {
	if _, err := l.fakeLayers.Isolation(mode); err != nil {
		return nil, err
	}
	return l.iso, nil
}

// TestConnectNetwork: connect/disconnect of a running container goes
// through the network service (a further endpoint) and the isolation
// runtime (the interface, with the endpoint's address and no gateway);
// the errors around it; a mode without network.connect — a VM — is
// NotImplemented with the reason.
func TestConnectNetwork(t *testing.T) {
	ctx := context.Background()
	nl := newNetLayers(t)
	l := &connLayers{netLayers: nl, caps: []string{isolation.CapNetwork, isolation.CapNetworkConnect}, iso: &connIso{fakeIso: nl.iso}}
	m := NewWithLayers(nil, l)
	if err := m.Configure(ctx, pluginConfigure(t)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	back, err := nl.svc.Create(ctx, sdknet.CreateSpec{Name: "back", Subnet: "10.221.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	req := lifecycle.NetworkConnect{Network: "back", IP: "10.221.0.7", Aliases: []string{"api"}}
	if err := m.ConnectNetwork(ctx, "web", req); !errdefs.IsInvalidState(err) {
		t.Errorf("connect a created container = %v, want InvalidState", err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := m.ConnectNetwork(ctx, "web", req); err != nil {
		t.Fatal(err)
	}
	want := "connect " + c.ID[:12] + " " + back.Bridge + " 10.221.0.7/24 gw="
	if len(l.iso.calls) != 1 || l.iso.calls[0] != want {
		t.Errorf("runtime calls %q, want [%q]", l.iso.calls, want)
	}
	eps, _ := nl.svc.Endpoints(ctx, "back")
	if len(eps) != 1 || eps[0].ContainerName != "web" || eps[0].IP != "10.221.0.7" {
		t.Errorf("endpoints on back %+v", eps)
	}
	taskIfcs := func() []isolation.Interface {
		t.Helper()
		st, _, err := m.env()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := st.Get(c.ID)
		if err != nil || rec.Task == nil || rec.Task.Network == nil {
			t.Fatalf("record %+v, %v", rec, err)
		}
		return rec.Task.Network.Interfaces
	}
	// The task spec keeps the connected interface for the next start.
	if ifcs := taskIfcs(); len(ifcs) != 2 || ifcs[1].Bridge != back.Bridge || ifcs[1].Addresses[0] != "10.221.0.7/24" || ifcs[1].Gateway != "" {
		t.Errorf("task interfaces after connect %+v", ifcs)
	}
	if err := m.ConnectNetwork(ctx, "web", req); !errdefs.IsAlreadyExists(err) {
		t.Errorf("connect twice = %v, want AlreadyExists", err)
	}
	if err := m.DisconnectNetwork(ctx, "web", "bridge"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("disconnect the first network = %v, want InvalidArgument", err)
	}
	if err := m.DisconnectNetwork(ctx, "web", "back"); err != nil {
		t.Fatal(err)
	}
	if got := l.iso.calls[len(l.iso.calls)-1]; got != "disconnect "+c.ID[:12]+" "+back.Bridge {
		t.Errorf("last runtime call %q", got)
	}
	if eps, _ := nl.svc.Endpoints(ctx, "back"); len(eps) != 0 {
		t.Errorf("endpoints left on back: %+v", eps)
	}
	if ifcs := taskIfcs(); len(ifcs) != 1 {
		t.Errorf("task interfaces after disconnect %+v, want the first only", ifcs)
	}
	if err := m.DisconnectNetwork(ctx, "web", "back"); !errdefs.IsNotFound(err) {
		t.Errorf("disconnect twice = %v, want NotFound", err)
	}
	// A runtime failure undoes the endpoint.
	l.iso.fail = errors.New("no veth today")
	if err := m.ConnectNetwork(ctx, "web", req); err == nil || !strings.Contains(err.Error(), "no veth today") {
		t.Errorf("connect with a failing runtime = %v", err)
	}
	if eps, _ := nl.svc.Endpoints(ctx, "back"); len(eps) != 0 {
		t.Errorf("a failed connect left endpoints: %+v", eps)
	}
	l.iso.fail = nil
	// Modes that cannot: a sandbox without the capability, a VM.
	for _, caps := range [][]string{{isolation.CapNetwork}, {isolation.CapNetwork, isolation.CapVM}} {
		l.caps = caps
		err := m.ConnectNetwork(ctx, "web", req)
		if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), isolation.CapNetworkConnect) {
			t.Errorf("caps %v: connect = %v, want NotImplemented naming %s", caps, err, isolation.CapNetworkConnect)
		}
		if len(caps) == 2 && !strings.Contains(err.Error(), "hot-plug") {
			t.Errorf("a VM's refusal does not say why: %v", err)
		}
	}
	if eps, _ := nl.svc.Endpoints(ctx, "back"); len(eps) != 0 {
		t.Errorf("refused connects left endpoints: %+v", eps)
	}
}
