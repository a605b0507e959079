package cgroupctl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/resources/conformance"
	"github.com/berth-dev/berth/sdk/schema"
)

// launchPlugin builds this plugin, launches it as a real go-plugin process
// and configures it under a fresh test parent. Groups still there when t
// ends are deleted (their processes killed) before the plugin stops, and
// the parent is removed after.
func launchPlugin(t *testing.T) (*resources.Client, int, plugin.ConfigureRequest) {
	t.Helper()
	requireRoot(t)
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "resources-cgroup")
	if out, err := exec.Command(gobin, "build", "-o", bin, "github.com/berth-dev/berth/plugins/resources-cgroup").CombinedOutput(); err != nil {
		t.Fatalf("go build resources-cgroup: %v\n%s", err, out)
	}
	parent := testParent()
	t.Cleanup(func() { removeParent(t, parent) })
	c, pid := conformance.Launch(t, bin)
	req := plugin.ConfigureRequest{
		Config:     schema.Config{JSON: fmt.Appendf(nil, `{"parent":%q}`, parent)},
		APIVersion: plugin.APIVersion,
		StateDir:   t.TempDir(),
	}
	if err := c.Configure(context.Background(), req); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		groups, _ := c.List(ctx)
		for _, g := range groups {
			for _, p := range g.Pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			if err := c.Delete(ctx, g.ID); err != nil {
				t.Errorf("cleanup: Delete(%q): %v", g.ID, err)
			}
		}
	})
	return c, pid, req
}

func TestConformancePluginProcess(t *testing.T) {
	c, _, req := launchPlugin(t)
	conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{
		Capabilities: wantCaps,
		Reconfigure:  &req,
		GroupPrefix:  "berth-proc-",
		SpawnBusy:    spawnBusyForking,
	})
}

// procThreads and procCPU read a process's thread count and CPU time.
func procThreads(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no Threads line in /proc/%d/status", pid)
	return 0
}

// procCPU is the on-CPU time of every thread of pid, in nanoseconds (the
// first field of each thread's schedstat; /proc/<pid>/stat only counts
// 10 ms ticks).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads of pid %d in /proc (%v)", pid, err)
	}
	var total time.Duration
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that just ended
		}
		fields := strings.Fields(string(data))
		if len(fields) > 0 {
			ns, _ := strconv.ParseInt(fields[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// TestFiftyGroupsMonitoredIdle watches 50 groups, each with a process and
// every monitored limit (OOM and soft-limit eventfds, a CPU quota the shared
// sampler reads), and measures the real plugin process: threads may grow by
// at most 4 over its idle count and it may use at most 2% of a core while
// the groups idle.
func TestFiftyGroupsMonitoredIdle(t *testing.T) {
	c, pid, _ := launchPlugin(t)
	ctx := context.Background()
	time.Sleep(time.Second)
	idleThreads := procThreads(t, pid)
	for i := range 50 {
		id := fmt.Sprintf("berth-idle-%02d", i)
		if _, err := c.CreateGroup(ctx, id, resources.Limits{MemoryBytes: 64 << 20, MemorySoftBytes: 32 << 20, CPUs: 0.5, Pids: 64}); err != nil {
			t.Fatalf("CreateGroup(%s): %v", id, err)
		}
		pid := conformance.SpawnCommand(t, "sleep", "3600")
		if err := c.Attach(ctx, id, pid); err != nil {
			t.Fatalf("Attach(%s, %d): %v", id, pid, err)
		}
	}
	time.Sleep(time.Second)
	const window = 6 * time.Second
	cpu0 := procCPU(t, pid)
	time.Sleep(window)
	cpu := procCPU(t, pid) - cpu0
	threads := procThreads(t, pid)
	share := cpu.Seconds() / window.Seconds()
	t.Logf("plugin pid %d: %d threads idle, %d with 50 monitored groups; CPU %s over %s idle = %.2f%% of a core", pid, idleThreads, threads, cpu, window, 100*share)
	if threads > idleThreads+4 {
		t.Errorf("plugin has %d threads with 50 groups, idle it had %d: want at most %d", threads, idleThreads, idleThreads+4)
	}
	if share > 0.02 {
		t.Errorf("plugin used %.2f%% of a core while 50 groups idled, want at most 2%%", 100*share)
	}
}
