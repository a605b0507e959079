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
// made.
func checkBridgeAttachment(spec isolation.Spec) error {
	_, err := netdp.CheckBridgeAttachment(spec.ID, spec.Network)
	return err
}

// prepareNetwork writes the bridge attachment's files into the task dir
// and mounts them in oci; other modes need nothing.
func prepareNetwork(spec isolation.Spec, oci *specs.Spec, dir string) error {
	if !isBridge(spec) {
		return nil
	}
	return writeNetworkFiles(spec.Network, oci, dir)
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
	if _, err := netdp.AttachNetns(ctx, fmt.Sprintf("/proc/%d/ns/net", pid), ifc); err != nil {
		return err
	}
	if len(spec.Network.Ports) > 0 {
		if err := netdp.PublishPorts(ctx, spec.ID, ifc.Addresses[0].Addr(), spec.Network.Ports); err != nil {
			_ = netdp.DetachNetns(context.WithoutCancel(ctx), spec.ID)
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
	return errors.Join(netdp.UnpublishPorts(ctx, spec.ID), netdp.DetachNetns(ctx, spec.ID))
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
