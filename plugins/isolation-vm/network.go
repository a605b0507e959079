//go:build linux || darwin

package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/netdp"
	"github.com/berth-dev/berth/internal/netfiles"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// Networks of mode vm (Linux hosts): a bridge attachment puts the VM on
// the network's bridge, as a sandbox container's veth would be.
//
//   - The plugin, before the supervisor starts, creates a TAP device
//     tapName(id) on the attachment's bridge (internal/netdp; the TAP keeps
//     its own host-side MAC) and publishes the ports to the container's
//     address. Delete removes both (by id: idempotent, also after a
//     supervisor died); Recover re-publishes the ports of live tasks.
//   - The supervisor gives the VM a virtio-net NIC on that TAP with the
//     attachment's MAC (the initramfs with virtio_net), and before creating
//     the container asks the agent to configure the guest's stack
//     (ConfigureNetwork: the NIC found by MAC becomes eth0 with the
//     container's address, MTU and default route; a VM restored from a
//     template has the template's NIC MAC, which the agent replaces by the
//     container's: vmtemplate.PlaceholderMAC). The container shares
//     the guest's network namespace (the VM is its namespace, as in mode
//     host) and gets /etc/hosts, /etc/resolv.conf and /etc/hostname
//     (internal/netfiles) as files the agent writes and bind-mounts.
//
// The daemon's network service ensures the bridge (and its nft rules)
// before; a missing bridge fails Create naming it.
//
// A user-mode attachment (mode "user", Linux and macOS: core/network's
// user datapath) names in Interfaces[0].Bridge the unix socket of the
// network's usernet helper: the VM's NIC is that socket
// (hypervisor.NIC.Socket: qemu stream, vz datagram), the plugin makes
// nothing on the host (the helper publishes the ports), and the guest is
// configured as for bridge (address, gateway; DNS = the gateway).

// networkCaps are the network capabilities: bridge attachments (Linux)
// and user-mode ones (Linux and macOS).
func networkCaps() []string {
	return []string{isolation.CapNetwork}
}

func isBridge(spec isolation.Spec) bool {
	return spec.Network != nil && spec.Network.Mode == "bridge"
}

// modeUser is core/network's ModeUser.
const modeUser = "user"

func isUser(spec isolation.Spec) bool {
	return spec.Network != nil && spec.Network.Mode == modeUser
}

// tapName is the host TAP of task id's NIC: "tb" and the id's first 11
// characters (an interface name has at most 15), so Delete finds it by id.
func tapName(id string) string {
	if len(id) > 11 {
		id = id[:11]
	}
	return "tb" + id
}

// guestMAC is the MAC of the VM's NIC: the attachment's, else one derived
// from the task id (locally administered, unicast).
func guestMAC(spec isolation.Spec) string {
	if m := spec.Network.Interfaces[0].MAC; m != "" {
		return m
	}
	sum := sha256.Sum256([]byte(spec.ID))
	return net.HardwareAddr{0x02, 0xb5, sum[0], sum[1], sum[2], sum[3]}.String()
}

// checkNetwork refuses network modes mode vm cannot give and bad bridge
// attachments, before anything is made.
func checkNetwork(spec isolation.Spec) error {
	n := spec.Network
	if n == nil || n.Mode == "" || n.Mode == "none" || n.Mode == "host" {
		return nil
	}
	if n.Mode == modeUser {
		return checkUserAttachment(spec)
	}
	if n.Mode != "bridge" {
		return errdefs.NotImplemented("task %s: network mode %q is not supported by mode vm (none, host = the VM's own stack, bridge, user)", spec.ID, n.Mode)
	}
	if goruntime.GOOS != "linux" {
		return errdefs.NotImplemented("task %s: bridge networks of mode vm need a Linux host (TAP devices on the network's bridge)", spec.ID)
	}
	_, err := netdp.CheckBridgeAttachment(spec.ID, n)
	return err
}

// attachNetwork makes the host side of spec's bridge attachment: the TAP
// on the bridge and the published ports. The returned undo removes them
// (for a Create that fails later); other modes make nothing.
func attachNetwork(ctx context.Context, spec isolation.Spec) (undo func(), err error) {
	if !isBridge(spec) {
		return func() {}, nil
	}
	ifc, err := netdp.InterfaceFromAttachment(spec.ID, spec.Network.Interfaces[0])
	if err != nil {
		return nil, err
	}
	undo = func() { _ = detachNetworkID(context.WithoutCancel(ctx), spec.ID) }
	if err := netdp.CreateTAP(ctx, ifc.Bridge, tapName(spec.ID), ""); err != nil {
		return nil, fmt.Errorf("task %s: %w", spec.ID, err)
	}
	if len(spec.Network.Ports) > 0 {
		if err := netdp.PublishPorts(ctx, spec.ID, ifc.Addresses[0].Addr(), spec.Network.Ports); err != nil {
			undo()
			return nil, fmt.Errorf("task %s: %w", spec.ID, err)
		}
	}
	return undo, nil
}

// detachNetwork removes the host side of the bridge attachment of the task
// in dir (its spec.json): port rules and TAP. Safe to repeat; a task of
// another mode has nothing to remove. An unreadable spec.json must not
// block the Delete: what a task of that id may have is removed at best.
func detachNetwork(ctx context.Context, dir string) error {
	var spec isolation.Spec
	if err := readJSON(filepath.Join(dir, specFile), &spec); err != nil {
		if !errors.Is(err, os.ErrNotExist) && goruntime.GOOS == "linux" {
			_ = detachNetworkID(ctx, filepath.Base(dir))
		}
		return nil
	}
	if !isBridge(spec) {
		return nil
	}
	return detachNetworkID(ctx, spec.ID)
}

func detachNetworkID(ctx context.Context, id string) error {
	return errors.Join(netdp.UnpublishPorts(ctx, id), netdp.DeleteTAP(ctx, tapName(id)))
}

// recoverNetwork puts a live task's published-port rules back as its spec
// says, in case they went while the plugin was away (an atomic replace:
// in place, nothing changes). The TAP is not remade: one deleted under a
// running VM is no longer its NIC's.
func recoverNetwork(ctx context.Context, spec isolation.Spec) error {
	if !isBridge(spec) {
		return nil
	}
	ifc, err := netdp.InterfaceFromAttachment(spec.ID, spec.Network.Interfaces[0])
	if err != nil || len(ifc.Addresses) == 0 {
		return fmt.Errorf("task %s: network attachment: %v", spec.ID, err)
	}
	if len(spec.Network.Ports) == 0 {
		return nil
	}
	return netdp.PublishPorts(ctx, spec.ID, ifc.Addresses[0].Addr(), spec.Network.Ports)
}

// nicsFor are the VM's NICs: one on the TAP of a bridge attachment, one on
// the helper's socket of a user-mode one.
func nicsFor(spec isolation.Spec) []hypervisor.NIC {
	if isUser(spec) {
		return []hypervisor.NIC{{Socket: spec.Network.Interfaces[0].Bridge, MAC: guestMAC(spec)}}
	}
	if !isBridge(spec) {
		return nil
	}
	return []hypervisor.NIC{{TAP: tapName(spec.ID), MAC: guestMAC(spec)}}
}

// configureGuestNetwork sets the guest's stack up for a bridge attachment
// (agent ConfigureNetwork) and completes req: the container joins the
// guest's network namespace and gets the attachment's /etc files (unless
// the spec mounts something there: a user's volume wins).
func configureGuestNetwork(ctx context.Context, agent *vmagent.Client, spec isolation.Spec, req *vmagent.CreateRequest) error {
	if !isBridge(spec) && !isUser(spec) {
		return nil
	}
	n := spec.Network
	in := n.Interfaces[0]
	name := in.Name
	if name == "" {
		name = "eth0"
	}
	cfg := vmagent.NetworkConfig{
		// FormerMAC: a VM restored from a template has the template's NIC
		// address until the agent sets the container's (a cold-booted one
		// has the container's already, found first).
		Interfaces: []vmagent.NetworkInterface{{MAC: guestMAC(spec), FormerMAC: vmtemplate.PlaceholderMAC(0), Name: name,
			Addresses: in.Addresses, Gateway: in.Gateway, MTU: in.MTU}},
		DNSServers: n.DNS.Servers, DNSSearch: n.DNS.Search, DNSOptions: n.DNS.Options,
	}
	if err := agent.ConfigureNetwork(ctx, cfg); err != nil {
		return err
	}
	if req.Spec != nil && req.Spec.Linux != nil {
		req.Spec.Linux.Namespaces = slices.DeleteFunc(slices.Clone(req.Spec.Linux.Namespaces),
			func(ns specs.LinuxNamespace) bool { return ns.Type == specs.NetworkNamespace })
	}
	taken := func(dest string) bool {
		if spec.OCI != nil && slices.ContainsFunc(spec.OCI.Mounts, func(m specs.Mount) bool { return filepath.Clean(m.Destination) == dest }) {
			return true
		}
		return slices.ContainsFunc(req.Files, func(f vmagent.File) bool { return filepath.Clean(f.Path) == dest })
	}
	hostname := ""
	if req.Spec != nil {
		hostname = req.Spec.Hostname
	}
	hostConf, _ := os.ReadFile("/etc/resolv.conf")
	for _, f := range netfiles.Files(n, hostname, string(hostConf)) {
		if !taken(f.Path) {
			req.Files = append(req.Files, vmagent.File{Path: f.Path, Content: []byte(f.Content), Mode: 0o644})
		}
	}
	return nil
}
