// Package lifecycle is layer 4 of Berth: containers as a persisted state
// machine, orchestrating the other layers through the handles the core
// brokers to it (resources, every isolation mode, every bound snapshotter,
// and the core's image service).
//
// States and transitions:
//
//	created      → running | stopped (start failed) | deleted
//	running      → paused | stopped
//	paused       → running | stopped | checkpointed
//	checkpointed → running (restore) | deleted
//	stopped      → running (start again, restart policies) | deleted
//
// Checkpointing a running container goes running → paused → checkpointed.
// Any other request fails with errdefs.ErrInvalidState and a message a user
// can act on ("container web is stopped; only a running container can be
// paused"). Every transition is persisted before it is acknowledged.
package lifecycle

import (
	"context"
	"io"
	"slices"
	"syscall"
	"time"

	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
)

// Capabilities a lifecycle plugin may declare.
const (
	CapRestartPolicies = "restart_policies"
	CapCheckpoint      = "checkpoint"
	CapReconcile       = "reconcile"
	CapEvents          = "events"
)

// State is a container's state.
type State string

// Container states.
const (
	StateCreated      State = "created"
	StateRunning      State = "running"
	StatePaused       State = "paused"
	StateCheckpointed State = "checkpointed"
	StateStopped      State = "stopped"
	StateDeleted      State = "deleted"
)

// transitions is the state machine of the package doc.
var transitions = map[State][]State{
	StateCreated:      {StateRunning, StateStopped, StateDeleted},
	StateRunning:      {StatePaused, StateStopped},
	StatePaused:       {StateRunning, StateStopped, StateCheckpointed},
	StateCheckpointed: {StateRunning, StateDeleted},
	StateStopped:      {StateRunning, StateDeleted},
}

// CanTransition reports whether a container may go from one state to another.
func CanTransition(from, to State) bool { return slices.Contains(transitions[from], to) }

// RestartPolicy is Docker's --restart.
type RestartPolicy struct {
	// Name is "no", "on-failure", "always" or "unless-stopped".
	Name string
	// MaxRetries bounds on-failure restarts; 0 is unbounded.
	MaxRetries int
}

// Mount is a user-requested mount (-v, --mount, --tmpfs).
type Mount struct {
	// Type is "bind", "volume" or "tmpfs".
	Type        string
	Source      string
	Destination string
	ReadOnly    bool
	Options     []string
}

// NetworkOptions are the user's network choices.
type NetworkOptions struct {
	// Network is a network name, "none" or "host"; empty is the default.
	Network    string
	IP         string
	Ports      []isolation.PortMapping
	DNS        []string
	DNSSearch  []string
	ExtraHosts []isolation.HostEntry
	// Aliases are extra names the container has on its network
	// (docker run --network-alias).
	Aliases []string
}

// Config is what a user asks for when creating a container.
type Config struct {
	// Image is the image reference as the user typed it.
	Image string
	// Isolation is the mode ("sandbox", "vm", "hybrid"); empty is the
	// configured default.
	Isolation  string
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	WorkingDir string
	Hostname   string
	Labels     map[string]string
	Tty        bool
	OpenStdin  bool
	StopSignal string
	// StopTimeout is the grace period between StopSignal and SIGKILL.
	StopTimeout time.Duration
	Mounts      []Mount
	Limits      resources.Limits
	Restart     RestartPolicy
	Network     NetworkOptions
	VM          *isolation.VMSizing
	// ReadOnlyRootfs, Privileged, CapAdd, CapDrop follow Docker's flags.
	ReadOnlyRootfs bool
	Privileged     bool
	CapAdd         []string
	CapDrop        []string
	// Ulimits override the runtime's resource limits (docker run --ulimit).
	Ulimits []Ulimit
	// Devices are host devices made available in the container (docker
	// run --device).
	Devices []DeviceMapping
	// SecurityOpt are Docker's --security-opt values, resolved by the
	// client: "no-new-privileges[=true|false]", "seccomp=unconfined",
	// "seccomp=<profile JSON>" (the content, not a path: the daemon reads
	// no client files), "apparmor=…" and "label=…" (accepted, ignored).
	SecurityOpt []string
	// Init runs Berth's own small init as the container's PID 1 (docker
	// run --init): it runs the command as its child, forwards signals to
	// it, reaps every zombie and exits with the command's status.
	Init bool
	// OOMScoreAdj is the OOM killer's score adjustment of the container's
	// processes (docker run --oom-score-adj), -1000 (never chosen) to 1000
	// (chosen first). 0 is a plain process's: containers do not inherit the
	// daemon's protection (its unit lowers its own score).
	OOMScoreAdj int
}

// Ulimit is one resource limit: Name is the lower-case rlimit name without
// its RLIMIT_ prefix ("nofile", "nproc", "core"); -1 is unlimited.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// DeviceMapping makes the host device PathOnHost appear at
// PathInContainer with cgroup access Permissions (a subset of "rwm").
type DeviceMapping struct {
	PathOnHost, PathInContainer, Permissions string
}

// Container is a container record.
type Container struct {
	ID   string
	Name string
	// ImageDigest is the manifest digest the container was created from.
	ImageDigest string
	Config      Config
	// Isolation is the resolved mode and SnapshotKey its rootfs snapshot.
	Isolation   string
	SnapshotKey string
	State       State
	Pid         int
	// ExitCode is meaningful in StateStopped.
	ExitCode   int
	OOMKilled  bool
	Checkpoint string
	// RestartCount counts restarts made by the restart policy.
	RestartCount int
	// Restarting is set on a stopped container its restart policy is
	// about to start again (Docker's State.Restarting).
	Restarting bool
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
}

// ExecConfig is a process to run in a running container.
type ExecConfig struct {
	Cmd        []string
	Env        []string
	User       string
	WorkingDir string
	Tty        bool
	OpenStdin  bool
	// ConsoleSize is the terminal's size when the process starts (with
	// Tty), so a short command does not run at 0x0 before the first
	// Resize; nil leaves the runtime's default.
	ConsoleSize *isolation.ConsoleSize
}

// Event kinds in Event.
const (
	EventCreate     = "create"
	EventStart      = "start"
	EventExit       = "exit"
	EventOOM        = "oom"
	EventPause      = "pause"
	EventResume     = "resume"
	EventCheckpoint = "checkpoint"
	EventRestore    = "restore"
	EventDelete     = "delete"
)

// Event reports a container event for `berth events`.
type Event struct {
	Kind        string
	ContainerID string
	Name        string
	// ExitCode is set for EventExit.
	ExitCode int
	Time     time.Time
	// Attributes carries event-specific detail.
	Attributes map[string]string
}

// Filter selects containers in List; zero fields match all.
type Filter struct {
	// All includes stopped containers (docker ps -a).
	All    bool
	States []State
	Labels map[string]string
	Name   string
}

// Manager is the lifecycle layer contract. Containers are named by ID, by
// an unambiguous ID prefix, or by name.
type Manager interface {
	plugin.Base
	// Create resolves the image, prepares the snapshot, creates the resource
	// group and the isolation task; on failure it undoes all of it.
	Create(ctx context.Context, name string, cfg Config) (Container, error)
	Start(ctx context.Context, ref string) (Container, error)
	// Stop sends the stop signal, then SIGKILL after timeout (negative: the
	// container's own StopTimeout).
	Stop(ctx context.Context, ref string, timeout time.Duration) (Container, error)
	Kill(ctx context.Context, ref string, sig syscall.Signal) error
	Pause(ctx context.Context, ref string) (Container, error)
	Resume(ctx context.Context, ref string) (Container, error)
	// Checkpoint saves a running or paused container (running goes through
	// paused); leaveRunning keeps it running afterwards.
	Checkpoint(ctx context.Context, ref string, leaveRunning bool) (Container, error)
	// Restore runs a checkpointed container from its checkpoint.
	Restore(ctx context.Context, ref string) (Container, error)
	// Delete removes a container and all it holds; force stops a running one
	// first. Deleting a missing container is ErrNotFound.
	Delete(ctx context.Context, ref string, force bool) error
	Get(ctx context.Context, ref string) (Container, error)
	List(ctx context.Context, filter Filter) ([]Container, error)
	// Exec starts a process in a running container and returns its exec ID.
	Exec(ctx context.Context, ref string, cfg ExecConfig) (string, error)
	// Attach connects to the init process (execID "") or an exec.
	Attach(ctx context.Context, ref, execID string, streams isolation.Streams) error
	Resize(ctx context.Context, ref, execID string, size isolation.ConsoleSize) error
	// Wait blocks until the container's init process exits.
	Wait(ctx context.Context, ref string) (isolation.ExitStatus, error)
	// WaitExec blocks until the exec execID of the container exits and
	// returns its status (at once for one that has exited already). An
	// unknown exec is ErrNotFound.
	WaitExec(ctx context.Context, ref, execID string) (isolation.ExitStatus, error)
	// Rename gives a container a new name; a name in use by another
	// container is ErrAlreadyExists, an invalid one ErrInvalidArgument.
	Rename(ctx context.Context, ref, newName string) error
	// Update replaces the container's resource limits (all of them: a
	// caller changing one reads the others from Get first). A running or
	// paused container gets them at once; they are persisted for its later
	// starts. Limits the resources plugin refuses change nothing.
	Update(ctx context.Context, ref string, limits resources.Limits) (Container, error)
	// Stats merges resources usage with what isolation reports (the guest's
	// view for VMs).
	Stats(ctx context.Context, ref string) (isolation.Stats, error)
	// Events streams container events until ctx is done.
	Events(ctx context.Context) (<-chan Event, error)
	// SetRestartPolicy replaces the container's restart policy (docker
	// update --restart); it applies from the container's next exit.
	SetRestartPolicy(ctx context.Context, ref string, policy RestartPolicy) (Container, error)
	// Top lists the processes of a running or paused container (docker
	// top); psArgs are ps(1) options, none meaning "-ef".
	Top(ctx context.Context, ref string, psArgs []string) (TopResult, error)
	// CopyFrom writes a tar of path in the container to w: one entry named
	// by path's base name, and a directory's content below it. Symlinks
	// are resolved inside the container's root, never outside it.
	CopyFrom(ctx context.Context, ref, path string, w io.Writer) error
	// CopyTo extracts the tar r into dir, an existing directory in the
	// container; entries that would reach outside it are refused.
	CopyTo(ctx context.Context, ref, dir string, r io.Reader) error
	// Export writes the container's root filesystem (without volumes and
	// other mounts) to w as a tar.
	Export(ctx context.Context, ref string, w io.Writer) error
	VolumeManager
}
