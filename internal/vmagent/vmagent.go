// Package vmagent is the host's side of the VM guest agent protocol: the
// agent (plugins/isolation-vm/guest) is PID 1 of every VM and serves the
// Agent gRPC service (proto in internal/vmagent/proto, generated code in
// internal/vmagent/agentpb) over one byte stream, and Client speaks it with
// plain Go types (OCI specs, isolation and resources values).
//
// Transport. On qemu the stream is the virtio-serial port named
// ChannelName, which the host reaches through the chardev's unix socket; on
// vz it is AF_VSOCK port VsockPort. Only one host process holds the stream
// at a time; when it closes its side the agent waits for the next one and
// keeps every container running, so a host that reconnects (a supervisor
// restarted, a VM restored) makes a new Client on the new connection and
// carries on.
//
// Errors keep their sdk/errdefs kind across the stream (a missing container
// is errdefs.ErrNotFound on both sides).
//
// What the agent expects of its VM (the boot contract):
//
//   - initramfs (uncompressed cpio newc, 0:0): /init = the agent (static,
//     CGO_ENABLED=0), /sbin/berth-sandbox-init (the static sandbox init),
//     /modules/NN-name.ko loaded in lexical order (dependencies and soft
//     dependencies such as crc32c_generic before ext4), /dev/console (5:1);
//     vmkernel.BuildInitramfs writes exactly that.
//   - modules: the machine's bus (virtio_pci or virtio_mmio),
//     virtio_console (or vsock's vmw_vsock_virtio_transport), virtio_blk and
//     the rootfs filesystem (ext4), 9p + 9pnet_virtio (or virtiofs) for
//     shares, and button + evdev for the ACPI power button on x86.
//   - kernel command line: console=ttyS0|hvc0 (the agent logs there),
//     berth.agent=vport (default) or berth.agent=vsock; nothing else is
//     read.
//   - devices: the port named ChannelName; the container's rootfs as a
//     virtio-blk disk named in CreateRequest.Rootfs (/dev/vda); shares by
//     tag. Power off: the Shutdown call or the ACPI power button (qemu
//     system_powerdown) — both kill the containers, sync, unmount and
//     power off.
//
// A connection's first call may fail when it met a session left over from
// before a restore (the guest had not yet seen the old host go): close the
// connection and dial again.
package vmagent

import (
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/resources"
)

const (
	// ChannelName is the virtio-serial port name the agent serves on
	// (/sys/class/virtio-ports/*/name).
	ChannelName = "org.berth.agent"
	// VsockPort is the AF_VSOCK port the agent listens on with
	// berth.agent=vsock on the kernel command line.
	VsockPort = 1024
	// CmdlineTransport is the kernel command line key choosing the
	// transport: berth.agent=vport (default) or berth.agent=vsock.
	CmdlineTransport = "berth.agent"
	// Version is the protocol's version, reported by the agent's Info.
	Version = "1"
)

// Info describes the agent and its guest.
type Info struct {
	// Version is the agent's protocol version (Version).
	Version       string
	KernelRelease string
	// Uptime is the guest's uptime (CLOCK_BOOTTIME) when it answered.
	Uptime time.Duration
	// Time is the guest's wall clock when it answered.
	Time time.Time
	// PID1 is true when the agent runs as the guest's init.
	PID1 bool
	// CgroupMode is "v2" in a guest (the containers' limits are enforced
	// there), "v1" when the agent runs on a v1 host (tests).
	CgroupMode string
	// Modules are the kernel modules the agent loaded at boot.
	Modules []string
	// MemTotal and MemAvailable are the guest's (/proc/meminfo); AgentRSS
	// is the agent's own resident memory.
	MemTotal, MemAvailable, AgentRSS uint64
}

// Rootfs is the container's root filesystem in the guest.
type Rootfs struct {
	// Source is a block device (/dev/vda) or, with Type "bind", a guest
	// directory.
	Source string
	// Type is the filesystem ("ext4", "xfs", …) or "bind".
	Type string
	// Options are mount(8) options ("ro", "noatime"); "format=…" options
	// of snapshot descriptors are ignored.
	Options []string
}

// Share types.
const (
	Share9P       = "9p"
	ShareVirtiofs = "virtiofs"
	ShareBind     = "bind"
)

// Share is a directory the host shares with the guest, mounted in the
// container at Destination (a bind mount of `-v`).
type Share struct {
	// Type is Share9P (qemu), ShareVirtiofs (vz) or ShareBind (Source is a
	// guest directory; tests).
	Type string
	// Source is the mount tag (9p, virtiofs) or the guest directory.
	Source      string
	Destination string
	ReadOnly    bool
}

// File is a small file the agent writes for the container and bind-mounts
// at Path (resolv.conf, hosts, hostname).
type File struct {
	Path    string
	Content []byte
	// Mode defaults to 0644.
	Mode uint32
}

// ContainerState is what the agent knows of a container.
type ContainerState struct {
	Status isolation.Status
	// Pid is the init's pid in the guest (0 before Create finished).
	Pid int
	// Exit is set once Status is StatusStopped.
	Exit      *isolation.ExitStatus
	CreatedAt time.Time
}

func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// ExitToPB converts an exit status for the wire (the agent's side).
func ExitToPB(e isolation.ExitStatus) *agentpb.ExitStatus {
	return &agentpb.ExitStatus{Code: int32(e.Code), Signal: int32(e.Signal), ExitedAtUnixNanos: unixNanos(e.ExitedAt), OomKilled: e.OOMKilled}
}

// ExitFromPB converts an exit status from the wire; nil is the zero status.
func ExitFromPB(e *agentpb.ExitStatus) isolation.ExitStatus {
	if e == nil {
		return isolation.ExitStatus{}
	}
	return isolation.ExitStatus{Code: int(e.Code), Signal: syscall.Signal(e.Signal), ExitedAt: fromNanos(e.ExitedAtUnixNanos), OOMKilled: e.OomKilled}
}

// UsageToPB converts a usage sample for the wire (the agent's side).
func UsageToPB(u resources.Usage) *agentpb.StatsResponse {
	return &agentpb.StatsResponse{
		TimeUnixNanos: unixNanos(u.Time), CpuUsageNanos: u.CPUUsageNanos,
		CpuThrottledPeriods: u.CPUThrottledPeriods, CpuThrottledNanos: u.CPUThrottledNanos,
		MemoryBytes: u.MemoryBytes, MemoryPeakBytes: u.MemoryPeakBytes, SwapBytes: u.SwapBytes,
		IoReadBytes: u.IOReadBytes, IoWriteBytes: u.IOWriteBytes, Pids: u.Pids,
	}
}

func usageFromPB(s *agentpb.StatsResponse) resources.Usage {
	return resources.Usage{
		Time: fromNanos(s.TimeUnixNanos), CPUUsageNanos: s.CpuUsageNanos,
		CPUThrottledPeriods: s.CpuThrottledPeriods, CPUThrottledNanos: s.CpuThrottledNanos,
		MemoryBytes: s.MemoryBytes, MemoryPeakBytes: s.MemoryPeakBytes, SwapBytes: s.SwapBytes,
		IOReadBytes: s.IoReadBytes, IOWriteBytes: s.IoWriteBytes, Pids: s.Pids,
	}
}
