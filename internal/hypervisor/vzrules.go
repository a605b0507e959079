package hypervisor

import (
	"fmt"
	"path/filepath"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// VZPlatform describes the machine the vz adapter (Virtualization.framework)
// builds on a Mac of architecture arch (GOARCH): virtio-pci devices, the
// console on hvc0, the agent on vsock port AgentVsockPort, virtiofs shares.
func VZPlatform(arch string) Platform {
	return Platform{
		Name: "vz", Arch: arch, Accel: "vz", RAMInState: true,
		KernelArgs: []string{"console=hvc0", "berth.agent=vsock"},
		Modules: []string{"virtio_pci", "virtio_console", "vmw_vsock_virtio_transport", "virtio_blk",
			"virtio_balloon", "virtio_net", "virtiofs"},
	}
}

// ValidateVZ checks cfg against what the vz adapter can build, beyond
// Config.Validate: raw disks only, NAT or socket NICs (no TAP), no MemoryFile.
func ValidateVZ(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for i, d := range cfg.Disks {
		if d.Format != "" && d.Format != "raw" {
			return errdefs.InvalidArgument("vm config: disk %d (%s): Virtualization.framework takes raw images only, not %s", i, d.Path, d.Format)
		}
	}
	for i, n := range cfg.NICs {
		if n.TAP != "" {
			return errdefs.InvalidArgument("vm config: nic %d: tap %q: Virtualization.framework NICs are NAT or a user-mode network's socket; leave TAP empty", i, n.TAP)
		}
		if p := VZNICSocket(cfg.RunDir, i); n.Socket != "" && len(p) > MaxSocketPath {
			return errdefs.InvalidArgument("vm config: nic %d: its local socket %s is longer than %d bytes", i, p, MaxSocketPath)
		}
	}
	if cfg.MemoryFile != "" {
		return errdefs.NotImplemented("vm config: memory file %s: Virtualization.framework cannot back guest RAM with a file", cfg.MemoryFile)
	}
	return nil
}

// VZNICSocket is the datagram socket the vz adapter binds for NIC i of a
// VM in runDir, connected to the NIC's user-mode network Socket.
func VZNICSocket(runDir string, i int) string {
	return filepath.Join(runDir, fmt.Sprintf("nic%d.sock", i))
}
