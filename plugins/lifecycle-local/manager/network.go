package manager

import (
	"context"
	"errors"
	"slices"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	sdknet "github.com/berth-dev/berth/sdk/network"
	"github.com/berth-dev/berth/sdk/plugin"
)

// NetworkSource is the part of the core's network service (sdk/network)
// the manager uses: an endpoint per container, released on delete.
type NetworkSource interface {
	Attach(ctx context.Context, req sdknet.AttachRequest) (isolation.NetworkAttachment, error)
	// Detach is idempotent.
	Detach(ctx context.Context, containerID string) error
	// Rename changes the name the container's endpoint answers to.
	Rename(ctx context.Context, containerID, name string) error
	// Endpoints lists every network's endpoints (ref "").
	Endpoints(ctx context.Context, ref string) ([]sdknet.Endpoint, error)
}

// NetworkLayers is implemented by Layers that reach a network service.
// Layers without it (or whose Network returns ErrNotFound) run containers
// of the default network without one: a private namespace with loopback.
type NetworkLayers interface {
	Network() (NetworkSource, error)
}

func (l *handleLayers) Network() (NetworkSource, error) {
	if !l.h.Has(plugin.HandleNetwork) {
		return nil, errdefs.NotFound("the core brokered no network service (handle %q) to lifecycle", plugin.HandleNetwork)
	}
	return sdknet.FromHandles(l.h)
}

func networkOf(layers Layers) (NetworkSource, error) {
	nl, ok := layers.(NetworkLayers)
	if !ok {
		return nil, errdefs.NotFound("no network service")
	}
	return nl.Network()
}

// attachNetwork returns the network attachment of container id: "none"
// and "host" as they are; a bridge network (named, or "" for the default)
// through the network service's Attach when the isolation mode can join
// networks (capability "network"). attached says a Detach must undo it.
// Without a network service or that capability, a container that asked
// for nothing network-specific gets the private loopback-only namespace.
func (m *Manager) attachNetwork(ctx context.Context, layers Layers, mode Mode, id, name string, cfg lifecycle.Config) (att *isolation.NetworkAttachment, attached bool, err error) {
	opts := cfg.Network
	hostname := cfg.Hostname
	if hostname == "" && opts.Network != sdknet.Host {
		hostname = id[:12]
	}
	switch opts.Network {
	case sdknet.None, sdknet.Host:
		if opts.IP != "" || len(opts.Ports) > 0 || len(opts.Aliases) > 0 {
			return nil, false, errdefs.InvalidArgument("network %s: --ip, --publish and --network-alias need a bridge network", opts.Network)
		}
		return &isolation.NetworkAttachment{Mode: opts.Network, Hostname: hostname, Hosts: opts.ExtraHosts,
			DNS: isolation.DNS{Servers: opts.DNS, Search: opts.DNSSearch}}, false, nil
	}
	asked := opts.Network != "" || opts.IP != "" || len(opts.Ports) > 0 || len(opts.Aliases) > 0
	netSvc, err := networkOf(layers)
	if err == nil && !slices.Contains(mode.Capabilities, isolation.CapNetwork) {
		err = errdefs.NotImplemented("isolation mode %q cannot join networks (its plugin does not declare %q)", mode.Name, isolation.CapNetwork)
	}
	if err != nil {
		if !asked && (errdefs.IsNotFound(err) || errdefs.IsNotImplemented(err)) {
			m.log.Debug("container runs without a network", "container_id", id, "reason", err)
			return nil, false, nil
		}
		return nil, false, err
	}
	a, err := netSvc.Attach(ctx, sdknet.AttachRequest{
		ContainerID: id, Name: name, Hostname: hostname, Aliases: opts.Aliases, Network: opts.Network,
		IP: opts.IP, Ports: opts.Ports, DNS: opts.DNS, DNSSearch: opts.DNSSearch, ExtraHosts: opts.ExtraHosts,
	})
	if err != nil {
		return nil, false, err
	}
	return &a, true, nil
}

// detachNetwork releases container id's endpoint, if the network service
// is there to have given one.
func detachNetwork(ctx context.Context, layers Layers, id string) error {
	netSvc, err := networkOf(layers)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return netSvc.Detach(ctx, id)
}

// renameEndpoint makes container id's endpoint answer to its new name, if
// the network service is there to have given it one.
func renameEndpoint(ctx context.Context, layers Layers, id, name string) error {
	netSvc, err := networkOf(layers)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return netSvc.Rename(ctx, id, name)
}

// sweepEndpoints detaches endpoints of containers the store does not know
// (a store replaced or restored from a backup, a record lost): their
// addresses and published ports would otherwise stay taken. Endpoints are
// listed before records, and Create records a container before it
// attaches it, so a container being created is never swept.
func (m *Manager) sweepEndpoints(ctx context.Context) error {
	st, layers, err := m.env()
	if err != nil {
		return err
	}
	netSvc, err := networkOf(layers)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	eps, err := netSvc.Endpoints(ctx, "")
	if err != nil {
		return err
	}
	recs, err := st.List()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, r := range recs {
		known[r.Container.ID] = true
	}
	var errs []error
	for _, e := range eps {
		if known[e.ContainerID] {
			continue
		}
		m.log.Warn("releasing the network endpoint of a container no record knows", "container_id", e.ContainerID, "network", e.Network, "ip", e.IP)
		if err := netSvc.Detach(ctx, e.ContainerID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
