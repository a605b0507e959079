//go:build linux || darwin

package main

import (
	"context"
	"os/exec"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/sdk/isolation"
)

// platform is what the runtime's backends do differently; the rest of the
// runtime (runtime_unix.go) talks to supervisors the same way everywhere.
type platform interface {
	// caps are the capabilities the plugin declares.
	caps() []string
	// findInit returns the init binary the supervisor needs ("" for none).
	findInit(configured *string) (string, error)
	// prepare applies the task's network attachment to oci, a copy.
	prepare(spec isolation.Spec, oci *specs.Spec) error
	// supervisorCommand is the command that supervises the task in dir.
	supervisorCommand(initPath, dir, socket string) (*exec.Cmd, error)
	// criuCheck says why checkpoints are unavailable ("" when CRIU works).
	criuCheck() string
	// killLeftovers kills what a dead supervisor left of its task.
	killLeftovers(st supervisor.State) error
	// unmountUnder detaches host mounts left under a task dir.
	unmountUnder(dir string) error
	// prepareNetwork writes what the network attachment puts in the
	// container into the task dir and mounts it in oci (before the init
	// is created).
	prepareNetwork(spec isolation.Spec, oci *specs.Spec, dir string) error
	// attachNetwork wires the attachment once the init (pid) is created
	// and held; on failure it leaves nothing.
	attachNetwork(ctx context.Context, spec isolation.Spec, pid int) error
	// detachNetwork undoes attachNetwork; idempotent.
	detachNetwork(ctx context.Context, spec isolation.Spec) error
	// recoverNetwork re-asserts a live task's datapath rules after a
	// restart (the veth lives in the kernel and is kept as it is).
	recoverNetwork(ctx context.Context, spec isolation.Spec) error
}

// hostPlatform is the backend of the platform the plugin was built for:
// runtime_linux.go's namespaces, or runtime_darwin.go's Seatbelt.
type hostPlatform struct{}

func (hostPlatform) caps() []string                                { return platformCaps() }
func (hostPlatform) findInit(c *string) (string, error)            { return findInit(c) }
func (hostPlatform) prepare(s isolation.Spec, o *specs.Spec) error { return platformSpec(s, o) }
func (hostPlatform) supervisorCommand(initPath, dir, socket string) (*exec.Cmd, error) {
	return supervisorCommand(initPath, dir, socket)
}
func (hostPlatform) criuCheck() string                       { return criuCheck() }
func (hostPlatform) killLeftovers(st supervisor.State) error { return killLeftovers(st) }
func (hostPlatform) unmountUnder(dir string) error           { return unmountUnder(dir) }
func (hostPlatform) prepareNetwork(s isolation.Spec, o *specs.Spec, dir string) error {
	return prepareNetwork(s, o, dir)
}
func (hostPlatform) attachNetwork(ctx context.Context, s isolation.Spec, pid int) error {
	return attachNetwork(ctx, s, pid)
}
func (hostPlatform) detachNetwork(ctx context.Context, s isolation.Spec) error {
	return detachNetwork(ctx, s)
}
func (hostPlatform) recoverNetwork(ctx context.Context, s isolation.Spec) error {
	return recoverNetwork(ctx, s)
}
