// Package isolation is layer 2 of Berth: the task API, modelled on
// containerd's shim v2, served by one plugin per isolation mode (sandbox,
// vm, hybrid).
//
// A task is one container: its init process plus any exec'd processes,
// named by (id, execID) where execID "" is the init process. Create sets the
// container up without running user code; Start runs it. Tasks outlive the
// plugin process: each is owned by a small per-container supervisor, so
// after the plugin (or the core) restarts, Recover re-attaches to every task
// the supervisors still hold — running ones stay running, ones that exited
// meanwhile report their real exit status.
//
// Everything that changes a task is idempotent where that makes sense:
// Delete of a missing task succeeds, Signal of an exited task fails with
// ErrNotFound, Pause of a paused task succeeds.
package isolation

import (
	"context"
	"io"
	"path"
	"regexp"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
)

// Capabilities an isolation plugin may declare.
const (
	// Mount kinds the plugin accepts as rootfs (config binds a snapshotter
	// with a matching snapshot.CapMount* to each mode).
	CapRootfsOverlay = "rootfs.overlay"
	CapRootfsBind    = "rootfs.bind"
	CapRootfsBlock   = "rootfs.block"
	CapRootfsShare   = "rootfs.share"
	CapExec          = "exec"
	CapTTY           = "tty"
	CapPause         = "pause"
	CapCheckpoint    = "checkpoint"
	CapRecover       = "recover"
	CapNetwork       = "network"
	// CapNetworkConnect: the plugin implements NetworkConnector (docker
	// network connect/disconnect on a running task).
	CapNetworkConnect = "network.connect"
	CapUserNS         = "userns"
	CapSeccomp        = "seccomp"
	CapVM             = "vm"
)

// Annotations every isolation mode honours in Spec.Annotations.
const (
	// AnnotationOpenStdin "open" gives the init process a stdin that
	// attaches feed (docker run -i); without it stdin is empty (/dev/null).
	// A process with a terminal always reads from it.
	AnnotationOpenStdin = "org.berth.stdin"
	// AnnotationBootLog is an absolute file path: a mode that boots a
	// kernel of its own (vm) appends the guest's console there instead of
	// into its own task state (berth logs --boot). The caller owns the
	// file and removes it with the container; modes without a console
	// ignore it.
	AnnotationBootLog = "org.berth.vm.boot-log"
	// AnnotationInit is an absolute path in the container (InitPath): the
	// process's first argument is Berth's init (docker run --init), which
	// the isolation mode binds read-only at that path before the container
	// starts; the init runs the rest of the arguments after "--". A mode
	// that has no init to bind refuses the spec with NotImplemented.
	AnnotationInit = "org.berth.init"
)

// InitPath is where sdk/spec puts Berth's init in a container (Docker uses
// /sbin/docker-init). Its base name, "berth-init", is what makes the
// sandbox init binary run as the reaping init.
const InitPath = "/sbin/berth-init"

// CheckInitPath returns an InvalidArgument error unless dest, the value of
// AnnotationInit, is a clean absolute container path whose base name is
// InitPath's (the base name is what makes the init binary reap).
func CheckInitPath(dest string) error {
	if !path.IsAbs(dest) || path.Clean(dest) != dest || path.Base(dest) != path.Base(InitPath) {
		return errdefs.InvalidArgument("annotation %s = %q: want a clean absolute path named like %s",
			AnnotationInit, dest, InitPath)
	}
	return nil
}

// taskIDPattern is what CheckTaskID accepts.
var taskIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// CheckTaskID returns an InvalidArgument error unless id is a task id every
// isolation plugin can use as a file name: 1-128 letters, digits, '_', '.'
// and '-', starting with a letter or digit.
func CheckTaskID(id string) error {
	if !taskIDPattern.MatchString(id) {
		return errdefs.InvalidArgument("task id %q: use 1-128 letters, digits, '_', '.', '-', starting with a letter or digit", id)
	}
	return nil
}

// Spec is everything a task is created from.
type Spec struct {
	// ID names the task; lifecycle uses the container ID.
	ID string
	// OCI is the runtime spec built by the SDK's spec builder from the image
	// config and the user's options. Its Root.Path is ignored: the rootfs
	// comes from Rootfs.
	OCI *specs.Spec
	// Rootfs are the snapshot layer's mounts of the container's root, in
	// order.
	Rootfs []mount.Mount
	// Placement is where the resources layer wants the task's processes.
	Placement resources.Placement
	// Network is the container's network attachment; nil means no network
	// (loopback only).
	Network *NetworkAttachment
	// VM sizes the VM of vm and hybrid modes; other modes ignore it.
	VM *VMSizing
	// LogPath is a file the supervisor appends the init process's
	// stdout/stderr to (JSON lines), so output outlives attach sessions.
	LogPath string
	// Annotations carries mode-specific options.
	Annotations map[string]string
}

// NetworkAttachment is the datapath the isolation plugin sets up: the core's
// network service decided addresses and names; the plugin only wires them.
type NetworkAttachment struct {
	// Mode is "none", "host" or "bridge".
	Mode       string
	Interfaces []Interface
	DNS        DNS
	// Hosts are extra /etc/hosts entries.
	Hosts []HostEntry
	// Ports are published ports.
	Ports []PortMapping
	// Hostname of the container.
	Hostname string
}

// Interface is one network interface of the container.
type Interface struct {
	// Name inside the container ("eth0").
	Name string
	// Bridge on the host (or in the shared VM) to attach to.
	Bridge string
	MAC    string
	// Addresses in CIDR form ("10.88.0.5/16").
	Addresses []string
	Gateway   string
	MTU       int
}

// DNS is the resolver configuration written to /etc/resolv.conf.
type DNS struct {
	Servers []string
	Search  []string
	Options []string
}

// HostEntry is one /etc/hosts line.
type HostEntry struct {
	Name string
	IP   string
}

// PortMapping publishes a container port on the host.
type PortMapping struct {
	HostIP        string
	HostPort      uint16
	ContainerPort uint16
	// Protocol is "tcp" or "udp".
	Protocol string
}

// VMSizing sizes a VM.
type VMSizing struct {
	CPUs        int
	MemoryBytes int64
	// Kernel, Initrd and KernelArgs override the plugin's configured boot
	// assets when set.
	Kernel     string
	Initrd     string
	KernelArgs []string
}

// Status is the state of a task as isolation sees it.
type Status string

// Task statuses.
const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusPaused  Status = "paused"
	StatusStopped Status = "stopped"
)

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code; 128+n when killed by signal n.
	Code     int
	Signal   syscall.Signal
	ExitedAt time.Time
	// OOMKilled is set when the kernel (host or guest) killed it for memory.
	OOMKilled bool
}

// TaskInfo describes a task.
type TaskInfo struct {
	ID     string
	Pid    int
	Status Status
	// Exit is set once Status is StatusStopped.
	Exit *ExitStatus
	// Spec is the spec the task was created from (as recorded by its
	// supervisor), so Recover can report it.
	Spec      *Spec
	CreatedAt time.Time
}

// CheckpointOptions control Checkpoint.
type CheckpointOptions struct {
	// Dir receives the checkpoint image; it exists and is empty.
	Dir string
	// LeaveRunning resumes the task after the checkpoint instead of
	// stopping it.
	LeaveRunning bool
}

// Streams connect a process's stdio to the caller. Nil fields are not
// attached. When the process was created with a terminal, Stderr is unused
// (the terminal carries both).
type Streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// ConsoleSize is a terminal size.
type ConsoleSize struct {
	Width, Height uint16
}

// Stats are a task's resource use; for VMs these come from the guest agent.
type Stats = resources.Usage

// Event kinds in TaskEvent.
const (
	EventExit = "exit"
	EventOOM  = "oom"
)

// TaskEvent reports something that happened to a task.
type TaskEvent struct {
	Kind   string
	ID     string
	ExecID string
	// Exit is set for EventExit.
	Exit *ExitStatus
	Time time.Time
}

// Runtime is the isolation layer contract.
type Runtime interface {
	plugin.Base
	// Create sets task spec.ID up without running user code.
	// ErrAlreadyExists when the id is taken.
	Create(ctx context.Context, spec Spec) (TaskInfo, error)
	// Start runs a created task's init process and returns its pid.
	Start(ctx context.Context, id string) (int, error)
	// Exec starts an additional process execID in a running task.
	Exec(ctx context.Context, id, execID string, process *specs.Process) (int, error)
	// Signal sends sig to process execID of task id, or to every process of
	// the task when all is set.
	Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error
	// Wait blocks until process execID exits (or ctx is done) and returns how
	// it ended. It returns at once for a process that already exited.
	Wait(ctx context.Context, id, execID string) (ExitStatus, error)
	// Attach connects streams to process execID until its output ends or ctx
	// is done. Several attaches may be active at once; each sees output from
	// the moment it attached.
	Attach(ctx context.Context, id, execID string, streams Streams) error
	// ResizePTY sets the terminal size of process execID.
	ResizePTY(ctx context.Context, id, execID string, size ConsoleSize) error
	// Pause freezes every process of the task (cgroup freezer, VM pause).
	Pause(ctx context.Context, id string) error
	// Resume thaws a paused task.
	Resume(ctx context.Context, id string) error
	// Checkpoint saves a paused or running task's state into opts.Dir.
	Checkpoint(ctx context.Context, id string, opts CheckpointOptions) error
	// Restore creates task spec.ID from a checkpoint in dir and runs it.
	Restore(ctx context.Context, spec Spec, dir string) (TaskInfo, error)
	// Stats reports the task's resource use.
	Stats(ctx context.Context, id string) (Stats, error)
	// Delete removes a stopped or created task and everything it held
	// (mounts, supervisor, VM, sockets). Deleting a missing task succeeds.
	Delete(ctx context.Context, id string) (ExitStatus, error)
	// List returns the tasks this plugin manages now.
	List(ctx context.Context) ([]TaskInfo, error)
	// Recover re-attaches to the tasks left by an earlier process of this
	// plugin (from its supervisors' state on disk) and returns them all.
	Recover(ctx context.Context) ([]TaskInfo, error)
	// Events streams task events until ctx is done, then closes the channel.
	Events(ctx context.Context) (<-chan TaskEvent, error)
}

// NetworkConnector is implemented by runtimes that can add a bridge
// network's interface to a running task and take it away again
// (capability CapNetworkConnect). The Client always implements it (a
// plugin without it answers NotImplemented).
type NetworkConnector interface {
	// ConnectNetwork adds the one interface of a (Mode bridge) to running
	// task id: a veth on a.Interfaces[0].Bridge, its peer in the task's
	// network namespace named a.Interfaces[0].Name or, when empty, the
	// first free ethN, with its addresses and no route beyond its subnet
	// (the task keeps its default route). Connecting the same bridge
	// again is idempotent.
	ConnectNetwork(ctx context.Context, id string, a NetworkAttachment) error
	// DisconnectNetwork removes task id's interface on bridge (added by
	// ConnectNetwork); one that is gone succeeds.
	DisconnectNetwork(ctx context.Context, id, bridge string) error
}
