package main

import "github.com/berth-dev/berth/bench/runner"

// The VM template benchmark (issue 10), appended to benchmarks: the same
// `berth run` on a daemon whose VMs start from a pre-booted template and on
// one that boots each VM cold (scripts/bench-vm-template.sh). Checkpoint
// and restore of a 256 MiB VM with file-backed RAM are measured at the
// plugin level (internal/vmtemplate TestMeasureRAMPlacement, NOTES):
// berth has no checkpoint path end to end for VMs yet.
func init() {
	run := func(side string, net ...string) runner.Command {
		args := append([]string{"bin/berth", "--config", "/tmp/berth-bench-vmt/" + side + "/config.hcl", "run", "--rm", "--isolation", "vm"}, net...)
		return runner.Cmd(append(args, "berth.local/demo:latest", "true")...)
	}
	benchmarks = append(benchmarks, runner.Benchmark{
		Name:        "vm-template-run",
		Description: "`berth run --rm --isolation vm --network none IMG true` end to end with isolation-vm starting the VM from a pre-booted template (RAM clone, restore onto the container's disk, entropy/clock/hostname, then the container) against the same daemon setup booting each VM cold; TCG unless BERTH_BENCH_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-vm-template.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-vm-template.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: run("tpl", "--network", "none")},
		Peer:        runner.Side{Run: run("cold", "--network", "none")},
		// The target: at most 0.3x the cold boot (and ≤ 0.5 s).
		Target:     0.3,
		Iterations: 8,
	}, runner.Benchmark{
		Name:        "vm-template-run-bridge",
		Description: "vm-template-run on the default bridge network (what a plain `berth run` gets): the template has a placeholder NIC whose netdev the restore points at the container's TAP, and the agent gives the guest's NIC the container's MAC; against the same daemon setup booting each VM cold; TCG unless BERTH_BENCH_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-vm-template.sh", "setup", "bridge")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-vm-template.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: run("tpl")},
		Peer:        runner.Side{Run: run("cold")},
		Target:      0.3,
		Iterations:  8,
	})
}
