//go:build linux || darwin

package main

import (
	"context"
	"os/exec"
	"slices"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/sandbox/seatbelt"
	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// seatbeltPlatform is the darwin backend: darwin-native workloads (a
// darwin image's rootfs directory, an APFS clone bound by snapshot-apfs,
// or plain host commands) confined by Seatbelt, each task owned by a
// supervisor running supervisor.MainSeatbelt's backend. It is OS-neutral
// so that its logic runs on Linux in tests, where the supervisor runs the
// workloads unconfined (supervisor.Unconfined) and everything else is real.
type seatbeltPlatform struct {
	// supervise is the supervisor's command line before its flags: on
	// darwin this binary and "supervise".
	supervise []string
}

func (seatbeltPlatform) caps() []string {
	return []string{isolation.CapRootfsBind, isolation.CapExec, isolation.CapTTY, isolation.CapPause, isolation.CapRecover}
}

// findInit: there is no init binary; the supervisor spawns the workload.
func (seatbeltPlatform) findInit(*string) (string, error) { return "", nil }

// prepare checks the rootfs is one directory and maps the network
// attachment to Seatbelt's: none or "" is localhost only (the nearest
// thing to a private loopback-only namespace), host is all.
func (seatbeltPlatform) prepare(spec isolation.Spec, oci *specs.Spec) error {
	if len(spec.Rootfs) != 1 || spec.Rootfs[0].Type != "bind" {
		return errdefs.InvalidArgument("task %s: the darwin sandbox takes one bind rootfs mount (a directory, as snapshot-apfs gives), got %d mounts", spec.ID, len(spec.Rootfs))
	}
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

func (p seatbeltPlatform) supervisorCommand(_, dir, socket string) (*exec.Cmd, error) {
	args := append(slices.Clone(p.supervise[1:]), "-dir", dir, "-socket", socket)
	return exec.Command(p.supervise[0], args...), nil
}

func (seatbeltPlatform) criuCheck() string { return "CRIU is Linux-only" }

// killLeftovers kills the task's process groups, which a supervisor that
// died left running.
func (seatbeltPlatform) killLeftovers(st supervisor.State) error {
	groups := st.Pgids
	if len(groups) == 0 && st.Pgid > 0 {
		groups = []int{st.Pgid}
	}
	for _, g := range groups {
		if g > 1 {
			_ = syscall.Kill(-g, syscall.SIGKILL)
			_ = syscall.Kill(-g, syscall.SIGCONT)
		}
	}
	return nil
}

// unmountUnder: a darwin task mounts nothing.
func (seatbeltPlatform) unmountUnder(string) error { return nil }

// The network methods have nothing to do: prepare refuses every mode but
// none and host.
func (seatbeltPlatform) prepareNetwork(isolation.Spec, *specs.Spec, string) error { return nil }
func (seatbeltPlatform) attachNetwork(context.Context, isolation.Spec, int) error { return nil }
func (seatbeltPlatform) detachNetwork(context.Context, isolation.Spec) error      { return nil }
func (seatbeltPlatform) recoverNetwork(context.Context, isolation.Spec) error     { return nil }
