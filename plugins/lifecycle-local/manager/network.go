package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
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
	// Connect and Disconnect add and release a container's endpoints on
	// further networks (docker network connect/disconnect).
	Connect(ctx context.Context, req sdknet.AttachRequest) (isolation.NetworkAttachment, error)
	Disconnect(ctx context.Context, containerID, ref string) error
	// Inspect finds a network by name, ID or ID prefix.
	Inspect(ctx context.Context, ref string) (sdknet.Network, error)
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

var _ lifecycle.NetworkConnector = (*Manager)(nil)

// connector returns what connect/disconnect of rec needs: the network
// service and its isolation runtime as a NetworkConnector, or
// NotImplemented naming why (a mode without capability network.connect:
// VMs, as the microvm machine has no NIC hot-plug).
func (m *Manager) connector(layers Layers, rec lifecycle.Container) (NetworkSource, isolation.NetworkConnector, error) {
	netSvc, err := networkOf(layers)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, nil, errdefs.NotImplemented("no network service: containers cannot be connected to networks")
		}
		return nil, nil, err
	}
	var mode Mode
	for _, md := range layers.Modes() {
		if md.Name == rec.Isolation {
			mode = md
		}
	}
	if !slices.Contains(mode.Capabilities, isolation.CapNetworkConnect) {
		why := ""
		if slices.Contains(mode.Capabilities, isolation.CapVM) {
			why = "; a VM's NIC cannot be hot-plugged (the microvm machine has no PCI bus), so a VM container keeps the network it was created on"
		}
		return nil, nil, errdefs.NotImplemented("isolation mode %q cannot connect a running container to another network (its plugin does not declare %q%s)",
			rec.Isolation, isolation.CapNetworkConnect, why)
	}
	iso, err := layers.Isolation(rec.Isolation)
	if err != nil {
		return nil, nil, err
	}
	nc, ok := iso.(isolation.NetworkConnector)
	if !ok {
		return nil, nil, errdefs.NotImplemented("isolation mode %q declares %q but its runtime cannot connect networks", rec.Isolation, isolation.CapNetworkConnect)
	}
	return netSvc, nc, nil
}

// ConnectNetwork implements lifecycle.NetworkConnector: the network
// service gives the container a further endpoint, then its isolation
// plugin adds the interface to the running task (undone on failure).
// /etc/hosts stays as it is, as Docker leaves it; the connection lasts
// while the task runs (a restarted container has the network it was
// created on, and its further endpoints keep their addresses and names
// until Disconnect or removal).
func (m *Manager) ConnectNetwork(ctx context.Context, ref string, req lifecycle.NetworkConnect) error {
	_, layers, err := m.env()
	if err != nil {
		return err
	}
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return err
	}
	defer unlock()
	c := rec.Container
	netSvc, nc, err := m.connector(layers, c)
	if err != nil {
		return err
	}
	if c.State != lifecycle.StateRunning && c.State != lifecycle.StatePaused {
		return errdefs.InvalidState("container %s is %s: only a running container can be connected to a network", c.Name, c.State)
	}
	eps, err := netSvc.Endpoints(ctx, req.Network)
	if err != nil {
		return err
	}
	for _, e := range eps {
		if e.ContainerID == c.ID {
			return errdefs.AlreadyExists("container %s is already on network %s", c.Name, e.Network)
		}
	}
	a, err := netSvc.Connect(ctx, sdknet.AttachRequest{ContainerID: c.ID, Name: c.Name, Network: req.Network, IP: req.IP, Aliases: req.Aliases})
	if err != nil {
		return err
	}
	if err := nc.ConnectNetwork(ctx, c.ID, a); err != nil {
		uctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
		defer cancel()
		if derr := netSvc.Disconnect(uctx, c.ID, req.Network); derr != nil {
			m.log.Error("undo a failed network connect", "container_id", c.ID, "network", req.Network, "error", derr)
		}
		return fmt.Errorf("connect %s to %s: %w", c.Name, req.Network, err)
	}
	// The task spec keeps the interface, so the container's next start
	// wires it again (the endpoint keeps its address meanwhile).
	if _, err := m.update(c.ID, func(r *store.Record) {
		if r.Task != nil && r.Task.Network != nil && !slices.ContainsFunc(r.Task.Network.Interfaces, func(i isolation.Interface) bool { return i.Bridge == a.Interfaces[0].Bridge }) {
			r.Task.Network.Interfaces = append(r.Task.Network.Interfaces, a.Interfaces[0])
		}
	}); err != nil {
		m.log.Warn("connected, but the container's next start will not have the network", "container_id", c.ID, "network", req.Network, "error", err)
	}
	m.log.Info("container connected to a network", "container_id", c.ID, "network", req.Network, "address", a.Interfaces[0].Addresses)
	return nil
}

// DisconnectNetwork implements lifecycle.NetworkConnector: the network
// service releases the endpoint (refusing the container's first network),
// then the isolation plugin removes a running task's interface.
func (m *Manager) DisconnectNetwork(ctx context.Context, ref, network string) error {
	_, layers, err := m.env()
	if err != nil {
		return err
	}
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return err
	}
	defer unlock()
	c := rec.Container
	netSvc, nc, err := m.connector(layers, c)
	if err != nil {
		return err
	}
	nets, err := netSvc.Inspect(ctx, network)
	if err != nil {
		return err
	}
	if err := netSvc.Disconnect(ctx, c.ID, network); err != nil {
		return err
	}
	if _, err := m.update(c.ID, func(r *store.Record) {
		if r.Task != nil && r.Task.Network != nil && len(r.Task.Network.Interfaces) > 1 {
			r.Task.Network.Interfaces = append(r.Task.Network.Interfaces[:1], slices.DeleteFunc(slices.Clone(r.Task.Network.Interfaces[1:]),
				func(i isolation.Interface) bool { return i.Bridge == nets.Bridge })...)
		}
	}); err != nil {
		return fmt.Errorf("disconnect %s from %s: %w", c.Name, network, err)
	}
	if c.State != lifecycle.StateRunning && c.State != lifecycle.StatePaused {
		m.log.Info("container disconnected from a network", "container_id", c.ID, "network", nets.Name)
		return nil
	}
	if err := nc.DisconnectNetwork(ctx, c.ID, nets.Bridge); err != nil {
		return fmt.Errorf("disconnect %s from %s: the endpoint is released, but the interface stays until the container stops: %w", c.Name, network, err)
	}
	m.log.Info("container disconnected from a network", "container_id", c.ID, "network", nets.Name)
	return nil
}
