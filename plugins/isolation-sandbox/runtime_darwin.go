package main

import (
	"os"
	"os/exec"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The darwin adapter of the runtime: seatbeltPlatform (OS-neutral, tested
// on Linux) with this binary as the supervisor, `isolation-sandbox
// supervise`, whose backend confines every process with
// /usr/bin/sandbox-exec (internal/sandbox/supervisor).

func darwinPlatform() seatbeltPlatform {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return seatbeltPlatform{supervise: []string{self, "supervise"}}
}

func platformCaps() []string { return darwinPlatform().caps() }

// maybeSupervise runs the supervisor, or a created init held until start,
// when this binary was started as one.
func maybeSupervise() bool {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "supervise":
			supervisor.Main(os.Args[2:])
			return true
		case supervisor.HoldArg:
			supervisor.HoldMain(os.Args[2:])
			return true
		}
	}
	return false
}

func findInit(c *string) (string, error) { return darwinPlatform().findInit(c) }

func platformSpec(spec isolation.Spec, oci *specs.Spec) error {
	return darwinPlatform().prepare(spec, oci)
}

func supervisorCommand(initPath, dir, socket string) (*exec.Cmd, error) {
	return darwinPlatform().supervisorCommand(initPath, dir, socket)
}

func criuCheck() string { return darwinPlatform().criuCheck() }

func killLeftovers(st supervisor.State) error { return darwinPlatform().killLeftovers(st) }

func unmountUnder(dir string) error { return darwinPlatform().unmountUnder(dir) }
