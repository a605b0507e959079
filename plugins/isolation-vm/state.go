//go:build linux || darwin

package main

import (
	"time"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/sdk/isolation"
)

// A task's directory (<plugin state>/tasks/<id>) holds what outlives the
// plugin:
//
//	spec.json       the task spec (the plugin writes it)
//	vm.json         how to boot its VM (bootConfig; the plugin writes it)
//	state.json      State (the supervisor writes it)
//	supervisor.log  the supervisor's own log
//	boot.log        the guest's serial console (berth logs --boot)
//	container.log   the init's output when the spec gives no LogPath
//
// and the runtime dir (<plugin runtime>) the short paths: the supervisor's
// socket <h>.sock and the VM's run dir <h>/ (qmp.sock, agent.sock), h being
// the first 12 hex digits of sha256(id).
const (
	specFile       = "spec.json"
	bootFile       = "vm.json"
	stateFile      = "state.json"
	supervisorLog  = "supervisor.log"
	bootLog        = "boot.log"
	containerLog   = "container.log"
	checkpointTask = "task.json"
	checkpointVM   = "vm"
)

// State is a task as its supervisor records it in state.json.
type State struct {
	ID            string `json:"id"`
	SupervisorPid int    `json:"supervisor_pid"`
	// VMPid is the hypervisor process (qemu), 0 once the VM has ended.
	VMPid  int              `json:"vm_pid,omitempty"`
	Socket string           `json:"socket"`
	RunDir string           `json:"run_dir"`
	Status isolation.Status `json:"status"`
	// Pid is the init's pid inside the guest.
	Pid       int                   `json:"pid,omitempty"`
	Exit      *isolation.ExitStatus `json:"exit,omitempty"`
	CreatedAt time.Time             `json:"created_at"`
	// Checkpoint is set when the VM was stopped by a checkpoint into it.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// bootConfig is how the supervisor boots (or restores) a task's VM; the
// plugin resolves it from its settings and the task's VMSizing.
type bootConfig struct {
	Kernel      string   `json:"kernel"`
	Initrd      string   `json:"initrd"`
	Cmdline     []string `json:"cmdline"`
	CPUs        int      `json:"cpus"`
	MemoryBytes int64    `json:"memory_bytes"`
	Machine     string   `json:"machine,omitempty"`
	Accel       string   `json:"accel,omitempty"`
	// BootTimeout bounds the boot up to the agent's first answer.
	BootTimeout time.Duration `json:"boot_timeout"`
	// Restore, when set, is the checkpoint dir the VM starts from instead
	// of a boot.
	Restore string `json:"restore,omitempty"`
}

// checkpointInfo is dir/task.json of a checkpoint: what Restore needs
// besides the VM state.
type checkpointInfo struct {
	ID        string    `json:"id"`
	Pid       int       `json:"pid"`
	CreatedAt time.Time `json:"created_at"`
	Saved     time.Time `json:"saved"`
}

// writeJSON writes task state atomically, not durably (see
// atomicfile.WriteState: an fsync per state change cost seconds under disk
// load on a VM's start path).
func writeJSON(path string, v any) error { return atomicfile.WriteState(path, v) }

// readJSON reads a file writeJSON wrote.
func readJSON(path string, v any) error { return atomicfile.ReadJSON(path, v) }
