package cgroupctl

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/resources/conformance"
)

// wantCaps are the capabilities this host's hierarchy must give (v1 with
// every controller the tests use, or v2 with them enabled).
var wantCaps = []string{
	resources.CapCPUShares, resources.CapCPUQuota, resources.CapCPUSet,
	resources.CapMemoryHard, resources.CapMemorySoft, resources.CapIOBandwidth,
	resources.CapPids, resources.CapDevices, resources.CapUsage,
	resources.CapEventsOOM, resources.CapEventsMemory, resources.CapEventsCPU,
}

// spawnBusyForking is a busy process that keeps touching new memory (each
// command substitution forks). Attaching a process does not move the memory
// it already uses (this kernel charges pages to the cgroup they were
// faulted in), so the suite's plain shell loop would show no memory.
func spawnBusyForking(t *testing.T) int {
	return conformance.SpawnCommand(t, "sh", "-c", "while :; do v=$(printf %1000s); done")
}

func TestConformance(t *testing.T) {
	c, req := newTestController(t, "")
	conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{
		Capabilities: wantCaps,
		Reconfigure:  &req,
		GroupPrefix:  "berth-conf-",
		SpawnBusy:    spawnBusyForking,
	})
}

func TestConformanceOverGRPC(t *testing.T) {
	c, req := newTestController(t, "")
	conformance.RunOverGRPC(t, c, conformance.Options{
		Capabilities: wantCaps,
		Reconfigure:  &req,
		GroupPrefix:  "berth-grpc-",
		SpawnBusy:    spawnBusyForking,
	})
}

// TestV2Conformance is the hook for pure cgroup v2 hosts (the VM guest runs
// it): on a unified host it runs the suite in mode "v2". On a hybrid host
// (this CI machine) the unified mount has no controllers, so it checks what
// v2 can do there: create, attach, CPU usage from the core cpu.stat, list,
// delete.
func TestV2Conformance(t *testing.T) {
	requireRoot(t)
	if data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && len(data) > 0 {
		c, req := newTestController(t, `,"mode":"v2"`)
		conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{
			Capabilities: wantCaps, Reconfigure: &req, GroupPrefix: "berth-v2-", SpawnBusy: spawnBusyForking,
		})
		return
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err != nil {
		t.Skip("no cgroup v2 mount on this host (neither unified nor hybrid)")
	}
	c, _ := newTestController(t, `,"mode":"v2"`)
	ctx := context.Background()
	if c.be.mode() != modeV2 {
		t.Fatalf("mode v2 gave backend %s", c.be.mode())
	}
	_, err := c.CreateGroup(ctx, "berth-v2", resources.Limits{MemoryBytes: 64 << 20})
	if len(c.be.(*v2Backend).controllers) == 0 && err == nil {
		t.Errorf("CreateGroup with a memory limit succeeded on a v2 mount without the memory controller")
	}
	p, err := c.CreateGroup(ctx, "berth-v2", resources.Limits{})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	dir := filepath.Join("/sys/fs/cgroup/unified", p.CgroupPath)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		t.Fatalf("placement %+v: %v", p, err)
	}
	w := startWorkload(t, c, "berth-v2", "spin")
	eventually(t, waitFor, func() (bool, string) {
		u, err := c.Usage(ctx, "berth-v2")
		return err == nil && u.CPUUsageNanos > 0 && u.Pids == 0, "usage shows no CPU time yet"
	})
	groups, err := c.List(ctx)
	if err != nil || len(groups) != 1 || !slices.Contains(groups[0].Pids, w.cmd.Process.Pid) {
		t.Errorf("List = %+v, %v; want berth-v2 with pid %d", groups, err, w.cmd.Process.Pid)
	}
	// Delete kills nothing: the running process moves to the plugin's own
	// cgroup and the group goes.
	if err := c.Delete(ctx, "berth-v2"); err != nil {
		t.Fatalf("Delete with a running process: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Delete (%v)", dir, err)
	}
	if err := syscall.Kill(w.cmd.Process.Pid, 0); err != nil {
		t.Errorf("Delete killed the process of the group: %v", err)
	}
}
