package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/netdp"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// A bridge attachment on Linux: the task gets its own network namespace
// (platformSpec), the files of network_files.go, and after its init is
// created (held before start, so its namespace exists and nothing runs
// yet) a veth pair into that namespace on the network's bridge plus DNAT
// rules for its published ports (internal/netdp). The daemon's network
// service ensures the bridge and its rules (it alone knows whether a
// network is internal); a missing bridge fails the attach.

func isBridge(spec isolation.Spec) bool {
	return spec.Network != nil && spec.Network.Mode == "bridge"
}

// checkBridgeAttachment validates a bridge attachment before anything is
// made: the first interface as netdp.CheckBridgeAttachment does, further
// ones (networks connected later, kept in the spec by lifecycle for the
// task's next start) with an address and no gateway.
func checkBridgeAttachment(spec isolation.Spec) error {
	first := *spec.Network
	if len(first.Interfaces) > 1 {
		first.Interfaces = first.Interfaces[:1]
	}
	if _, err := netdp.CheckBridgeAttachment(spec.ID, &first); err != nil {
		return err
	}
	_, err := connectedInterfaces(spec)
	return err
}

// connectedInterfaces are the attachment's interfaces after the first
// (netdp.ConnectNetns picks a name for those without one).
func connectedInterfaces(spec isolation.Spec) ([]netdp.Interface, error) {
	var out []netdp.Interface
	for i, in := range spec.Network.Interfaces {
		if i == 0 {
			continue
		}
		ifc, err := netdp.InterfaceFromAttachment(spec.ID, in)
		if err != nil {
			return nil, err
		}
		if in.Name == "" {
			ifc.Name = ""
		}
		if len(ifc.Addresses) == 0 || ifc.Gateway.IsValid() {
			return nil, errdefs.InvalidArgument("task %s: further interface %d (bridge %s) needs an address and no gateway", spec.ID, i, in.Bridge)
		}
		out = append(out, ifc)
	}
	return out, nil
}

// prepareNetwork writes the bridge attachment's files into the task dir
// and mounts them in oci; other modes need nothing.
func prepareNetwork(spec isolation.Spec, oci *specs.Spec, dir string) error {
	if !isBridge(spec) {
		return nil
	}
	// /etc/hosts names the first network's address only, as when the
	// task first ran (networks connected later are left out, as Docker
	// leaves them out).
	first := *spec.Network
	if len(first.Interfaces) > 1 {
		first.Interfaces = first.Interfaces[:1]
	}
	return writeNetworkFiles(&first, oci, dir)
}

// attachNetwork wires a created task's namespace (init pid) to its bridge
// and publishes its ports; on failure what it made is undone.
func attachNetwork(ctx context.Context, spec isolation.Spec, pid int) error {
	if !isBridge(spec) {
		return nil
	}
	ifc, err := netdp.InterfaceFromAttachment(spec.ID, spec.Network.Interfaces[0])
	if err != nil {
		return err
	}
	extra, err := connectedInterfaces(spec)
	if err != nil {
		return err
	}
	nsPath := fmt.Sprintf("/proc/%d/ns/net", pid)
	if _, err := netdp.AttachNetns(ctx, nsPath, ifc); err != nil {
		return err
	}
	if len(spec.Network.Ports) > 0 {
		if err := netdp.PublishPorts(ctx, spec.ID, ifc.Addresses[0].Addr(), spec.Network.Ports); err != nil {
			_ = netdp.DetachNetns(context.WithoutCancel(ctx), spec.ID)
			return err
		}
	}
	for _, x := range extra {
		if _, err := netdp.ConnectNetns(ctx, nsPath, x); err != nil {
			_ = detachNetwork(context.WithoutCancel(ctx), spec)
			return err
		}
	}
	return nil
}

// detachNetwork removes the task's port rules and host veth (the namespace
// end goes with its namespace anyway); safe to repeat.
func detachNetwork(ctx context.Context, spec isolation.Spec) error {
	if !isBridge(spec) {
		return nil
	}
	errs := []error{netdp.UnpublishPorts(ctx, spec.ID), netdp.DetachNetns(ctx, spec.ID)}
	for i, in := range spec.Network.Interfaces {
		if i > 0 && in.Bridge != "" {
			errs = append(errs, netdp.DisconnectNetns(ctx, spec.ID, in.Bridge))
		}
	}
	return errors.Join(errs...)
}

// recoverNetwork puts a live task's published-port rules back as its spec
// says (an atomic replace: nothing changes when they are in place), in
// case the nft table was flushed while the plugin was away.
func recoverNetwork(ctx context.Context, spec isolation.Spec) error {
	if !isBridge(spec) || len(spec.Network.Ports) == 0 {
		return nil
	}
	ifc, err := netdp.InterfaceFromAttachment(spec.ID, spec.Network.Interfaces[0])
	if err != nil || len(ifc.Addresses) == 0 {
		return fmt.Errorf("task %s: network attachment: %v", spec.ID, err)
	}
	return netdp.PublishPorts(ctx, spec.ID, ifc.Addresses[0].Addr(), spec.Network.Ports)
}

var _ isolation.NetworkConnector = (*runtime)(nil)

// ConnectNetwork implements isolation.NetworkConnector: a further veth
// into the running (or paused) task's namespace (netdp.ConnectNetns). The
// task's /etc/hosts and resolv.conf stay as they are, as Docker leaves
// them. The interface lasts as long as the namespace: a restarted task has
// its spec's network only.
func (r *runtime) ConnectNetwork(ctx context.Context, id string, a isolation.NetworkAttachment) error {
	if a.Mode != "bridge" || len(a.Interfaces) != 1 {
		return errdefs.InvalidArgument("task %s: connect needs a bridge attachment with one interface (mode %q, %d interfaces)", id, a.Mode, len(a.Interfaces))
	}
	info, err := r.info(ctx, id)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.NotFound("task %s not found", id)
		}
		return err
	}
	if info.Status != isolation.StatusRunning && info.Status != isolation.StatusPaused {
		return errdefs.InvalidState("task %s is %s: only a running task can be connected to a network", id, info.Status)
	}
	if info.Spec == nil || !isBridge(*info.Spec) {
		return errdefs.InvalidState("task %s has no bridge network of its own (network none or host): it cannot be connected to another", id)
	}
	ifc, err := netdp.InterfaceFromAttachment(id, a.Interfaces[0])
	if err != nil {
		return err
	}
	if a.Interfaces[0].Name == "" {
		ifc.Name = "" // ConnectNetns picks the next ethN
	}
	if len(ifc.Addresses) == 0 {
		return errdefs.InvalidArgument("task %s: the interface on %s has no address", id, ifc.Bridge)
	}
	_, err = netdp.ConnectNetns(ctx, fmt.Sprintf("/proc/%d/ns/net", info.Pid), ifc)
	return err
}

// DisconnectNetwork implements isolation.NetworkConnector.
func (r *runtime) DisconnectNetwork(ctx context.Context, id, bridge string) error {
	if err := isolation.CheckTaskID(id); err != nil {
		return err
	}
	return netdp.DisconnectNetns(ctx, id, bridge)
}
