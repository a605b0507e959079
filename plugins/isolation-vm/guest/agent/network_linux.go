//go:build linux

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// The guest's own network stack: a bridge attachment gives the VM a
// virtio-net NIC with the container's MAC on the network's bridge (a TAP
// on the host), and the container shares the guest's network namespace.
// ConfigureNetwork turns that NIC into the container's eth0.

// nicWait bounds the wait for a NIC the host attached but the guest's
// driver has not registered yet.
const nicWait = 10 * time.Second

func (s *service) ConfigureNetwork(ctx context.Context, r *agentpb.ConfigureNetworkRequest) (*agentpb.Empty, error) {
	// Route sockets only: the guest kernel lacks the other families
	// NewHandle opens by default (xfrm, netfilter are modules not loaded).
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	if err := configureNetwork(ctx, h, r, nicWait); err != nil {
		return nil, err
	}
	// The guest's own resolv.conf, only when the agent is the guest's
	// init (elsewhere, in tests, the file is not the agent's to write).
	if os.Getpid() == 1 && len(r.DnsServers)+len(r.DnsSearch)+len(r.DnsOptions) > 0 {
		if err := writeResolvConf("/etc/resolv.conf", r); err != nil {
			return nil, err
		}
	}
	return empty, nil
}

// configureNetwork applies r's interfaces through h (lo first), each one
// found by MAC within wait.
func configureNetwork(ctx context.Context, h *netlink.Handle, r *agentpb.ConfigureNetworkRequest, wait time.Duration) error {
	type nic struct {
		in     *agentpb.NetworkInterface
		mac    net.HardwareAddr
		former net.HardwareAddr // nil: none
		addrs  []netip.Prefix
		gw     netip.Addr
	}
	for _, s := range r.DnsServers {
		if _, err := netip.ParseAddr(s); err != nil {
			return errdefs.InvalidArgument("dns server %q: %v", s, err)
		}
	}
	var nics []nic
	for _, in := range r.Interfaces {
		n := nic{in: in}
		var err error
		if n.mac, err = net.ParseMAC(in.Mac); err != nil || len(n.mac) != 6 {
			return errdefs.InvalidArgument("interface %q: mac %q is not an Ethernet address", in.Name, in.Mac)
		}
		if in.FormerMac != "" {
			if n.former, err = net.ParseMAC(in.FormerMac); err != nil || len(n.former) != 6 {
				return errdefs.InvalidArgument("interface %q: former mac %q is not an Ethernet address", in.Name, in.FormerMac)
			}
		}
		if in.Name == "" || len(in.Name) > 15 || strings.ContainsAny(in.Name, "/ :\x00") {
			return errdefs.InvalidArgument("interface %s: name %q is not an interface name", in.Mac, in.Name)
		}
		if in.Mtu != 0 && (in.Mtu < 68 || in.Mtu > 65535) {
			return errdefs.InvalidArgument("interface %s: mtu %d out of range (68-65535)", in.Name, in.Mtu)
		}
		for _, a := range in.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil || !p.Addr().Is4() {
				return errdefs.InvalidArgument("interface %s: address %q: an IPv4 address with its prefix length is required", in.Name, a)
			}
			n.addrs = append(n.addrs, p)
		}
		if in.Gateway != "" {
			if n.gw, err = netip.ParseAddr(in.Gateway); err != nil || !n.gw.Is4() {
				return errdefs.InvalidArgument("interface %s: gateway %q: an IPv4 address is required", in.Name, in.Gateway)
			}
		}
		nics = append(nics, n)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	for _, n := range nics {
		l, err := linkByMAC(ctx, h, wait, n.mac, n.former)
		if err != nil {
			return err
		}
		if !bytes.Equal(l.Attrs().HardwareAddr, n.mac) {
			// A VM restored from a template: its NIC has the template's
			// address. Down first (a NIC without live address changes
			// refuses one while up); the driver tells the device, whose
			// receive filter then takes frames for the new address
			// (TestTemplateBridgeNetwork: traffic flows).
			if err := h.LinkSetDown(l); err != nil {
				return fmt.Errorf("interface %s: down: %w", n.in.Mac, err)
			}
			if err := h.LinkSetHardwareAddr(l, n.mac); err != nil {
				return fmt.Errorf("interface %s: set mac %s (was %s): %w", n.in.Name, n.mac, l.Attrs().HardwareAddr, err)
			}
		}
		if l.Attrs().Name != n.in.Name {
			if other, err := h.LinkByName(n.in.Name); err == nil && other.Attrs().Index != l.Attrs().Index {
				return errdefs.AlreadyExists("interface %s: the guest already has another interface named %s", n.in.Mac, n.in.Name)
			}
			if err := h.LinkSetDown(l); err != nil {
				return fmt.Errorf("interface %s: down: %w", n.in.Mac, err)
			}
			if err := h.LinkSetName(l, n.in.Name); err != nil {
				return fmt.Errorf("interface %s: rename %s to %s: %w", n.in.Mac, l.Attrs().Name, n.in.Name, err)
			}
		}
		if n.in.Mtu != 0 && l.Attrs().MTU != int(n.in.Mtu) {
			if err := h.LinkSetMTU(l, int(n.in.Mtu)); err != nil {
				return fmt.Errorf("interface %s: mtu %d: %w", n.in.Name, n.in.Mtu, err)
			}
		}
		if err := setAddresses(h, l, n.addrs); err != nil {
			return fmt.Errorf("interface %s: %w", n.in.Name, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("interface %s: up: %w", n.in.Name, err)
		}
		if n.gw.IsValid() {
			route := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: n.gw.AsSlice(), Family: netlink.FAMILY_V4,
				Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
			if err := h.RouteReplace(route); err != nil {
				return fmt.Errorf("interface %s: default route via %s: %w", n.in.Name, n.gw, err)
			}
		}
	}
	return nil
}

// linkByMAC finds the link with address mac, else one with address
// former (when not nil), waiting up to wait for the driver to register it.
func linkByMAC(ctx context.Context, h *netlink.Handle, wait time.Duration, mac, former net.HardwareAddr) (netlink.Link, error) {
	deadline := time.Now().Add(wait)
	for {
		links, err := h.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		var have []string
		var byFormer netlink.Link
		for _, l := range links {
			if bytes.Equal(l.Attrs().HardwareAddr, mac) {
				return l, nil
			}
			if former != nil && byFormer == nil && bytes.Equal(l.Attrs().HardwareAddr, former) {
				byFormer = l
			}
			have = append(have, l.Attrs().Name+"="+l.Attrs().HardwareAddr.String())
		}
		if byFormer != nil {
			return byFormer, nil
		}
		if time.Now().After(deadline) {
			want := mac.String()
			if former != nil {
				want += " or " + former.String()
			}
			return nil, errdefs.NotFound("no guest interface has mac %s (have %s; is virtio_net in the initramfs?)", want, strings.Join(have, ", "))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// setAddresses makes want the link's IPv4 addresses: adds what is
// missing, removes the others (IPv6 ones are left alone).
func setAddresses(h *netlink.Handle, l netlink.Link, want []netip.Prefix) error {
	have, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	keep := map[netip.Prefix]bool{}
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		wanted := false
		for _, w := range want {
			wanted = wanted || (ok && w == p)
		}
		if wanted {
			keep[p] = true
			continue
		}
		if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove address %s: %w", a.IPNet, err)
		}
	}
	for _, w := range want {
		if keep[w] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: w.Addr().AsSlice(), Mask: net.CIDRMask(w.Bits(), 32)}}
		if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add address %s: %w", w, err)
		}
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// writeResolvConf writes r's DNS settings to path atomically.
func writeResolvConf(path string, r *agentpb.ConfigureNetworkRequest) error {
	var b strings.Builder
	for _, s := range r.DnsServers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(r.DnsSearch) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(r.DnsSearch, " "))
	}
	if len(r.DnsOptions) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(r.DnsOptions, " "))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
