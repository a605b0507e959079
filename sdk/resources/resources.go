// Package resources is layer 1 of Berth: resource control.
//
// A Controller keeps one group per container. The lifecycle layer creates
// the group before the container exists and hands the returned Placement to
// the isolation layer, which applies it before the workload's first
// instruction (on Linux: the cgroup is joined before the first fork, so no
// early child escapes it; on darwin: a wrapper command sets rlimits and IO
// policy before exec). Attach adds a process that already runs.
//
// One shared monitor serves every group: implementations must not run a
// goroutine-and-ticker per container. Limit events of all groups arrive on
// the one Events stream.
//
// Pause is not this layer's job (isolation freezes); lifecycle calls
// SetPaused so that nothing here (a CPU duty cycler, say) resumes a paused
// group. Delete is idempotent and works after every process died.
package resources

import (
	"context"
	"time"

	"github.com/berth-dev/berth/sdk/plugin"
)

// Capabilities a resources plugin may declare in its Info. A plugin declares
// only what it enforces for real on the platform it runs on.
const (
	CapCPUShares    = "cpu.shares"
	CapCPUQuota     = "cpu.quota"
	CapCPUSet       = "cpuset"
	CapMemoryHard   = "memory.hard"
	CapMemorySoft   = "memory.soft"
	CapSwap         = "memory.swap"
	CapIOBandwidth  = "io.bandwidth"
	CapPids         = "pids"
	CapDevices      = "devices"
	CapUsage        = "usage"
	CapEventsOOM    = "events.oom"
	CapEventsMemory = "events.memory_pressure"
	CapEventsCPU    = "events.cpu_throttle"
)

// Limits are the limits of one group. A zero field means "no limit" (or the
// platform default); a Controller that cannot enforce a non-zero field it was
// given returns errdefs.ErrNotImplemented rather than ignoring it.
type Limits struct {
	// CPUShares is a relative weight, as Docker's --cpu-shares (2–262144;
	// 1024 is the default weight).
	CPUShares uint64
	// CPUs is a hard quota in CPUs, as Docker's --cpus (1.5 = one and a half).
	CPUs float64
	// CPUSetCPUs and CPUSetMems pin to CPUs and memory nodes ("0-1,3").
	CPUSetCPUs string
	CPUSetMems string
	// MemoryBytes is the hard limit: above it the group is OOM-killed.
	MemoryBytes int64
	// MemorySoftBytes is the soft limit: above it memory is reclaimed and
	// pressure events are sent, nothing is killed.
	MemorySoftBytes int64
	// SwapBytes is the swap allowed beyond MemoryBytes; -1 is unlimited.
	SwapBytes int64
	// IOReadBPS and IOWriteBPS limit bytes per second to the device given by
	// IODevice: a path on that device (the container's storage), or empty
	// for the device backing the plugin's state dir.
	IOReadBPS  uint64
	IOWriteBPS uint64
	IODevice   string
	// Pids caps the number of processes and threads.
	Pids int64
	// Devices are device access rules applied in order; the SDK's
	// DefaultDeviceRules are Docker's default allow-list.
	Devices []DeviceRule
}

// DeviceRule allows or denies access to device nodes, as the OCI runtime
// spec's LinuxDeviceCgroup.
type DeviceRule struct {
	Allow bool
	// Type is "a" (all), "c" (char) or "b" (block).
	Type string
	// Major and Minor are device numbers; -1 is a wildcard.
	Major, Minor int64
	// Access is a combination of "r", "w" and "m" (mknod).
	Access string
}

// Placement says how the isolation layer puts a container into its group.
type Placement struct {
	// CgroupPath is the cgroup of the group, as in the OCI runtime spec's
	// linux.cgroupsPath (relative to the cgroup root of each hierarchy).
	CgroupPath string
	// Wrapper is a command prefix that applies limits before exec (darwin).
	Wrapper []string
	// Annotations carries backend-specific hints.
	Annotations map[string]string
}

// Group is a group as the Controller knows it.
type Group struct {
	ID        string
	Limits    Limits
	Placement Placement
	Paused    bool
	// Pids are the processes in the group now.
	Pids []int
}

// Usage is a group's resource use at one instant. Counters are cumulative
// since the group was created.
type Usage struct {
	Time                time.Time
	CPUUsageNanos       uint64
	CPUThrottledPeriods uint64
	CPUThrottledNanos   uint64
	MemoryBytes         uint64
	MemoryPeakBytes     uint64
	SwapBytes           uint64
	IOReadBytes         uint64
	IOWriteBytes        uint64
	Pids                uint64
}

// Resource names used in LimitEvent.
const (
	ResourceMemory = "memory"
	ResourceCPU    = "cpu"
	ResourcePids   = "pids"
	ResourceIO     = "io"
)

// Event kinds used in LimitEvent.
const (
	EventOOMKill        = "oom_kill"
	EventMemoryPressure = "memory_pressure"
	EventCPUThrottled   = "cpu_throttled"
	EventPidsLimit      = "pids_limit"
)

// LimitEvent reports that a group hit a limit.
type LimitEvent struct {
	GroupID  string
	Resource string
	Kind     string
	// Count is the cumulative number of such events in the group.
	Count   uint64
	Message string
	Time    time.Time
}

// Controller is the resources layer contract.
type Controller interface {
	plugin.Base
	// CreateGroup creates group id with limits and returns its placement.
	// ErrAlreadyExists when id exists.
	CreateGroup(ctx context.Context, id string, limits Limits) (Placement, error)
	// Attach moves a running process into group id. ErrNotFound when the
	// group does not exist.
	Attach(ctx context.Context, id string, pid int) error
	// Update replaces the limits of group id.
	Update(ctx context.Context, id string, limits Limits) error
	// SetPaused marks group id paused or not, so the controller leaves a
	// paused group frozen.
	SetPaused(ctx context.Context, id string, paused bool) error
	// Usage reports group id's use now.
	Usage(ctx context.Context, id string) (Usage, error)
	// List returns every group, for reconciliation after a restart.
	List(ctx context.Context) ([]Group, error)
	// Delete removes group id, killing nothing: the caller has stopped its
	// processes. Deleting a missing group succeeds.
	Delete(ctx context.Context, id string) error
	// Events streams limit events of every group until ctx is done, then
	// closes the channel.
	Events(ctx context.Context) (<-chan LimitEvent, error)
}

// DefaultDeviceRules is Docker's default device allow-list: deny all, then
// allow mknod of any char/block device, and rw on null, zero, full, random,
// urandom, tty, console, ptmx and the pts devices.
func DefaultDeviceRules() []DeviceRule {
	return []DeviceRule{
		{Allow: false, Type: "a", Major: -1, Minor: -1, Access: "rwm"},
		{Allow: true, Type: "c", Major: -1, Minor: -1, Access: "m"},
		{Allow: true, Type: "b", Major: -1, Minor: -1, Access: "m"},
		{Allow: true, Type: "c", Major: 1, Minor: 3, Access: "rwm"},    // /dev/null
		{Allow: true, Type: "c", Major: 1, Minor: 5, Access: "rwm"},    // /dev/zero
		{Allow: true, Type: "c", Major: 1, Minor: 7, Access: "rwm"},    // /dev/full
		{Allow: true, Type: "c", Major: 1, Minor: 8, Access: "rwm"},    // /dev/random
		{Allow: true, Type: "c", Major: 1, Minor: 9, Access: "rwm"},    // /dev/urandom
		{Allow: true, Type: "c", Major: 5, Minor: 0, Access: "rwm"},    // /dev/tty
		{Allow: true, Type: "c", Major: 5, Minor: 1, Access: "rwm"},    // /dev/console
		{Allow: true, Type: "c", Major: 5, Minor: 2, Access: "rwm"},    // /dev/ptmx
		{Allow: true, Type: "c", Major: 136, Minor: -1, Access: "rwm"}, // /dev/pts/*
		{Allow: true, Type: "c", Major: 10, Minor: 200, Access: "rwm"}, // /dev/net/tun
	}
}
