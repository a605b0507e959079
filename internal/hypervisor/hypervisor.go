// Package hypervisor is the seam between Berth's VM isolation and the
// hypervisors that run its micro-VMs: qemu on Linux (package
// hypervisor/qemu) and Virtualization.framework on macOS (package
// hypervisor/vz). A Driver boots or restores a Machine from a Config; the
// Machine is one running VM owned by the calling process (the per-container
// supervisor).
//
// Everything that is not a hypervisor call lives here and is tested on
// Linux: Config validation, kernel command-line assembly, the checkpoint
// description written next to a saved state, and the agent dial loop.
//
// A typical life:
//
//	m, err := drv.Start(ctx, cfg)       // VM process runs
//	conn, err := m.DialAgent(ctx)       // guest agent reachable (gRPC over conn)
//	err = m.Pause(ctx); err = m.Resume(ctx)
//	err = m.Save(ctx, dir)              // VM left paused, state in dir
//	err = m.Kill(); m.Wait()
//	m2, err := drv.Restore(ctx, cfg, dir) // running again where it was
//	err = m2.Shutdown(ctx)              // ACPI power-off, SIGKILL at ctx end
package hypervisor

import (
	"context"
	"net"
)

// Config describes one VM. Paths are absolute. A Config is validated by
// Validate before a driver acts on it; drivers never modify the caller's
// Config.
type Config struct {
	// Kernel is the guest kernel: an ELF vmlinux booted through PVH on
	// x86_64 qemu, an uncompressed arm64 Image on vz and qemu/aarch64.
	Kernel string
	// Initrd is the initramfs (the agent is its /init). Optional.
	Initrd string
	// Cmdline is the kernel command line, one argument per element. The
	// driver appends the arguments its machine needs (Platform.KernelArgs)
	// unless an argument with the same key is already present.
	Cmdline []string

	// CPUs is the vCPU count (≥ 1).
	CPUs int
	// MemoryBytes is guest RAM, a whole number of MiB, at least MinMemory.
	MemoryBytes int64

	// Disks are virtio-blk devices in guest order (/dev/vda, /dev/vdb, …).
	Disks []Disk
	// Shares are directory shares by tag: 9p on qemu (they block Save),
	// virtiofs on vz.
	Shares []Share
	// NICs are network interfaces in guest order; may be empty.
	NICs []NIC

	// ConsoleLog receives the guest's serial console, appended (berth logs
	// --boot). Required.
	ConsoleLog string
	// RunDir holds the VM's control sockets (qmp.sock, agent.sock) and the
	// hypervisor's own log. It must exist and be short: unix socket paths
	// are limited to 104 bytes on macOS.
	RunDir string
	// MemoryFile, when set, puts guest RAM in this file (created when
	// missing) shared with the hypervisor, so Save writes only device state
	// and Restore maps the file again (issue 10's fast checkpoint). The file
	// is then part of every checkpoint: it must not change between Save and
	// Restore (clone it before resuming the saved VM).
	MemoryFile string
	// MemoryPrivate maps MemoryFile privately (copy-on-write; the file is
	// never written): Restore starts from a save made with a shared memory
	// file and leaves that file as it was, so many VMs restore from one
	// file without copying it (issue 10's templates). A Save of such a VM
	// carries its RAM in the state like one without MemoryFile.
	MemoryPrivate bool
	// Balloon adds a virtio memory balloon (with free-page reporting where
	// the hypervisor has it) so memory the guest frees returns to the host.
	Balloon bool
}

// Disk is one virtio-blk device.
type Disk struct {
	Path     string
	ReadOnly bool
	// Format is "raw" (the default when empty) or "qcow2" (qemu only).
	Format string
}

// Share is a host directory exported to the guest under Tag.
type Share struct {
	Tag, Path string
	ReadOnly  bool
}

// NIC is one virtio-net device, of one of two kinds:
//   - TAP names an existing tap interface (qemu only);
//   - Socket is the path of a user-mode network's unix socket
//     (internal/usernet): qemu connects a stream socket to it and sends
//     frames with a 4-byte big-endian length prefix (-netdev stream); vz
//     binds a datagram socket at RunDir/nic<N>.sock, connects it to Socket,
//     sends the 4-byte "VFKT" handshake and gives it to the guest through a
//     FileHandleNetworkDeviceAttachment (one frame per datagram).
//
// On vz a NIC with neither is NAT (Virtualization.framework's own); qemu
// needs one of them. MAC is optional ("02:…" style); the hypervisor picks
// one when empty.
type NIC struct {
	TAP, MAC string
	Socket   string
}

// Driver boots VMs on one hypervisor. Implementations are safe for
// concurrent use.
type Driver interface {
	// Platform describes the machine this driver builds, so the caller can
	// put the right modules into the initramfs and knows the agent
	// transport.
	Platform() Platform
	// Start boots cfg and returns once the VM runs and its control channel
	// answers. On error nothing is left running. The VM's lifetime is
	// bounded by the caller's process (qemu: Pdeathsig; vz: in-process), not
	// by ctx, which only bounds Start itself.
	Start(ctx context.Context, cfg Config) (Machine, error)
	// Restore starts cfg from the checkpoint Machine.Save wrote to dir and
	// leaves it running where it was saved. cfg must describe the same
	// machine (CPUs, memory, device counts and kinds, Balloon, whether
	// MemoryFile is used); paths may differ. A mismatch is an
	// errdefs.ErrInvalidArgument naming the field. A checkpoint saved with
	// MemoryFile restores onto cfg.MemoryFile, which the running VM then
	// changes: restore from a copy (reflink) to use the checkpoint again.
	Restore(ctx context.Context, cfg Config, dir string) (Machine, error)
}

// Machine is one VM. Methods are safe for concurrent use; Pause, Resume and
// Kill are idempotent.
type Machine interface {
	// Pid is the hypervisor process (qemu), or the caller's own pid (vz).
	Pid() int
	// DialAgent connects to the guest agent's channel (virtio-serial port
	// AgentPortName on qemu, vsock AgentVsockPort on vz), retrying until
	// the guest side exists or ctx ends. Only one connection at a time. On
	// qemu the connection is to qemu's socket and succeeds before the guest
	// has opened its port; bytes wait in the socket until it does.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Pause stops the vCPUs; Resume starts them again.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Save pauses the VM (if running) and writes its state into dir
	// (created if needed): a state file and CheckpointFile. The VM stays
	// paused; Resume continues it, Kill discards it. Disks and MemoryFile
	// are not copied: they must not change until Restore. Close the agent
	// connection first: the restored guest learns that the host went away
	// only once it runs again, so a connection carried across would leave
	// the guest's old session reading the new host's first bytes. qemu
	// refuses to save while a 9p share is mounted in the guest.
	Save(ctx context.Context, dir string) error
	// SetBalloon asks the guest to shrink (or grow back) to guestBytes of
	// usable RAM through the balloon. ErrNotImplemented without Config.Balloon.
	SetBalloon(ctx context.Context, guestBytes int64) error
	// Shutdown asks the guest to power off (ACPI) and waits for the VM to
	// end; when ctx ends first it kills the VM and returns ctx's error.
	Shutdown(ctx context.Context) error
	// Kill ends the VM at once.
	Kill() error
	// Wait blocks until the VM has ended and its resources (process,
	// sockets) are released. It returns nil after a guest power-off,
	// Shutdown or Kill, and an error describing the hypervisor's failure
	// otherwise.
	Wait() error
}

// Platform describes the virtual machine a Driver builds.
type Platform struct {
	// Name is "qemu-microvm", "qemu-q35", "qemu-virt" or "vz".
	Name string
	// Arch is the guest architecture as GOARCH ("amd64", "arm64").
	Arch string
	// Accel is "kvm", "tcg" or "vz".
	Accel string
	// KernelArgs are appended to Config.Cmdline by Start/Restore (console,
	// agent transport, timer fixes).
	KernelArgs []string
	// RAMInState is set when the driver cannot back guest RAM with a file
	// (Config.MemoryFile; vz): a saved state carries the guest's RAM, so
	// VM templates on it are of internal/vmtemplate's KindStateRAM.
	RAMInState bool
	// Modules are the guest kernel modules (names as in modules.dep, without
	// .ko) the machine's devices need beyond filesystems: bus, console
	// port, block, balloon, net, 9p or virtiofs, vsock.
	Modules []string
}

// Agent channel names shared with the guest agent.
const (
	// AgentPortName is the virtio-serial port the agent opens on qemu
	// (/sys/class/virtio-ports/*/name).
	AgentPortName = "org.berth.agent"
	// AgentVsockPort is the vsock port the agent listens on under vz.
	AgentVsockPort = 1024
)
