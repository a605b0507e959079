package main

import (
	"os"
	"os/exec"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/sandbox/seatbelt"
	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The darwin parts of the runtime: darwin-native workloads confined by
// Seatbelt (internal/sandbox/seatbelt), supervised by this binary started
// as `isolation-sandbox supervise`.

func platformCaps() []string {
	return []string{isolation.CapRootfsBind, isolation.CapExec, isolation.CapTTY, isolation.CapPause, isolation.CapRecover}
}

// maybeSupervise runs the supervisor when this binary was started as one.
func maybeSupervise() bool {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		supervisor.Main(os.Args[2:])
		return true
	}
	return false
}

// findInit: there is no init binary on darwin; the plugin supervises.
func findInit(*string) (string, error) { return "", nil }

// platformSpec maps the network attachment to Seatbelt's: none or "" is
// localhost only (the nearest thing to a private loopback-only namespace),
// host is all.
func platformSpec(spec isolation.Spec, oci *specs.Spec) error {
	network := seatbelt.NetworkLocalhost
	if spec.Network != nil {
		switch spec.Network.Mode {
		case "", "none":
		case "host":
			network = seatbelt.NetworkAll
		default:
			return errdefs.NotImplemented("task %s: network mode %q is not supported by the darwin sandbox (none, host)", spec.ID, spec.Network.Mode)
		}
	}
	if oci.Annotations == nil {
		oci.Annotations = map[string]string{}
	}
	oci.Annotations[supervisor.AnnotationNetwork] = network
	return nil
}

func supervisorCommand(_, dir, socket string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(self, "supervise", "-dir", dir, "-socket", socket), nil
}

func criuCheck() string { return "CRIU is Linux-only" }

// killLeftovers kills the task's process group.
func killLeftovers(st supervisor.State) error {
	if st.Pgid > 0 {
		_ = syscall.Kill(-st.Pgid, syscall.SIGKILL)
		_ = syscall.Kill(-st.Pgid, syscall.SIGCONT)
	}
	return nil
}

// waitGone polls until pid no longer exists or the deadline passes.
func waitGone(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unmountUnder: a darwin task mounts nothing.
func unmountUnder(string) error { return nil }
