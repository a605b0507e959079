package sandbox

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/mount"
)

// Init modes: the init binary either becomes a container's init process or
// joins a running container as an extra process.
const (
	ModeCreate = "create"
	ModeExec   = "exec"
)

// Environment variables and fds between the parent and the init binary.
const (
	// EnvInitSock names the fd of the init socket (SOCK_SEQPACKET) in the
	// init binary.
	EnvInitSock = "_BERTH_INIT_SOCK"
	// EnvNsenterPid tells the nsenter constructor whose namespaces to join.
	EnvNsenterPid = "_BERTH_NSENTER_PID"
	// EnvNsenterPipe names the fd the constructor reports the joined
	// process's pid on ("P<pid>\n") or its failure ("E<message>\n").
	EnvNsenterPipe = "_BERTH_NSENTER_PIPE"
)

// InitConfig is what the parent sends the init binary first.
type InitConfig struct {
	Mode string `json:"mode"`
	// Spec is the container's runtime spec. In ModeExec its Process is the
	// container's; Process below is the one to run.
	Spec *specs.Spec `json:"spec"`
	// Process is the process to exec.
	Process *specs.Process `json:"process"`
	// RootDir is the host directory the rootfs is mounted on (ModeCreate).
	RootDir string `json:"root_dir,omitempty"`
	// Rootfs are the snapshot layer's mounts of the root, in order; empty
	// means RootDir already holds the root filesystem.
	Rootfs []mount.Mount `json:"rootfs,omitempty"`
	// CgroupNS asks the init to unshare its cgroup namespace once it has
	// joined its cgroup, so the namespace is rooted there.
	CgroupNS bool `json:"cgroup_ns,omitempty"`
	// SeccompBPF is Spec.Linux.Seccomp compiled to a BPF program (by
	// Launcher's cache); when set the init loads it instead of compiling
	// the profile itself.
	SeccompBPF []byte `json:"seccomp_bpf,omitempty"`
	// CgroupV1 lists the cgroup v1 hierarchies (mount dir name → path of the
	// container's cgroup in it) bound read-only under /sys/fs/cgroup.
	CgroupV1 map[string]string `json:"cgroup_v1,omitempty"`
}

// Message kinds on the init socket.
const (
	// parent → init: the cgroup is joined, go on with setup.
	msgGo = "go"
	// init → parent: set up, waiting for start (ModeCreate).
	msgReady = "ready"
	// parent → init: exec the workload.
	msgStart = "start"
	// init → parent: setup failed.
	msgError = "error"
	// init → parent: the master of the process's terminal rides along
	// (SCM_RIGHTS), before msgReady (ModeCreate) or before exec (ModeExec).
	msgConsole = "console"
)

// message is one packet on the init socket after the InitConfig.
type message struct {
	Type  string `json:"type"`
	Error string `json:"error,omitempty"`
	// Phases are the init's setup timings, sent with msgReady.
	Phases []Phase `json:"phases,omitempty"`
}

// Phase is one step of a container's setup and when it ended (unix
// nanoseconds, the clock of the machine the init runs on).
type Phase struct {
	Name string `json:"name"`
	At   int64  `json:"at"`
}
