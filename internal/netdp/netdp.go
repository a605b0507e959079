// Package netdp is Berth's Linux kernel network datapath: one bridge per
// network, a veth pair per container (its inner end moved into the
// container's network namespace), TAP devices for VMs, and the nftables
// rules that give networks outbound NAT, isolation from each other and
// published ports.
//
// Every function is idempotent (Ensure twice is Ensure once; removing what
// is gone succeeds), needs root, and acts on the caller's network namespace
// (the host's). The kernel state is the only state: a restarted daemon or
// plugin finds everything by name — bridges by Network.Bridge, host veths by
// HostVethName(containerID), nft rules by the comment tags below.
//
// nftables layout: one table `inet berth`, shared by every network.
//
//	set bridges      type ifname: the bridge of every ensured network
//	chain forward    filter hook forward priority filter, policy accept
//	  internal network B (comment "berth net <id> …"), at the chain's head:
//	    iifname B oifname B accept                           same network
//	    iifname B oifname @bridges ct status != dnat drop
//	    iifname B drop; oifname B drop                       nothing else in or out
//	  ct state established,related accept                    (base)
//	  other network B (comment "berth net <id> …"), appended:
//	    iifname B oifname B accept                           same network
//	    iifname B oifname @bridges ct status != dnat drop    other berth networks
//	                                                         (published ports stay reachable)
//	    iifname B accept                                     out to the world
//	    oifname B ct status dnat accept                      published ports in
//	    oifname B drop                                       nothing else in
//	chain postrouting nat hook postrouting priority srcnat
//	  per non-internal network (comment "berth net <id>"):
//	    ip saddr SUBNET oifname != B masquerade              outbound NAT
//	    ip saddr SUBNET ip daddr SUBNET ct status dnat masquerade   hairpin
//	chain prerouting  nat hook prerouting priority dstnat
//	chain output      nat hook output priority dstnat
//	  both: fib daddr type local ip daddr != 127.0.0.0/8 jump publish   (base)
//	chain publish
//	  per container and port (comment "berth ctr <id> <target-ip>"):
//	    [ip daddr HOSTIP] tcp|udp dport P dnat ip to TARGET:PORT
//
// Published ports: DNAT serves every non-loopback host address; a loopback
// host IP (-p 127.0.0.1:P:C) cannot be DNATed without route_localnet, so
// PublishPorts skips it and the per-network helper's userspace proxy
// (internal/netd) serves it. The proxy also listens on the mapping's host
// address for the other mappings (it holds the port, answers 127.0.0.1 for
// 0.0.0.0 mappings, and keeps answering while the daemon is down), as
// Docker's docker-proxy does beside its DNAT rules.
//
// Caveat: the forward chain's accepts cannot override a drop of another
// table (nftables evaluates every base chain of a hook; any drop is final).
// A host whose iptables FORWARD policy is DROP (Docker sets that), or with
// other firewall tables dropping forwarded traffic, blocks container traffic
// until it accepts the berth bridges there too; ForwardBlockers names such
// chains (nftables-backed ones) so the daemon can warn. With br_netfilter loaded
// (bridge-nf-call-iptables=1), traffic between containers of one bridge
// also passes those FORWARD chains.
//
// Only IPv4 is wired (subnets, DNAT, masquerade).
package netdp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// TableName is the nftables table (family inet) holding every rule of
// Berth's networks.
const TableName = "berth"

// Network is one network's datapath: a bridge carrying the gateway address.
type Network struct {
	// ID is the network's ID (64 hex digits); rules of the network are
	// tagged with it.
	ID string
	// Bridge is the bridge's interface name (≤ 15 bytes).
	Bridge string
	// Subnet is the network's IPv4 prefix (masked, e.g. 10.88.0.0/16).
	Subnet netip.Prefix
	// Gateway is the bridge's address, inside Subnet.
	Gateway netip.Addr
	// Internal networks have no way out: no forwarding to other
	// interfaces, no masquerade, no published ports.
	Internal bool
	// MTU of the bridge; 0 leaves the kernel's default.
	MTU int
}

// Interface is a container's interface on a network's bridge.
type Interface struct {
	// ContainerID names the host end: HostVethName(ContainerID).
	ContainerID string
	// Name is the interface name inside the container ("eth0").
	Name string
	// Bridge is the network's bridge the host end is attached to.
	Bridge string
	// MAC of the container's interface; empty lets the kernel pick one.
	MAC string
	// Addresses of the container's interface, with their prefix length.
	Addresses []netip.Prefix
	// Gateway is the default route's next hop; the zero Addr adds no
	// default route.
	Gateway netip.Addr
	// MTU of both ends; 0 leaves the kernel's default.
	MTU int
}

// HostVethName is the host end of a container's veth pair: "vb" and the
// first 11 characters of its ID, so a restarted plugin finds it.
func HostVethName(containerID string) string {
	id := containerID
	if len(id) > 11 {
		id = id[:11]
	}
	return "vb" + id
}

// ConnectedVethName is the host end of container id's further veth on
// bridge (ConnectNetns): "vc" and 11 hex digits of a hash of both, so a
// restarted plugin finds it.
func ConnectedVethName(containerID, bridge string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + bridge))
	return "vc" + hex.EncodeToString(sum[:])[:11]
}

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

func validIfname(what, name string) error {
	if !ifnameRE.MatchString(name) {
		return errdefs.InvalidArgument("%s %q: use 1-15 letters, digits, '_', '.', '-'", what, name)
	}
	return nil
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func validID(what, id string) error {
	if !idRE.MatchString(id) {
		return errdefs.InvalidArgument("%s %q: use 1-128 letters, digits, '_', '.', '-'", what, id)
	}
	return nil
}

// Validate checks n and names what is wrong.
func (n Network) Validate() error {
	if err := validID("network id", n.ID); err != nil {
		return err
	}
	if err := validIfname("network "+n.ID+": bridge", n.Bridge); err != nil {
		return err
	}
	if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() {
		return errdefs.InvalidArgument("network %s: subnet %q: an IPv4 prefix is required", n.ID, n.Subnet)
	}
	if n.Subnet.Masked() != n.Subnet {
		return errdefs.InvalidArgument("network %s: subnet %s has host bits set (%s)", n.ID, n.Subnet, n.Subnet.Masked())
	}
	if n.Subnet.Bits() > 30 {
		return errdefs.InvalidArgument("network %s: subnet %s is too small (at most /30)", n.ID, n.Subnet)
	}
	if !n.Gateway.Is4() || !n.Subnet.Contains(n.Gateway) || n.Gateway == n.Subnet.Addr() {
		return errdefs.InvalidArgument("network %s: gateway %s is not a host address of %s", n.ID, n.Gateway, n.Subnet)
	}
	if n.MTU < 0 || (n.MTU > 0 && n.MTU < 68) || n.MTU > 65535 {
		return errdefs.InvalidArgument("network %s: mtu %d out of range (68-65535, 0 for the default)", n.ID, n.MTU)
	}
	return nil
}

// Validate checks ifc and names what is wrong.
func (ifc Interface) Validate() error {
	if err := validID("container id", ifc.ContainerID); err != nil {
		return err
	}
	if err := validIfname("container "+ifc.ContainerID+": interface name", ifc.Name); err != nil {
		return err
	}
	if err := validIfname("container "+ifc.ContainerID+": bridge", ifc.Bridge); err != nil {
		return err
	}
	if ifc.MAC != "" {
		if hw, err := net.ParseMAC(ifc.MAC); err != nil || len(hw) != 6 {
			return errdefs.InvalidArgument("container %s: mac %q is not an Ethernet address", ifc.ContainerID, ifc.MAC)
		}
	}
	for _, a := range ifc.Addresses {
		if !a.IsValid() || !a.Addr().Is4() {
			return errdefs.InvalidArgument("container %s: address %q: IPv4 addresses only", ifc.ContainerID, a)
		}
	}
	if ifc.Gateway.IsValid() && !ifc.Gateway.Is4() {
		return errdefs.InvalidArgument("container %s: gateway %s: IPv4 only", ifc.ContainerID, ifc.Gateway)
	}
	if ifc.MTU < 0 || (ifc.MTU > 0 && ifc.MTU < 68) || ifc.MTU > 65535 {
		return errdefs.InvalidArgument("container %s: mtu %d out of range", ifc.ContainerID, ifc.MTU)
	}
	return nil
}

// CheckBridgeAttachment validates a bridge attachment of task id before an
// isolation plugin makes anything for it: exactly one interface with an
// address, host entries with a name and an IP, DNS servers that are IPs.
// It returns the interface converted as InterfaceFromAttachment does.
func CheckBridgeAttachment(id string, n *isolation.NetworkAttachment) (Interface, error) {
	if len(n.Interfaces) != 1 {
		return Interface{}, errdefs.InvalidArgument("task %s: a bridge attachment needs exactly one interface, got %d", id, len(n.Interfaces))
	}
	ifc, err := InterfaceFromAttachment(id, n.Interfaces[0])
	if err != nil {
		return Interface{}, err
	}
	if len(ifc.Addresses) == 0 {
		return Interface{}, errdefs.InvalidArgument("task %s: interface %s has no address", id, ifc.Name)
	}
	for _, h := range n.Hosts {
		if _, err := netip.ParseAddr(h.IP); err != nil || h.Name == "" {
			return Interface{}, errdefs.InvalidArgument("task %s: host entry %q → %q: a name and an IP address are required", id, h.Name, h.IP)
		}
	}
	for _, s := range n.DNS.Servers {
		if _, err := netip.ParseAddr(s); err != nil {
			return Interface{}, errdefs.InvalidArgument("task %s: dns server %q: %v", id, s, err)
		}
	}
	return ifc, nil
}

// InterfaceFromAttachment converts the isolation contract's interface to
// an Interface of container id, checking its fields.
func InterfaceFromAttachment(containerID string, in isolation.Interface) (Interface, error) {
	ifc := Interface{ContainerID: containerID, Name: in.Name, Bridge: in.Bridge, MAC: in.MAC, MTU: in.MTU}
	if ifc.Name == "" {
		ifc.Name = "eth0"
	}
	for _, a := range in.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return Interface{}, errdefs.InvalidArgument("container %s: address %q: %v", containerID, a, err)
		}
		ifc.Addresses = append(ifc.Addresses, p)
	}
	if in.Gateway != "" {
		g, err := netip.ParseAddr(in.Gateway)
		if err != nil {
			return Interface{}, errdefs.InvalidArgument("container %s: gateway %q: %v", containerID, in.Gateway, err)
		}
		ifc.Gateway = g
	}
	return ifc, ifc.Validate()
}

// validPorts checks published ports.
func validPorts(containerID string, target netip.Addr, ports []isolation.PortMapping) error {
	if err := validID("container id", containerID); err != nil {
		return err
	}
	if !target.Is4() {
		return errdefs.InvalidArgument("container %s: target %s: an IPv4 address is required", containerID, target)
	}
	for _, p := range ports {
		if p.HostPort == 0 || p.ContainerPort == 0 {
			return errdefs.InvalidArgument("container %s: port mapping %s: ports must be 1-65535", containerID, portString(p))
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" && p.Protocol != "" {
			return errdefs.InvalidArgument("container %s: port mapping %s: protocol %q (tcp or udp)", containerID, portString(p), p.Protocol)
		}
		if p.HostIP != "" {
			if _, err := netip.ParseAddr(p.HostIP); err != nil {
				return errdefs.InvalidArgument("container %s: port mapping %s: host ip: %v", containerID, portString(p), err)
			}
		}
	}
	return nil
}

func portString(p isolation.PortMapping) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	h := p.HostIP
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if h != "" {
		h += ":"
	}
	return fmt.Sprintf("%s%d:%d/%s", h, p.HostPort, p.ContainerPort, proto)
}

// Firewall backends: the packet-filter implementation holding the rules
// (same tags and semantics in each; see the package doc for nftables and
// iptables_linux.go for the iptables layout).
const (
	// FirewallAuto picks nftables when the kernel's nf_tables answers,
	// else iptables.
	FirewallAuto = "auto"
	// FirewallNftables is the `inet berth` table through netlink.
	FirewallNftables = "nftables"
	// FirewallIptables is iptables (the `iptables` command on PATH,
	// through github.com/coreos/go-iptables); FirewallIptablesLegacy and
	// FirewallIptablesNft name the binary.
	FirewallIptables       = "iptables"
	FirewallIptablesLegacy = "iptables-legacy"
	FirewallIptablesNft    = "iptables-nft"
)

// FirewallEnv selects the backend in every process using netdp (the
// daemon sets it from `berth { firewall = ... }` before it starts plugins
// and network helpers, which inherit it); unset or empty is FirewallAuto.
// All processes of one host must agree: rules of one backend are
// invisible to the other.
const FirewallEnv = "BERTH_FIREWALL"

// CheckFirewall validates a firewall setting, naming it when bad.
func CheckFirewall(s string) error {
	switch s {
	case "", FirewallAuto, FirewallNftables, FirewallIptables, FirewallIptablesLegacy, FirewallIptablesNft:
		return nil
	}
	return errdefs.InvalidArgument("firewall %q: want %s, %s, %s (or %s, %s)", s, FirewallAuto, FirewallNftables, FirewallIptables,
		FirewallIptablesLegacy, FirewallIptablesNft)
}
