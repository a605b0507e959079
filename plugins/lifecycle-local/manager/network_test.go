package manager

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/core/network"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	sdknet "github.com/berth-dev/berth/sdk/network"
	"github.com/berth-dev/berth/sdk/plugin"
)

// netLayers adds the core's real network service (without a datapath) to
// the fake layers, and a sandbox mode that can join networks.
type netLayers struct {
	*fakeLayers
	svc   *network.Service
	noCap bool
}

func (l *netLayers) Network() (NetworkSource, error) { return l.svc, nil }

func (l *netLayers) Modes() []Mode {
	modes := l.fakeLayers.Modes()
	if !l.noCap {
		modes[0].Capabilities = []string{isolation.CapNetwork}
	}
	return modes
}

func newNetLayers(t *testing.T) *netLayers {
	svc, err := network.New(context.Background(), network.Options{Root: t.TempDir(), StoreTimeout: time.Second,
		HostPrefixes: func() []netip.Prefix { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return &netLayers{fakeLayers: newFakeLayers(), svc: svc}
}

func TestCreateAttachesAndDeleteDetaches(t *testing.T) {
	ctx := context.Background()
	l := newNetLayers(t)
	m := NewWithLayers(nil, l)
	if err := m.Configure(ctx, pluginConfigure(t)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := l.svc.Create(ctx, sdknet.CreateSpec{Name: "app", Subnet: "10.220.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine", Network: lifecycle.NetworkOptions{
		Network: "app", Aliases: []string{"www"}, Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80}}}})
	if err != nil {
		t.Fatal(err)
	}
	task := l.iso.tasks[c.ID].info.Spec
	if task.Network == nil || task.Network.Mode != "bridge" || len(task.Network.Interfaces) != 1 ||
		!strings.HasPrefix(task.Network.Interfaces[0].Addresses[0], "10.220.0.") || task.Network.Hostname != c.ID[:12] ||
		len(task.Network.Ports) != 1 || task.Network.Ports[0].HostPort == 0 {
		t.Fatalf("task network %+v", task.Network)
	}
	eps, _ := l.svc.Endpoints(ctx, "app")
	if len(eps) != 1 || eps[0].ContainerID != c.ID || eps[0].ContainerName != "web" {
		t.Fatalf("endpoints %+v", eps)
	}
	// The default network, and none/host without the service.
	d, err := m.Create(ctx, "dflt", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	if n := l.iso.tasks[d.ID].info.Spec.Network; n == nil || !strings.HasPrefix(n.Interfaces[0].Addresses[0], "10.88.") {
		t.Errorf("default network attachment %+v", n)
	}
	for _, mode := range []string{"none", "host"} {
		c, err := m.Create(ctx, mode, lifecycle.Config{Image: "alpine", Network: lifecycle.NetworkOptions{Network: mode}})
		if err != nil {
			t.Fatal(err)
		}
		if n := l.iso.tasks[c.ID].info.Spec.Network; n == nil || n.Mode != mode || len(n.Interfaces) != 0 {
			t.Errorf("%s attachment %+v", mode, n)
		}
	}
	if eps, _ := l.svc.Endpoints(ctx, ""); len(eps) != 2 {
		t.Errorf("endpoints %+v, want web and dflt", eps)
	}
	// A rename follows into the network's names.
	if err := m.Rename(ctx, "web", "site"); err != nil {
		t.Fatal(err)
	}
	if eps, _ := l.svc.Endpoints(ctx, "app"); len(eps) != 1 || eps[0].ContainerName != "site" {
		t.Errorf("endpoint after rename: %+v", eps)
	}
	// Remove refuses while web is attached; deleting web detaches it.
	if err := l.svc.Remove(ctx, "app"); !errdefs.IsInvalidState(err) {
		t.Fatalf("remove app = %v", err)
	}
	if err := m.Delete(ctx, "site", true); err != nil {
		t.Fatal(err)
	}
	if err := l.svc.Remove(ctx, "app"); err != nil {
		t.Errorf("remove app after deleting web: %v", err)
	}
}

func TestConfigureSweepsUnknownEndpoints(t *testing.T) {
	ctx := context.Background()
	l := newNetLayers(t)
	stray := strings.Repeat("5", 64)
	if _, err := l.svc.Attach(ctx, sdknet.AttachRequest{ContainerID: stray, Name: "ghost"}); err != nil {
		t.Fatal(err)
	}
	m := NewWithLayers(nil, l)
	if err := m.Configure(ctx, pluginConfigure(t)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Create(ctx, "kept", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.sweepEndpoints(ctx); err != nil {
		t.Fatal(err)
	}
	eps, _ := l.svc.Endpoints(ctx, "")
	if len(eps) != 1 || eps[0].ContainerID != c.ID {
		t.Errorf("endpoints after the sweep: %+v; want only kept's", eps)
	}
}

func TestFailedCreateDetaches(t *testing.T) {
	ctx := context.Background()
	l := newNetLayers(t)
	m := NewWithLayers(nil, l)
	if err := m.Configure(ctx, pluginConfigure(t)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l.j.failOn("isolation.Create", errdefs.Unavailable("isolation fails on purpose"))
	if _, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine"}); err == nil {
		t.Fatal("create succeeded")
	}
	if eps, _ := l.svc.Endpoints(ctx, ""); len(eps) != 0 {
		t.Errorf("a failed create left endpoints: %+v", eps)
	}
	// A bad network request fails before anything is made.
	l.j.failOn("isolation.Create", nil)
	_, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine", Network: lifecycle.NetworkOptions{Network: "missing"}})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("create on an unknown network = %v, want NotFound naming it", err)
	}
	if ts := l.iso.taskIDs(); len(ts) != 0 {
		t.Errorf("tasks left: %v", ts)
	}
}

func TestModeWithoutNetworkCapability(t *testing.T) {
	ctx := context.Background()
	l := newNetLayers(t)
	l.noCap = true
	m := NewWithLayers(nil, l)
	if err := m.Configure(ctx, pluginConfigure(t)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Create(ctx, "plain", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	if n := l.iso.tasks[c.ID].info.Spec.Network; n != nil {
		t.Errorf("a mode that cannot join networks got %+v", n)
	}
	_, err = m.Create(ctx, "pub", lifecycle.Config{Image: "alpine", Network: lifecycle.NetworkOptions{Ports: []isolation.PortMapping{{ContainerPort: 80}}}})
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), isolation.CapNetwork) {
		t.Errorf("publish on a mode without networks = %v, want NotImplemented naming the capability", err)
	}
}

func pluginConfigure(t *testing.T) plugin.ConfigureRequest {
	return plugin.ConfigureRequest{StateDir: t.TempDir(), RuntimeDir: t.TempDir()}
}
