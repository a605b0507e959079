package netdp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/isolation"
)

// firewall is one packet-filter backend of the datapath's rules. Callers
// hold the datapath lock (except for forwardBlockers, read-only). Every
// method is idempotent.
type firewall interface {
	// Name is the backend's Firewall* name.
	Name() string
	// ensureNetwork makes n's rules what the layout says (kept when
	// their tags match, else rewritten).
	ensureNetwork(n Network) error
	// removeNetwork deletes n's rules and the publish rules whose target
	// lies in n's subnet; the backend's base goes with the last network.
	removeNetwork(n Network) error
	// publish replaces container id's DNAT rules with ports to target.
	publish(containerID string, target netip.Addr, ports []isolation.PortMapping) error
	// unpublish deletes container id's DNAT rules, returning their
	// targets.
	unpublish(containerID string) ([]netip.Addr, error)
	rules() ([]Rule, error)
	bridges() ([]string, error)
	forwardBlockers() ([]string, error)
}

var active struct {
	once sync.Once
	fw   firewall
	err  error
}

// backend is the firewall FirewallEnv selects, chosen once per process.
func backend() (firewall, error) {
	active.once.Do(func() { active.fw, active.err = selectFirewall(os.Getenv(FirewallEnv)) })
	return active.fw, active.err
}

func selectFirewall(setting string) (firewall, error) {
	if err := CheckFirewall(setting); err != nil {
		return nil, fmt.Errorf("%s: %w", FirewallEnv, err)
	}
	switch setting {
	case FirewallNftables:
		return nftFirewall{}, nil
	case FirewallIptables:
		return newIptables("")
	case FirewallIptablesLegacy, FirewallIptablesNft:
		return newIptables(setting)
	}
	if nftUsable() {
		return nftFirewall{}, nil
	}
	fw, err := newIptables("")
	if err != nil {
		return nil, fmt.Errorf("neither nftables (the kernel's nf_tables does not answer) nor iptables is usable: %w", err)
	}
	return fw, nil
}

// nftUsable says whether the kernel's nf_tables answers a listing.
func nftUsable() bool {
	c, err := nftables.New()
	if err != nil {
		return false
	}
	_, err = c.ListTables()
	return err == nil
}

// Firewall names the backend this process uses (FirewallNftables,
// FirewallIptables, FirewallIptablesLegacy or FirewallIptablesNft).
func Firewall() (string, error) {
	fw, err := backend()
	if err != nil {
		return "", err
	}
	return fw.Name(), nil
}

// Rules lists every rule of ours with its chain and comment tag (nothing
// when there is none). Chains are the nftables layout's names
// (forward, postrouting, prerouting, output, publish) in every backend.
func Rules(ctx context.Context) ([]Rule, error) {
	fw, err := backend()
	if err != nil {
		return nil, err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return fw.rules()
}

// BridgesInTable lists the bridges of the networks the firewall has rules
// for (nftables: the bridges set).
func BridgesInTable(ctx context.Context) ([]string, error) {
	fw, err := backend()
	if err != nil {
		return nil, err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return fw.bridges()
}

// PublishPorts makes the DNAT rules of container id's published ports to
// target exactly ports: earlier rules of the container are replaced
// (nftables: in the same atomic batch). Mappings on a loopback host IP get
// no rule (the userspace proxy serves them); a host IP of 0.0.0.0, :: or
// "" matches every local non-loopback address; IPv6 host IPs other than ::
// are skipped (IPv4 datapath only).
func PublishPorts(ctx context.Context, containerID string, target netip.Addr, ports []isolation.PortMapping) error {
	if err := validPorts(containerID, target, ports); err != nil {
		return err
	}
	fw, err := backend()
	if err != nil {
		return err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := fw.publish(containerID, target, ports); err != nil {
		return fmt.Errorf("container %s: publish ports (%s): %w", containerID, fw.Name(), err)
	}
	return nil
}

// UnpublishPorts deletes every DNAT rule of container id; none is fine.
func UnpublishPorts(ctx context.Context, containerID string) error {
	if err := validID("container id", containerID); err != nil {
		return err
	}
	fw, err := backend()
	if err != nil {
		return err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	targets, err := fw.unpublish(containerID)
	if err != nil {
		return fmt.Errorf("container %s: unpublish ports (%s): %w", containerID, fw.Name(), err)
	}
	// Connection tracking keeps NATing flows it already knows (a UDP
	// client that keeps sending would reach the old target forever):
	// forget the flows answered by the container.
	for _, t := range targets {
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(netlink.ConntrackReplySrcIP, t.AsSlice()); err == nil {
			_, _ = netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f)
		}
	}
	return nil
}

// ForwardBlockers names the other firewall chains on the forward hook
// whose policy is drop (nftables: other tables' base chains, e.g. "ip
// filter FORWARD" as Docker leaves iptables-nft; iptables: the FORWARD
// chain's policy): their drop is final whatever our rules accept, so
// container traffic through the host stops there unless they accept it.
func ForwardBlockers(ctx context.Context) ([]string, error) {
	fw, err := backend()
	if err != nil {
		return nil, err
	}
	return fw.forwardBlockers()
}
