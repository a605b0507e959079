package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/internal/netdp"
)

// cleanup removes what a berth network on bridge/subnet left in the
// kernel when its daemon could not remove it: the host veths still on the
// bridge, the network's nft rules (found by their "berth net <id> <bridge>
// <subnet>" tags), the DNAT rules of containers in the subnet, and the
// bridge. It then checks that none of it is left.
func cleanup(ctx context.Context, bridge string, subnet netip.Prefix) error {
	var errs []error
	if br, err := netlink.LinkByName(bridge); err == nil {
		if _, ok := br.(*netlink.Bridge); !ok {
			return fmt.Errorf("cleanup: %s is a %s, not a bridge; left alone", bridge, br.Type())
		}
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("cleanup: list links: %w", err)
		}
		for _, l := range links {
			if _, veth := l.(*netlink.Veth); veth && l.Attrs().MasterIndex == br.Attrs().Index {
				if err := netlink.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete veth %s on %s: %w", l.Attrs().Name, bridge, err))
				}
			}
		}
	}
	rules, err := netdp.Rules(ctx)
	if err != nil {
		return fmt.Errorf("cleanup: list nft rules: %w", err)
	}
	nets := map[string]bool{} // network id → internal
	for _, r := range rules {
		if id, internal, ok := netRuleOf(r.Comment, bridge, subnet); ok {
			nets[id] = internal
		}
	}
	if len(nets) == 0 {
		// No rule names the network: RemoveNetwork with a placeholder id
		// still removes the subnet's container rules and the bridge.
		nets["berth-bench-net-cleanup"] = false
	}
	for id, internal := range nets {
		n := netdp.Network{ID: id, Bridge: bridge, Subnet: subnet, Gateway: subnet.Addr().Next(), Internal: internal}
		if err := netdp.RemoveNetwork(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s on %s: %w", id, bridge, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return leftovers(ctx, bridge, subnet)
}

// leftovers reports anything of the network still in the kernel.
func leftovers(ctx context.Context, bridge string, subnet netip.Prefix) error {
	var left []string
	if _, err := netlink.LinkByName(bridge); err == nil {
		left = append(left, "bridge "+bridge)
	}
	rules, err := netdp.Rules(ctx)
	if err != nil {
		return fmt.Errorf("cleanup: list nft rules: %w", err)
	}
	for _, r := range rules {
		_, _, isNet := netRuleOf(r.Comment, bridge, subnet)
		if isNet || ctrRuleIn(r.Comment, subnet) {
			left = append(left, fmt.Sprintf("nft rule %s/%d %q", r.Chain, r.Handle, r.Comment))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cleanup: still there: %s", strings.Join(left, "; "))
	}
	return nil
}

// netRuleOf parses a "berth net <id> <bridge> <subnet> <mode>" tag and
// reports the network id if it names bridge and subnet.
func netRuleOf(comment, bridge string, subnet netip.Prefix) (id string, internal, ok bool) {
	f := strings.Fields(comment)
	if len(f) != 6 || f[0] != "berth" || f[1] != "net" || f[3] != bridge || f[4] != subnet.String() {
		return "", false, false
	}
	return f[2], f[5] == "internal", true
}

// ctrRuleIn reports whether comment is a "berth ctr <id> <target-ip>" tag
// whose target lies in subnet.
func ctrRuleIn(comment string, subnet netip.Prefix) bool {
	f := strings.Fields(comment)
	if len(f) != 4 || f[0] != "berth" || f[1] != "ctr" {
		return false
	}
	a, err := netip.ParseAddr(f[3])
	return err == nil && subnet.Contains(a)
}
