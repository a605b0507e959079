package main

import "github.com/berth-dev/berth/bench/runner"

// benchmarks is every benchmark `make bench` knows, in the order they run.
// Each issue that makes a speed claim appends one here, naming its peer
// and its target ratio ours/peer. Our programs are given relative to the
// repository root (bin/berth, bin/plugins/…); a benchmark whose programs
// are missing is reported as skipped, never faked.
//
// TODO(go-plugin-handshake): time starting a plugin from bin/plugins and
// completing the go-plugin handshake, once a plugin binary exists and a
// fair peer is chosen.
var benchmarks = []runner.Benchmark{
	{
		Name:        "noise-floor",
		Description: "/bin/true against itself: the spread the runner itself sees on this machine; a ratio far from 1.00 means the machine is too noisy to trust close results",
		Ours:        runner.Side{Run: runner.Cmd("/bin/true")},
		Peer:        runner.Side{Run: runner.Cmd("/bin/true")},
		Target:      1.10,
		Iterations:  200,
	},
	{
		Name:        "process-spawn",
		Description: "start the berth CLI and exit, against the smallest possible process; bounds the fixed cost every berth command pays",
		Ours:        runner.Side{Run: runner.Cmd("bin/berth", "version", "--client")},
		Peer:        runner.Side{Run: runner.Cmd("/bin/true")},
		// Calibrated on a 2-vCPU Linux VM against /bin/true: a bare Go
		// hello-world measures ~2.0x, one built with cobra ~3.5x, and one
		// that also links gRPC and go-plugin ~6.3x (package init and
		// binary size). 4.0 allows the Go runtime and cobra but not a CLI
		// that pays for the daemon's dependencies on every start.
		Target:     4.0,
		Iterations: 100,
	},
}
