//go:build linux

package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// TestConfigureNetwork configures a NIC in a network namespace the test
// makes (a veth end standing in for the guest's virtio-net NIC): found by
// MAC, renamed eth0, MTU, address (a stale one removed), up, default route;
// one found by its former (template) MAC gets the new one;
// a second run changes nothing; bad requests and a missing MAC fail
// naming what is wrong.
func TestConfigureNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // switches this thread into it
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	runtime.UnlockOSThread()
	defer ns.Close()
	defer orig.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	mac, _ := net.ParseMAC("02:be:0a:d6:01:05")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nicx", HardwareAddr: mac}, PeerName: "peerx"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	l, _ := h.LinkByName("nicx")
	stale := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 214, 9, 9).To4(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l, stale); err != nil {
		t.Fatal(err)
	}
	req := &agentpb.ConfigureNetworkRequest{Interfaces: []*agentpb.NetworkInterface{{Mac: "02:BE:0A:D6:01:05", Name: "eth0",
		Addresses: []string{"10.214.1.5/24"}, Gateway: "10.214.1.1", Mtu: 1400}}, DnsServers: []string{"10.214.1.1"}}
	ctx := context.Background()
	for range 2 {
		if err := configureNetwork(ctx, h, req, 0); err != nil {
			t.Fatal(err)
		}
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("no eth0 after configure: %v", err)
	}
	if eth0.Attrs().Index != l.Attrs().Index || eth0.Attrs().MTU != 1400 || eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0: index %d (nic %d) mtu %d flags %v", eth0.Attrs().Index, l.Attrs().Index, eth0.Attrs().MTU, eth0.Attrs().Flags)
	}
	addrs, _ := h.AddrList(eth0, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.214.1.5/24" {
		t.Errorf("eth0 addresses %v, want only 10.214.1.5/24", addrs)
	}
	lo, _ := h.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is not up")
	}
	routes, _ := h.RouteList(eth0, netlink.FAMILY_V4)
	var def bool
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.214.1.1" {
			def = true
		}
	}
	if !def {
		t.Errorf("no default route via 10.214.1.1: %v", routes)
	}

	// A NIC restored from a template has the template's MAC: found by the
	// former one, it gets the container's; a repeat finds it by the new one.
	tplMAC, _ := net.ParseMAC("02:b5:ff:00:00:00")
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nicy", HardwareAddr: tplMAC}, PeerName: "peery"}); err != nil {
		t.Fatal(err)
	}
	tplLink, _ := h.LinkByName("nicy")
	moved := &agentpb.ConfigureNetworkRequest{Interfaces: []*agentpb.NetworkInterface{{Mac: "02:be:0a:d6:01:06", FormerMac: "02:b5:ff:00:00:00",
		Name: "eth1", Addresses: []string{"10.214.2.6/24"}}}}
	for range 2 {
		if err := configureNetwork(ctx, h, moved, 0); err != nil {
			t.Fatal(err)
		}
	}
	eth1, err := h.LinkByName("eth1")
	if err != nil {
		t.Fatalf("no eth1 after configure: %v", err)
	}
	if eth1.Attrs().Index != tplLink.Attrs().Index || eth1.Attrs().HardwareAddr.String() != "02:be:0a:d6:01:06" || eth1.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth1: index %d (nic %d) mac %s flags %v, want the former-MAC NIC up with 02:be:0a:d6:01:06",
			eth1.Attrs().Index, tplLink.Attrs().Index, eth1.Attrs().HardwareAddr, eth1.Attrs().Flags)
	}

	bad := []struct {
		name string
		ifc  *agentpb.NetworkInterface
		want string
	}{
		{"bad mac", &agentpb.NetworkInterface{Mac: "zz", Name: "eth1"}, `"zz"`},
		{"bad name", &agentpb.NetworkInterface{Mac: "02:be:00:00:00:01", Name: "a/b"}, `"a/b"`},
		{"bad address", &agentpb.NetworkInterface{Mac: "02:be:00:00:00:01", Name: "eth1", Addresses: []string{"10.1.1.300/24"}}, "10.1.1.300/24"},
		{"bad gateway", &agentpb.NetworkInterface{Mac: "02:be:00:00:00:01", Name: "eth1", Gateway: "x"}, `"x"`},
		{"bad mtu", &agentpb.NetworkInterface{Mac: "02:be:00:00:00:01", Name: "eth1", Mtu: 20}, "mtu 20"},
		{"missing nic", &agentpb.NetworkInterface{Mac: "02:be:00:00:00:01", Name: "eth1"}, "02:be:00:00:00:01"},
		{"bad former mac", &agentpb.NetworkInterface{Mac: "02:be:00:00:00:01", FormerMac: "q", Name: "eth1"}, `"q"`},
		{"missing nic by either", &agentpb.NetworkInterface{Mac: "02:be:00:00:00:01", FormerMac: "02:be:00:00:00:02", Name: "eth2"}, "02:be:00:00:00:02"},
	}
	for _, c := range bad {
		err := configureNetwork(ctx, h, &agentpb.ConfigureNetworkRequest{Interfaces: []*agentpb.NetworkInterface{c.ifc}}, 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
		if c.name == "missing nic" && !errdefs.IsNotFound(err) {
			t.Errorf("missing nic: %v is not NotFound", err)
		}
	}
	if err := configureNetwork(ctx, h, &agentpb.ConfigureNetworkRequest{DnsServers: []string{"nope"}}, 0); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("bad dns server: %v", err)
	}

	p := filepath.Join(t.TempDir(), "etc", "resolv.conf")
	if err := writeResolvConf(p, &agentpb.ConfigureNetworkRequest{DnsServers: []string{"10.214.1.1"}, DnsSearch: []string{"a.test"}, DnsOptions: []string{"ndots:0"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "nameserver 10.214.1.1\nsearch a.test\noptions ndots:0\n" {
		t.Errorf("resolv.conf %q", b)
	}
}
