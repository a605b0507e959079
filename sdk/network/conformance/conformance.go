// Package conformance checks that a network service keeps the
// sdk/network contract: network objects, address management, published
// port checks and the error kinds. It needs no root: it runs against a
// service whose datapath may be absent, and binds only loopback ports.
package conformance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/network"
)

// Run runs the suite; newService returns a fresh, empty service for each
// subtest (and cleans it up with t.Cleanup).
func Run(t *testing.T, newService func(t *testing.T) network.Service) {
	ctx := context.Background()
	ctrID := func(n int) string { return fmt.Sprintf("%064x", n+0xc0ffee) }

	t.Run("default network", func(t *testing.T) {
		s := newService(t)
		ns, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 1 || ns[0].Name != network.DefaultNetwork || len(ns[0].ID) != 64 {
			t.Fatalf("a fresh service lists %+v, want only the default network", ns)
		}
		d := ns[0]
		p, err := netip.ParsePrefix(d.Subnet)
		if err != nil || d.Gateway != p.Addr().Next().String() || d.Bridge == "" {
			t.Errorf("default network %+v: gateway must be the subnet's first host", d)
		}
		if err := errOf(s.Prune(ctx)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Inspect(ctx, network.DefaultNetwork); err != nil {
			t.Errorf("prune removed the default network: %v", err)
		}
		if _, err := s.Create(ctx, network.CreateSpec{Name: network.DefaultNetwork}); !errdefs.IsAlreadyExists(err) {
			t.Errorf("create %q = %v, want AlreadyExists", network.DefaultNetwork, err)
		}
	})

	t.Run("create list inspect remove", func(t *testing.T) {
		s := newService(t)
		a, err := s.Create(ctx, network.CreateSpec{Name: "front", Subnet: "10.201.0.0/24", Labels: map[string]string{"k": "v"}})
		if err != nil {
			t.Fatal(err)
		}
		if a.Subnet != "10.201.0.0/24" || a.Gateway != "10.201.0.1" || a.Labels["k"] != "v" || a.Internal || a.CreatedAt.IsZero() {
			t.Errorf("created %+v", a)
		}
		b, err := s.Create(ctx, network.CreateSpec{Name: "back", Internal: true})
		if err != nil {
			t.Fatal(err)
		}
		bp, err := netip.ParsePrefix(b.Subnet)
		if err != nil || !b.Internal {
			t.Fatalf("created %+v", b)
		}
		for _, other := range []string{a.Subnet, "10.88.0.0/16"} {
			if netip.MustParsePrefix(other).Overlaps(bp) {
				t.Errorf("automatic subnet %s overlaps %s", bp, other)
			}
		}
		if _, err := s.Create(ctx, network.CreateSpec{Name: "front"}); !errdefs.IsAlreadyExists(err) {
			t.Errorf("second create of front = %v, want AlreadyExists", err)
		}
		ns, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range ns {
			names = append(names, n.Name)
		}
		if !slices.Equal(names, []string{"back", network.DefaultNetwork, "front"}) {
			t.Errorf("List names = %q, want sorted back, bridge, front", names)
		}
		for _, ref := range []string{"front", a.ID, a.ID[:10]} {
			got, err := s.Inspect(ctx, ref)
			if err != nil || got.ID != a.ID {
				t.Errorf("Inspect(%q) = %+v, %v", ref, got, err)
			}
		}
		if _, err := s.Inspect(ctx, "nope"); !errdefs.IsNotFound(err) {
			t.Errorf("Inspect(nope) = %v, want NotFound", err)
		}
		if err := s.Remove(ctx, "front"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Inspect(ctx, "front"); !errdefs.IsNotFound(err) {
			t.Errorf("Inspect after Remove = %v, want NotFound", err)
		}
		if err := s.Remove(ctx, "front"); !errdefs.IsNotFound(err) {
			t.Errorf("second Remove = %v, want NotFound", err)
		}
		// The removed subnet is free again.
		if _, err := s.Create(ctx, network.CreateSpec{Name: "front2", Subnet: "10.201.0.0/24"}); err != nil {
			t.Errorf("reuse a removed network's subnet: %v", err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		s := newService(t)
		if _, err := s.Create(ctx, network.CreateSpec{Name: "a", Subnet: "10.202.0.0/16"}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			spec network.CreateSpec
			kind func(error) bool
			want string
		}{
			{network.CreateSpec{Name: "b", Subnet: "10.202.5.0/24"}, errdefs.IsInvalidArgument, "overlaps network a"},
			{network.CreateSpec{Name: "b", Subnet: "10.88.1.0/24"}, errdefs.IsInvalidArgument, "overlaps network bridge"},
			{network.CreateSpec{Name: "b", Subnet: "10.0.0.0/4"}, errdefs.IsInvalidArgument, `"10.0.0.0/4"`},
			{network.CreateSpec{Name: "b", Subnet: "10.203.0.1/24"}, errdefs.IsInvalidArgument, "host bits"},
			{network.CreateSpec{Name: "b", Subnet: "banana"}, errdefs.IsInvalidArgument, `"banana"`},
			{network.CreateSpec{Name: "b", Subnet: "fd00::/64"}, errdefs.IsInvalidArgument, "IPv4"},
			{network.CreateSpec{Name: "", Subnet: ""}, errdefs.IsInvalidArgument, "network name"},
			{network.CreateSpec{Name: "bad name"}, errdefs.IsInvalidArgument, `"bad name"`},
			{network.CreateSpec{Name: network.None}, errdefs.IsInvalidArgument, "reserved"},
			{network.CreateSpec{Name: network.Host}, errdefs.IsInvalidArgument, "reserved"},
		} {
			_, err := s.Create(ctx, c.spec)
			if err == nil || !c.kind(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Create(%+v) = %v, want an error with %q of the right kind", c.spec, err, c.want)
			}
		}
		ns, _ := s.List(ctx)
		if len(ns) != 2 {
			t.Errorf("failed creates left networks behind: %+v", ns)
		}
	})

	t.Run("attach detach", func(t *testing.T) {
		s := newService(t)
		n, err := s.Create(ctx, network.CreateSpec{Name: "app", Subnet: "10.204.0.0/24"})
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.Attach(ctx, network.AttachRequest{
			ContainerID: ctrID(1), Name: "web", Hostname: "webhost", Aliases: []string{"www"}, Network: "app",
			DNSSearch:  []string{"example.test"},
			ExtraHosts: []isolation.HostEntry{{Name: "gw", IP: network.HostGateway}, {Name: "db", IP: "192.0.2.7"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if a.Mode != network.ModeBridge || len(a.Interfaces) != 1 || a.Hostname != "webhost" {
			t.Fatalf("attachment %+v", a)
		}
		i := a.Interfaces[0]
		ip, err := netip.ParsePrefix(i.Addresses[0])
		if err != nil || ip.Bits() != 24 || !netip.MustParsePrefix(n.Subnet).Contains(ip.Addr()) || ip.Addr().String() == n.Gateway {
			t.Errorf("interface %+v: address not a host of %s other than the gateway", i, n.Subnet)
		}
		if i.Name != "eth0" || i.Bridge != n.Bridge || i.Gateway != n.Gateway || i.MAC == "" || i.MTU <= 0 {
			t.Errorf("interface %+v on %+v", i, n)
		}
		if !slices.Equal(a.DNS.Servers, []string{n.Gateway}) || !slices.Equal(a.DNS.Search, []string{"example.test"}) {
			t.Errorf("DNS %+v, want the gateway as server", a.DNS)
		}
		hosts := map[string]string{}
		for _, h := range a.Hosts {
			hosts[h.Name] = h.IP
		}
		if hosts[network.HostGatewayName] != n.Gateway || hosts["gw"] != n.Gateway || hosts["db"] != "192.0.2.7" {
			t.Errorf("hosts %+v", a.Hosts)
		}
		// Attaching again is idempotent.
		again, err := s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(1), Name: "web", Network: "app"})
		if err != nil || again.Interfaces[0].Addresses[0] != i.Addresses[0] {
			t.Errorf("second Attach = %+v, %v; want the same address", again, err)
		}
		// A fixed address, and the errors around it.
		b, err := s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(2), Name: "db", Network: n.ID[:12], IP: "10.204.0.77"})
		if err != nil || b.Interfaces[0].Addresses[0] != "10.204.0.77/24" {
			t.Fatalf("Attach with IP = %+v, %v", b, err)
		}
		for _, c := range []struct {
			req  network.AttachRequest
			kind func(error) bool
			want string
		}{
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", IP: "10.204.0.77"}, errdefs.IsInvalidArgument, "already in use"},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", IP: "10.9.9.9"}, errdefs.IsInvalidArgument, "10.9.9.9"},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", IP: n.Gateway}, errdefs.IsInvalidArgument, n.Gateway},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", IP: "10.204.0.255"}, errdefs.IsInvalidArgument, "10.204.0.255"},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", IP: "nope"}, errdefs.IsInvalidArgument, `"nope"`},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "missing"}, errdefs.IsNotFound, `"missing"`},
			{network.AttachRequest{ContainerID: ctrID(1), Network: network.DefaultNetwork}, errdefs.IsAlreadyExists, "already attached"},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", Ports: []isolation.PortMapping{{ContainerPort: 80, Protocol: "sctp"}}}, errdefs.IsInvalidArgument, "sctp"},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", Ports: []isolation.PortMapping{{HostIP: "nohost", ContainerPort: 80}}}, errdefs.IsInvalidArgument, "nohost"},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", Aliases: []string{"bad alias"}}, errdefs.IsInvalidArgument, "bad alias"},
			{network.AttachRequest{ContainerID: ctrID(3), Network: "app", DNS: []string{"resolver"}}, errdefs.IsInvalidArgument, "resolver"},
			{network.AttachRequest{ContainerID: "", Network: "app"}, errdefs.IsInvalidArgument, "container"},
		} {
			_, err := s.Attach(ctx, c.req)
			if err == nil || !c.kind(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Attach(%+v) = %v, want an error with %q of the right kind", c.req, err, c.want)
			}
		}
		eps, err := s.Endpoints(ctx, "app")
		if err != nil || len(eps) != 2 {
			t.Fatalf("Endpoints(app) = %+v, %v; want 2 (failed attaches leave nothing)", eps, err)
		}
		if eps[0].ContainerName != "db" || eps[1].ContainerName != "web" || eps[1].IP+"/24" != i.Addresses[0] || eps[1].MAC != i.MAC ||
			!slices.Equal(eps[1].Aliases, []string{"www"}) || eps[1].Network != "app" {
			t.Errorf("endpoints %+v", eps)
		}
		if err := s.Rename(ctx, ctrID(2), "database"); err != nil {
			t.Fatal(err)
		}
		if err := s.Rename(ctx, ctrID(99), "nobody"); err != nil {
			t.Errorf("Rename of a container without an endpoint = %v, want success", err)
		}
		if eps, _ := s.Endpoints(ctx, "app"); len(eps) != 2 || eps[0].ContainerName != "database" {
			t.Errorf("endpoints after Rename: %+v", eps)
		}
		got, _ := s.Inspect(ctx, "app")
		if !slices.Equal(got.Containers, []string{ctrID(1), ctrID(2)}) {
			t.Errorf("Inspect containers = %q", got.Containers)
		}
		// In use: Remove refuses, naming the containers; Prune skips it.
		err = s.Remove(ctx, "app")
		if !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "web") || !strings.Contains(err.Error(), "database") {
			t.Errorf("Remove of a used network = %v, want InvalidState naming web and database", err)
		}
		if removed, err := s.Prune(ctx); err != nil || slices.Contains(removed, "app") {
			t.Errorf("Prune = %q, %v; want app kept", removed, err)
		}
		for _, id := range []string{ctrID(1), ctrID(2), ctrID(2), ctrID(99)} {
			if err := s.Detach(ctx, id); err != nil {
				t.Errorf("Detach(%.12s) = %v (Detach is idempotent)", id, err)
			}
		}
		if eps, _ := s.Endpoints(ctx, ""); len(eps) != 0 {
			t.Errorf("endpoints after Detach: %+v", eps)
		}
		// The fixed address is free again.
		if _, err := s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(4), Network: "app", IP: "10.204.0.77"}); err != nil {
			t.Errorf("re-take a released address: %v", err)
		}
		if err := s.Detach(ctx, ctrID(4)); err != nil {
			t.Fatal(err)
		}
		if removed, err := s.Prune(ctx); err != nil || !slices.Equal(removed, []string{"app"}) {
			t.Errorf("Prune = %q, %v; want [app]", removed, err)
		}
	})

	t.Run("none and host", func(t *testing.T) {
		s := newService(t)
		for _, mode := range []string{network.None, network.Host} {
			a, err := s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(5), Network: mode, Hostname: "h"})
			if err != nil || a.Mode != mode || len(a.Interfaces) != 0 {
				t.Errorf("Attach(%s) = %+v, %v", mode, a, err)
			}
			if _, err := s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(5), Network: mode, Ports: []isolation.PortMapping{{ContainerPort: 80}}}); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Attach(%s) with a port = %v, want InvalidArgument", mode, err)
			}
		}
		if eps, _ := s.Endpoints(ctx, ""); len(eps) != 0 {
			t.Errorf("none/host recorded endpoints: %+v", eps)
		}
	})

	t.Run("published ports", func(t *testing.T) {
		s := newService(t)
		a, err := s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(6), Name: "p", Ports: []isolation.PortMapping{
			{HostIP: "127.0.0.1", ContainerPort: 80},
			{HostIP: "127.0.0.1", ContainerPort: 53, Protocol: "udp"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Ports) != 2 || a.Ports[0].HostPort == 0 || a.Ports[1].HostPort == 0 || a.Ports[0].Protocol != "tcp" || a.Ports[1].Protocol != "udp" {
			t.Fatalf("ports %+v: want host ports picked and protocols filled", a.Ports)
		}
		taken := a.Ports[0]
		// Another container cannot publish the same host port.
		_, err = s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(7), Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: taken.HostPort, ContainerPort: 81}}})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), fmt.Sprint(taken.HostPort)) {
			t.Errorf("publish a published port = %v, want InvalidArgument naming it", err)
		}
		// A port some other process holds.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		busy := uint16(l.Addr().(*net.TCPAddr).Port)
		_, err = s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(8), Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: busy, ContainerPort: 80}}})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), fmt.Sprint(busy)) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("publish a busy port = %v, want InvalidArgument naming it", err)
		}
		// Twice in one request.
		_, err = s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(9), Ports: []isolation.PortMapping{
			{HostIP: "127.0.0.1", HostPort: 1, ContainerPort: 80}, {HostIP: "127.0.0.1", HostPort: 1, ContainerPort: 81}}})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "twice") {
			t.Errorf("one host port twice = %v, want InvalidArgument", err)
		}
		eps, _ := s.Endpoints(ctx, "")
		if len(eps) != 1 || !slices.Equal(eps[0].Ports, a.Ports) {
			t.Errorf("endpoints %+v; want only p with its ports", eps)
		}
	})

	t.Run("connect disconnect", func(t *testing.T) {
		s := newService(t)
		if _, err := s.Create(ctx, network.CreateSpec{Name: "front", Subnet: "10.205.0.0/24"}); err != nil {
			t.Fatal(err)
		}
		back, err := s.Create(ctx, network.CreateSpec{Name: "back", Subnet: "10.206.0.0/24"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Attach(ctx, network.AttachRequest{ContainerID: ctrID(1), Name: "app", Network: "front"}); err != nil {
			t.Fatal(err)
		}
		a, err := s.Connect(ctx, network.AttachRequest{ContainerID: ctrID(1), Name: "app", Network: "back", IP: "10.206.0.9", Aliases: []string{"api"}})
		if err != nil {
			t.Fatal(err)
		}
		if a.Mode != network.ModeBridge || len(a.Interfaces) != 1 || a.Interfaces[0].Bridge != back.Bridge ||
			a.Interfaces[0].Addresses[0] != "10.206.0.9/24" || a.Interfaces[0].Gateway != "" || a.Interfaces[0].MAC == "" {
			t.Errorf("Connect attachment %+v; want one interface on %s, 10.206.0.9/24, no gateway", a, back.Bridge)
		}
		if again, err := s.Connect(ctx, network.AttachRequest{ContainerID: ctrID(1), Name: "app", Network: "back"}); err != nil ||
			again.Interfaces[0].Addresses[0] != "10.206.0.9/24" {
			t.Errorf("second Connect = %+v, %v; want the same endpoint", again, err)
		}
		eps, _ := s.Endpoints(ctx, "back")
		if len(eps) != 1 || eps[0].ContainerID != ctrID(1) || eps[0].IP != "10.206.0.9" || !slices.Equal(eps[0].Aliases, []string{"api"}) {
			t.Errorf("Endpoints(back) = %+v", eps)
		}
		for _, c := range []struct {
			req  network.AttachRequest
			kind func(error) bool
			want string
		}{
			{network.AttachRequest{ContainerID: ctrID(2), Network: "back"}, errdefs.IsInvalidState, "no network endpoint"},
			{network.AttachRequest{ContainerID: ctrID(1), Network: "front"}, errdefs.IsInvalidArgument, "already on network front"},
			{network.AttachRequest{ContainerID: ctrID(1), Network: "missing"}, errdefs.IsNotFound, `"missing"`},
			{network.AttachRequest{ContainerID: ctrID(1), Network: "back", Ports: []isolation.PortMapping{{ContainerPort: 80}}}, errdefs.IsInvalidArgument, "ports"},
			{network.AttachRequest{ContainerID: ctrID(1), Network: network.None}, errdefs.IsInvalidArgument, "none"},
		} {
			if _, err := s.Connect(ctx, c.req); err == nil || !c.kind(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Connect(%+v) = %v, want an error with %q of the right kind", c.req, err, c.want)
			}
		}
		if err := s.Disconnect(ctx, ctrID(1), "front"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Disconnect of the first network = %v, want InvalidArgument", err)
		}
		if err := s.Rename(ctx, ctrID(1), "app2"); err != nil {
			t.Fatal(err)
		}
		if eps, _ := s.Endpoints(ctx, "back"); len(eps) != 1 || eps[0].ContainerName != "app2" {
			t.Errorf("a renamed container's connected endpoint: %+v", eps)
		}
		if err := s.Disconnect(ctx, ctrID(1), "back"); err != nil {
			t.Fatal(err)
		}
		if err := s.Disconnect(ctx, ctrID(1), "back"); !errdefs.IsNotFound(err) {
			t.Errorf("second Disconnect = %v, want NotFound", err)
		}
		if eps, _ := s.Endpoints(ctx, "back"); len(eps) != 0 {
			t.Errorf("endpoints left on back: %+v", eps)
		}
		// Detach releases connected endpoints too.
		if _, err := s.Connect(ctx, network.AttachRequest{ContainerID: ctrID(1), Network: "back"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Detach(ctx, ctrID(1)); err != nil {
			t.Fatal(err)
		}
		if eps, _ := s.Endpoints(ctx, ""); len(eps) != 0 {
			t.Errorf("endpoints left after Detach: %+v", eps)
		}
		for _, name := range []string{"front", "back"} {
			if err := s.Remove(ctx, name); err != nil {
				t.Errorf("Remove %s: %v", name, err)
			}
		}
	})
}

func errOf[T any](_ T, err error) error { return err }
