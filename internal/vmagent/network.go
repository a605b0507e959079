package vmagent

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/vmagent/agentpb"
)

// NetworkInterface is one NIC of the guest as ConfigureNetwork sets it up.
type NetworkInterface struct {
	// MAC is the NIC's address: the host gave the VM's NIC this address,
	// or the agent sets it (see FormerMAC).
	MAC string
	// FormerMAC, when set, is another address the NIC may have now: a VM
	// restored from a template keeps the template's NIC address (the
	// device state, MAC included, comes from the saved VM). The agent
	// finds the NIC by MAC or FormerMAC and gives it MAC.
	FormerMAC string
	// Name the NIC gets in the guest ("eth0").
	Name string
	// Addresses with their prefix length ("10.88.0.5/16").
	Addresses []string
	// Gateway of the default route; empty adds none.
	Gateway string
	// MTU; 0 leaves the NIC's.
	MTU int
}

// NetworkConfig is the guest's network: its interfaces and the DNS
// settings of its own /etc/resolv.conf.
type NetworkConfig struct {
	Interfaces []NetworkInterface
	DNSServers []string
	DNSSearch  []string
	DNSOptions []string
}

// ConfigureNetwork sets up the guest's own network stack, which the
// containers of a bridge attachment share: lo up, each interface (found by
// MAC or FormerMAC) given MAC, renamed, addressed, up and routed, and the guest's
// /etc/resolv.conf. Repeating it is harmless.
func (c *Client) ConfigureNetwork(ctx context.Context, cfg NetworkConfig) error {
	req := &agentpb.ConfigureNetworkRequest{DnsServers: cfg.DNSServers, DnsSearch: cfg.DNSSearch, DnsOptions: cfg.DNSOptions}
	for _, ifc := range cfg.Interfaces {
		if ifc.MTU < 0 {
			return fmt.Errorf("configure the guest network: interface %s: mtu %d", ifc.Name, ifc.MTU)
		}
		req.Interfaces = append(req.Interfaces, &agentpb.NetworkInterface{Mac: ifc.MAC, FormerMac: ifc.FormerMAC, Name: ifc.Name,
			Addresses: ifc.Addresses, Gateway: ifc.Gateway, Mtu: uint32(ifc.MTU)})
	}
	if _, err := c.api.ConfigureNetwork(ctx, req); err != nil {
		return fmt.Errorf("configure the guest network: %w", err)
	}
	return nil
}
