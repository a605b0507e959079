package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/plugins/resources-cgroup/cgroupctl"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// benchCommand makes this binary run one benchmark cycle instead of
// serving (bench/benchmarks.go "resources-cgroup-cycle").
const benchCommand = "bench-cycle"

// benchLimits are the limits of the benchmark's group, the same the peer
// (cgroup-tools) sets.
var benchLimits = resources.Limits{CPUShares: 512, CPUs: 0.5, MemoryBytes: 256 << 20, Pids: 128}

// runBenchCycle does what a container start and removal asks of this
// layer, in process: configure under parent "berth-bench" with the state
// in stateDir, create a group with benchLimits, run /bin/true in it (started
// blocked, attached, then released), read its usage, delete the group.
func runBenchCycle(stateDir string, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "resources-cgroup %s: %v\n", benchCommand, err)
		return 1
	}
	ctx := context.Background()
	c := cgroupctl.New(hclog.NewNullLogger())
	defer c.Close()
	err := c.Configure(ctx, plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(`{"parent":"berth-bench"}`)}, StateDir: stateDir, APIVersion: plugin.APIVersion})
	if err != nil {
		return fail(err)
	}
	const id = "berth-bench-cycle"
	if _, err := c.CreateGroup(ctx, id, benchLimits); err != nil {
		return fail(err)
	}
	defer func() { _ = c.Delete(ctx, id) }()
	cmd := exec.Command("/bin/sh", "-c", "read _; exec /bin/true")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fail(err)
	}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	if err := c.Attach(ctx, id, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fail(err)
	}
	_, _ = stdin.Write([]byte("\n"))
	if err := cmd.Wait(); err != nil {
		return fail(err)
	}
	if _, err := c.Usage(ctx, id); err != nil {
		return fail(err)
	}
	if err := c.Delete(ctx, id); err != nil {
		return fail(err)
	}
	return 0
}

func benchMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintf(os.Stderr, "usage: resources-cgroup %s STATE_DIR\n", benchCommand)
		return 2
	}
	return runBenchCycle(args[0], os.Stderr)
}
