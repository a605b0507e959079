package netdp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// lockPath serialises datapath changes between processes (the daemon, the
// isolation plugins): nft rule sets are read, compared and rewritten.
const lockPath = "/run/berth-netdp.lock"

var procMu sync.Mutex

// lock takes the in-process and the host-wide lock; the returned func
// releases both.
func lock(ctx context.Context) (func(), error) {
	procMu.Lock()
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		procMu.Unlock()
		return nil, fmt.Errorf("netdp lock %s: %w", lockPath, err)
	}
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			procMu.Unlock()
			return nil, fmt.Errorf("netdp lock %s: %w", lockPath, err)
		}
	case <-ctx.Done():
		// The flock goroutine finishes once the holder lets go; closing
		// the file then drops the lock it got.
		go func() { <-done; f.Close() }()
		procMu.Unlock()
		return nil, fmt.Errorf("netdp lock %s: %w", lockPath, ctx.Err())
	}
	return func() { f.Close(); procMu.Unlock() }, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// EnsureNetwork creates n's bridge with the gateway address, up, and its
// nft rules; it turns on IPv4 forwarding. What exists already is kept (an
// existing bridge gets the address and state it lacks; rules that differ
// are rewritten). A failure undoes the bridge if this call created it.
func EnsureNetwork(ctx context.Context, n Network) error {
	if err := n.Validate(); err != nil {
		return err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := enableForwarding(); err != nil {
		return fmt.Errorf("network %s: %w", n.ID, err)
	}
	fw, err := backend()
	if err != nil {
		return fmt.Errorf("network %s: %w", n.ID, err)
	}
	created, err := ensureBridge(n)
	if err != nil {
		return fmt.Errorf("network %s: bridge %s: %w", n.ID, n.Bridge, err)
	}
	if err := fw.ensureNetwork(n); err != nil {
		if created {
			if l, lerr := netlink.LinkByName(n.Bridge); lerr == nil {
				_ = netlink.LinkDel(l)
			}
		}
		return fmt.Errorf("network %s: %s: %w", n.ID, fw.Name(), err)
	}
	return nil
}

// RemoveNetwork deletes n's bridge (and so every port still on it), its nft
// rules and the published-port rules of containers in its subnet. The
// table goes when no network is left in it.
func RemoveNetwork(ctx context.Context, n Network) error {
	if err := n.Validate(); err != nil {
		return err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	fw, err := backend()
	if err != nil {
		return fmt.Errorf("network %s: %w", n.ID, err)
	}
	if err := fw.removeNetwork(n); err != nil {
		return fmt.Errorf("network %s: %s: %w", n.ID, fw.Name(), err)
	}
	l, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("network %s: bridge %s: %w", n.ID, n.Bridge, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return errdefs.InvalidState("network %s: %s is a %s, not a bridge; left alone", n.ID, n.Bridge, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("network %s: delete bridge %s: %w", n.ID, n.Bridge, err)
	}
	return nil
}

func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return nil
}

// ensureBridge makes the bridge exist, carry the gateway address and be
// up; created says whether this call made it.
func ensureBridge(n Network) (created bool, err error) {
	l, err := netlink.LinkByName(n.Bridge)
	switch {
	case err == nil:
		if _, ok := l.(*netlink.Bridge); !ok {
			return false, errdefs.AlreadyExists("interface %s exists and is a %s, not a bridge", n.Bridge, l.Type())
		}
	case isNotFound(err):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, MTU: n.MTU}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return false, fmt.Errorf("create: %w", err)
		}
		created = true
		if l, err = netlink.LinkByName(n.Bridge); err != nil {
			return created, err
		}
	default:
		return false, err
	}
	undo := func(e error) (bool, error) {
		if created {
			_ = netlink.LinkDel(l)
		}
		return created, e
	}
	if n.MTU > 0 && l.Attrs().MTU != n.MTU {
		if err := netlink.LinkSetMTU(l, n.MTU); err != nil {
			return undo(fmt.Errorf("set mtu %d: %w", n.MTU, err))
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.Gateway.AsSlice(), Mask: net.CIDRMask(n.Subnet.Bits(), 32)}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return undo(fmt.Errorf("address %s: %w", addr.IPNet, err))
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return undo(fmt.Errorf("set up: %w", err))
	}
	return created, nil
}

// AttachNetns creates the veth pair of ifc.ContainerID: the host end
// (HostVethName) on ifc.Bridge, up; the other end created directly in the
// network namespace at netnsPath (e.g. /proc/<pid>/ns/net) as ifc.Name with
// its MAC, MTU, addresses, up, and a default route via ifc.Gateway;
// loopback is brought up too. A host end left from an earlier attempt is
// replaced. On failure nothing is left (the pair is deleted).
func AttachNetns(ctx context.Context, netnsPath string, ifc Interface) (string, error) {
	if err := ifc.Validate(); err != nil {
		return "", err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	hostName := HostVethName(ifc.ContainerID)
	if _, err := plugVeth(netnsPath, ifc, hostName, false); err != nil {
		return "", err
	}
	return hostName, nil
}

// ConnectNetns adds a further veth pair for ifc (docker network connect):
// the host end ConnectedVethName(ifc.ContainerID, ifc.Bridge) on
// ifc.Bridge, the other end in the namespace at netnsPath as ifc.Name or,
// when that is empty, the first free ethN, configured as AttachNetns does
// (no default route without ifc.Gateway). It returns the name inside. A
// host end left from an earlier attempt is replaced; on failure nothing
// is left.
func ConnectNetns(ctx context.Context, netnsPath string, ifc Interface) (string, error) {
	pick := ifc.Name == ""
	if pick {
		ifc.Name = "eth1" // validated as a placeholder; picked below
	}
	if err := ifc.Validate(); err != nil {
		return "", err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	return plugVeth(netnsPath, ifc, ConnectedVethName(ifc.ContainerID, ifc.Bridge), pick)
}

// plugVeth, under the datapath lock, creates the veth pair hostName (on
// ifc.Bridge, hairpin, up) / ifc.Name (or, with pickName, the first free
// ethN) directly in the namespace at netnsPath, configured as ifc says. A
// stale hostName is replaced; on failure the pair is deleted. It returns
// the name inside.
func plugVeth(netnsPath string, ifc Interface, hostName string, pickName bool) (string, error) {
	br, err := netlink.LinkByName(ifc.Bridge)
	if err != nil {
		if isNotFound(err) {
			return "", errdefs.NotFound("container %s: bridge %s does not exist (ensure the network first)", ifc.ContainerID, ifc.Bridge)
		}
		return "", fmt.Errorf("container %s: bridge %s: %w", ifc.ContainerID, ifc.Bridge, err)
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return "", errdefs.InvalidArgument("container %s: network namespace %s: %v", ifc.ContainerID, netnsPath, err)
	}
	defer ns.Close()
	if old, err := netlink.LinkByName(hostName); err == nil {
		if err := netlink.LinkDel(old); err != nil && !isNotFound(err) {
			return "", fmt.Errorf("container %s: delete stale %s: %w", ifc.ContainerID, hostName, err)
		}
	}
	if pickName {
		name, err := freeEthName(ns)
		if err != nil {
			return "", fmt.Errorf("container %s: in %s: %w", ifc.ContainerID, netnsPath, err)
		}
		ifc.Name = name
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName, MTU: ifc.MTU},
		PeerName:      ifc.Name,
		PeerNamespace: netlink.NsFd(int(ns)),
		PeerMTU:       uint32(ifc.MTU),
	}
	if ifc.MAC != "" {
		veth.PeerHardwareAddr, _ = net.ParseMAC(ifc.MAC)
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return "", fmt.Errorf("container %s: create veth %s/%s: %w", ifc.ContainerID, hostName, ifc.Name, err)
	}
	ok := false
	defer func() {
		if !ok {
			if l, err := netlink.LinkByName(hostName); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
	}()
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return "", fmt.Errorf("container %s: %s: %w", ifc.ContainerID, hostName, err)
	}
	if err := netlink.LinkSetMaster(host, br); err != nil {
		return "", fmt.Errorf("container %s: attach %s to %s: %w", ifc.ContainerID, hostName, ifc.Bridge, err)
	}
	// Hairpin: with br_netfilter loaded, a container's connection to its
	// own published port is DNATed while bridged and must leave by the
	// port it came in on (as kubelet's hairpin-veth and Docker without its
	// userland proxy do).
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return "", fmt.Errorf("container %s: hairpin on %s: %w", ifc.ContainerID, hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return "", fmt.Errorf("container %s: set %s up: %w", ifc.ContainerID, hostName, err)
	}
	if err := configureInside(ns, ifc); err != nil {
		return "", fmt.Errorf("container %s: in %s: %w", ifc.ContainerID, netnsPath, err)
	}
	ok = true
	return ifc.Name, nil
}

// freeEthName is the first ethN the namespace has no link of.
func freeEthName(ns netns.NsHandle) (string, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return "", err
	}
	defer h.Delete()
	links, err := h.LinkList()
	if err != nil {
		return "", err
	}
	taken := map[string]bool{}
	for _, l := range links {
		taken[l.Attrs().Name] = true
	}
	for i := 0; ; i++ {
		if name := fmt.Sprintf("eth%d", i); !taken[name] {
			return name, nil
		}
	}
}

// DisconnectNetns deletes the host end of container id's veth on bridge
// that ConnectNetns made (its peer goes with it); a missing one is fine.
func DisconnectNetns(ctx context.Context, containerID, bridge string) error {
	if err := validID("container id", containerID); err != nil {
		return err
	}
	if err := validIfname("bridge", bridge); err != nil {
		return err
	}
	return deleteLink(ctx, ConnectedVethName(containerID, bridge), "veth")
}

// configureInside sets the container's end up in its namespace, through a
// netlink handle bound to that namespace (no thread switching).
func configureInside(ns netns.NsHandle, ifc Interface) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Delete()
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
	}
	l, err := h.LinkByName(ifc.Name)
	if err != nil {
		return fmt.Errorf("%s: %w", ifc.Name, err)
	}
	for _, a := range ifc.Addresses {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), 32)}}
		if err := h.AddrReplace(l, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", a, ifc.Name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", ifc.Name, err)
	}
	if ifc.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: ifc.Gateway.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", ifc.Gateway, err)
		}
	}
	return nil
}

// DetachNetns deletes the host end of container id's veth pair (its peer
// goes with it); a missing one is fine. The namespace's end also vanishes
// by itself when the namespace dies.
func DetachNetns(ctx context.Context, containerID string) error {
	if err := validID("container id", containerID); err != nil {
		return err
	}
	return deleteLink(ctx, HostVethName(containerID), "veth")
}

func deleteLink(ctx context.Context, name, kind string) error {
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	l, err := netlink.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s %s: %w", kind, name, err)
	}
	if l.Type() != kind {
		return errdefs.InvalidState("%s is a %s, not a %s; left alone", name, l.Type(), kind)
	}
	if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s %s: %w", kind, name, err)
	}
	return nil
}

// CreateTAP creates a persistent TAP device name (vnet header, no packet
// info: what qemu's tap netdev with vnet_hdr opens by name), attached to
// bridge and up. mac is the TAP device's own, host-side address and is
// usually left empty: never give it the guest NIC's MAC (the bridge keeps
// its ports' own addresses as local, so frames for the guest would stop at
// the host). An existing TAP of that name is kept and (re)attached.
func CreateTAP(ctx context.Context, bridge, name, mac string) error {
	if err := validIfname("tap", name); err != nil {
		return err
	}
	if err := validIfname("tap "+name+": bridge", bridge); err != nil {
		return err
	}
	var hw net.HardwareAddr
	if mac != "" {
		var err error
		if hw, err = net.ParseMAC(mac); err != nil || len(hw) != 6 {
			return errdefs.InvalidArgument("tap %s: mac %q is not an Ethernet address", name, mac)
		}
	}
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		if isNotFound(err) {
			return errdefs.NotFound("tap %s: bridge %s does not exist (ensure the network first)", name, bridge)
		}
		return err
	}
	created := false
	l, err := netlink.LinkByName(name)
	switch {
	case err == nil:
		if l.Type() != "tuntap" {
			return errdefs.AlreadyExists("tap %s: the interface exists and is a %s", name, l.Type())
		}
	case isNotFound(err):
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("tap %s: create: %w", name, err)
		}
		// LinkAdd keeps the queue fds of a persistent device open; they
		// are not needed (qemu opens the device by name).
		for _, f := range tap.Fds {
			f.Close()
		}
		created = true
		if l, err = netlink.LinkByName(name); err != nil {
			return err
		}
	default:
		return err
	}
	fail := func(e error) error {
		if created {
			_ = netlink.LinkDel(l)
		}
		return fmt.Errorf("tap %s: %w", name, e)
	}
	if hw != nil {
		if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
			return fail(fmt.Errorf("set mac %s: %w", mac, err))
		}
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fail(fmt.Errorf("attach to %s: %w", bridge, err))
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fail(fmt.Errorf("set up: %w", err))
	}
	return nil
}

// DeleteTAP deletes TAP device name; a missing one is fine.
func DeleteTAP(ctx context.Context, name string) error {
	if err := validIfname("tap", name); err != nil {
		return err
	}
	return deleteLink(ctx, name, "tuntap")
}
