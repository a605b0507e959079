package main

import "github.com/berth-dev/berth/bench/runner"

// The VM template benchmark (issue 10), appended to benchmarks: the same
// `berth run` on a daemon whose VMs start from a pre-booted template and on
// one that boots each VM cold (scripts/bench-vm-template.sh). Checkpoint
// and restore of a 256 MiB VM with file-backed RAM are measured at the
// plugin level (internal/vmtemplate TestMeasureRAMPlacement, NOTES):
// berth has no checkpoint path end to end for VMs yet.
func init() {
	benchmarks = append(benchmarks, runner.Benchmark{
		Name:        "vm-template-run",
		Description: "`berth run --rm --isolation vm IMG true` end to end with isolation-vm starting the VM from a pre-booted template (RAM clone, restore onto the container's disk, entropy/clock/hostname, then the container) against the same daemon setup booting each VM cold; --network none on both (a VM with a NIC boots cold: templates have no NIC placeholder yet); TCG unless BERTH_BENCH_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-vm-template.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-vm-template.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("bin/berth", "--config", "/tmp/berth-bench-vmt/tpl/config.hcl", "run", "--rm", "--isolation", "vm", "--network", "none", "berth.local/demo:latest", "true")},
		Peer:        runner.Side{Run: runner.Cmd("bin/berth", "--config", "/tmp/berth-bench-vmt/cold/config.hcl", "run", "--rm", "--isolation", "vm", "--network", "none", "berth.local/demo:latest", "true")},
		// The target: at most 0.3x the cold boot (and ≤ 0.5 s).
		Target:     0.3,
		Iterations: 8,
	})
}
