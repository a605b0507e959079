package network

import (
	"context"

	"github.com/berth-dev/berth/internal/netdp"
)

// Kernel is the Datapath of internal/netdp: a Linux bridge per network and
// the nftables rules of the `inet berth` table (root only; elsewhere its
// calls fail NotImplemented).
type Kernel struct{}

var _ Datapath = Kernel{}

func kernelNetwork(n DatapathNetwork) netdp.Network {
	return netdp.Network{ID: n.ID, Bridge: n.Bridge, Subnet: n.Subnet, Gateway: n.Gateway, Internal: n.Internal, MTU: MTU}
}

// EnsureNetwork implements Datapath.
func (Kernel) EnsureNetwork(ctx context.Context, n DatapathNetwork) error {
	return netdp.EnsureNetwork(ctx, kernelNetwork(n))
}

// RemoveNetwork implements Datapath.
func (Kernel) RemoveNetwork(ctx context.Context, n DatapathNetwork) error {
	return netdp.RemoveNetwork(ctx, kernelNetwork(n))
}

// Firewall names the firewall backend the datapath's rules use.
func (Kernel) Firewall() (string, error) { return netdp.Firewall() }

// ForwardBlockers implements ForwardBlockerLister.
func (Kernel) ForwardBlockers(ctx context.Context) ([]string, error) {
	return netdp.ForwardBlockers(ctx)
}
