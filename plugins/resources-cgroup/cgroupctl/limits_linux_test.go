package cgroupctl

// These tests check that limits really hold, with real cgroups and real
// workloads. The CPU, IO and memory ones are CPU-heavy or slow: they run
// serially (no t.Parallel) and each bounds its own waits; together they take
// well under a minute.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/resources"
)

func TestOOMKillEvent(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	events, err := c.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A second subscriber gets the same events (the stream fans out).
	second, err := c.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const id = "berth-oom"
	if _, err := c.CreateGroup(ctx, id, resources.Limits{MemoryBytes: 64 << 20, SwapBytes: -1}); err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	// No swap on CI; where there is some, memsw would let it swap first.
	w := startWorkload(t, c, id, "alloc", "BERTH_HELPER_MIB=256")
	ev := waitEvent(t, events, waitFor, "OOM kill event for "+id, func(ev resources.LimitEvent) bool {
		return ev.GroupID == id && ev.Kind == resources.EventOOMKill
	})
	if ev.Resource != resources.ResourceMemory || ev.Count < 1 || !strings.Contains(ev.Message, id) {
		t.Errorf("OOM event = %+v, want resource memory, count >= 1, a message naming the group", ev)
	}
	waitEvent(t, second, waitFor, "the OOM event on a second subscriber", func(ev2 resources.LimitEvent) bool {
		return ev2 == ev
	})
	select {
	case err := <-w.done:
		var ws syscall.WaitStatus
		if ee, ok := err.(*exec.ExitError); ok {
			ws = ee.Sys().(syscall.WaitStatus)
		}
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("workload ended with %v, want killed by SIGKILL (OOM)", err)
		}
		w.done <- err
	case <-time.After(waitFor):
		t.Fatal("workload still running after its OOM event")
	}
	u, err := c.Usage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel may overshoot by a few pages before it reclaims or kills.
	if u.MemoryPeakBytes < 32<<20 || u.MemoryPeakBytes > 65<<20 {
		t.Errorf("MemoryPeakBytes = %d, want near the 64 MiB limit", u.MemoryPeakBytes)
	}
}

func TestSoftLimitPressureKeepsProcess(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	events, err := c.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const id = "berth-soft"
	if _, err := c.CreateGroup(ctx, id, resources.Limits{MemorySoftBytes: 32 << 20}); err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	w := startWorkload(t, c, id, "alloc", "BERTH_HELPER_MIB=96")
	waitEvent(t, events, waitFor, "memory pressure event for "+id, func(ev resources.LimitEvent) bool {
		return ev.GroupID == id && ev.Kind == resources.EventMemoryPressure && ev.Resource == resources.ResourceMemory
	})
	// The process allocated past the soft limit and lives on.
	if line := w.readLine(t, waitFor); line != "allocated" {
		t.Fatalf("workload said %q; want it to finish allocating", line)
	}
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(w.cmd.Process.Pid, 0); err != nil {
		t.Errorf("workload above its soft limit is gone: %v", err)
	}
	u, err := c.Usage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.MemoryBytes < 32<<20 {
		t.Errorf("MemoryBytes = %d, want above the 32 MiB soft limit", u.MemoryBytes)
	}
}

// cpuSeconds runs busy workloads in groups for a while and returns the CPU
// time each group used.
func cpuSeconds(t *testing.T, c *Controller, ids []string, d time.Duration) []float64 {
	t.Helper()
	ctx := context.Background()
	var ws []*workload
	for _, id := range ids {
		ws = append(ws, startWorkload(t, c, id, "spin"))
	}
	start := make([]uint64, len(ids))
	time.Sleep(300 * time.Millisecond) // let the scheduler settle
	for i, id := range ids {
		u, err := c.Usage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		start[i] = u.CPUUsageNanos
	}
	t0 := time.Now()
	time.Sleep(d)
	out := make([]float64, len(ids))
	for i, id := range ids {
		u, err := c.Usage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = float64(u.CPUUsageNanos-start[i]) / 1e9 / time.Since(t0).Seconds()
	}
	for _, w := range ws {
		_ = w.cmd.Process.Kill()
	}
	return out
}

// TestCPUShares is CPU-heavy (one CPU busy for ~3 s).
func TestCPUShares(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	ids := []string{"berth-shares-1024", "berth-shares-256"}
	for i, shares := range []uint64{1024, 256} {
		if _, err := c.CreateGroup(ctx, ids[i], resources.Limits{CPUShares: shares, CPUSetCPUs: "0"}); err != nil {
			t.Fatalf("CreateGroup(%s): %v", ids[i], err)
		}
	}
	use := cpuSeconds(t, c, ids, 3*time.Second)
	ratio := use[0] / use[1]
	t.Logf("CPU on one pinned CPU: shares 1024 → %.2f, shares 256 → %.2f, ratio %.2f (ideal 4)", use[0], use[1], ratio)
	if ratio < 2.5 || ratio > 6 {
		t.Errorf("shares 1024:256 gave a CPU ratio of %.2f, want 2.5–6", ratio)
	}
}

// TestCPUQuota is CPU-heavy (half a CPU for ~3 s).
func TestCPUQuota(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	events, err := c.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const id, free = "berth-quota", "berth-quota-free"
	if _, err := c.CreateGroup(ctx, id, resources.Limits{CPUs: 0.5}); err != nil {
		t.Fatal(err)
	}
	// A spinner in a group with no limit, measured over the same windows,
	// says how much CPU one process could get meanwhile (CI runs packages
	// in parallel on 2 CPUs): the quota's lower bound is relative to it.
	if _, err := c.CreateGroup(ctx, free, resources.Limits{}); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		use := cpuSeconds(t, c, []string{id, free}, 3*time.Second)
		t.Logf("cpus=0.5 used %.2f of a CPU while an unlimited spinner got %.2f (attempt %d)", use[0], use[1], attempt)
		if use[0] > 0.60 {
			t.Fatalf("cpus=0.5 used %.2f of a CPU, want at most 0.60", use[0])
		}
		// At least 60% of what the limit allows under the current load.
		if want := 0.6 * min(0.5, use[1]); use[0] >= want {
			break
		} else if attempt == 3 {
			t.Fatalf("cpus=0.5 used %.2f of a CPU three times while an unlimited spinner got %.2f, want at least %.2f", use[0], use[1], want)
		}
	}
	// A spinner that got less than the quota (a loaded machine) was never
	// throttled: keep one spinning until it is.
	startWorkload(t, c, id, "spin")
	waitEvent(t, events, waitFor, "CPU throttling event", func(ev resources.LimitEvent) bool {
		return ev.GroupID == id && ev.Kind == resources.EventCPUThrottled && ev.Count > 0
	})
	u, err := c.Usage(ctx, id)
	if err != nil || u.CPUThrottledPeriods == 0 {
		t.Errorf("Usage = %+v, %v; want throttled periods counted", u, err)
	}
}

func TestPidsLimitStopsForkBomb(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	const id = "berth-pids"
	events, err := c.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, id, resources.Limits{Pids: 16}); err != nil {
		t.Fatal(err)
	}
	// A bounded fork bomb: 200 sleepers, far more than the 16 allowed. The
	// shell dies at the first fork the kernel refuses ("Cannot fork").
	w := startWorkload(t, c, id, "sh", `n=0; while [ $n -lt 200 ]; do sleep 60 >/dev/null 2>&1 & n=$((n+1)); done; echo survived`)
	select {
	case err := <-w.done:
		w.done <- err
		t.Logf("fork loop ended: %v", err)
	case <-time.After(waitFor):
		t.Fatal("fork loop still running: pids.max did not stop it")
	}
	u, err := c.Usage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.Pids > 16 || u.Pids < 2 {
		t.Errorf("group has %d processes after a 200-process fork loop, want 2–16 (pids.max = 16)", u.Pids)
	}
	pidsEvents, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", c.be.placement(id).CgroupPath, "pids.events"))
	if err != nil || !strings.Contains(string(pidsEvents), "max ") || strings.Contains(string(pidsEvents), "max 0") {
		t.Errorf("pids.events = %q, %v; want forks refused at the limit", pidsEvents, err)
	}
	waitEvent(t, events, waitFor, "pids_limit event", func(ev resources.LimitEvent) bool {
		return ev.GroupID == id && ev.Kind == resources.EventPidsLimit && ev.Resource == resources.ResourcePids && ev.Count > 0
	})
	killGroup(t, c, id)
}

// killGroup kills every process in group id.
func killGroup(t *testing.T, c *Controller, id string) {
	t.Helper()
	eventually(t, waitFor, func() (bool, string) {
		pids, err := c.be.pids(id)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		return len(pids) == 0, fmt.Sprintf("group %s still has %v", id, pids)
	})
}

// loopDevice makes a loop device over a sparse file and returns its path.
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Fatalf("losetup is needed (util-linux, installed by scripts/install-deps.sh): %v", err)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup --find --show %s: %v: %s", img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func TestIOWriteBandwidth(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	dev := loopDevice(t, 64<<20)
	const id = "berth-io"
	const limit = 4 << 20 // bytes per second
	if _, err := c.CreateGroup(ctx, id, resources.Limits{IOWriteBPS: limit, IOReadBPS: limit, IODevice: dev}); err != nil {
		t.Fatal(err)
	}
	// 12 MiB at 4 MiB/s: about 3 s when the limit holds, milliseconds if not.
	w := startWorkload(t, c, id, "sh", fmt.Sprintf(`s=$(date +%%s%%N); dd if=/dev/zero of=%s bs=1M count=12 oflag=direct 2>/dev/null; e=$(date +%%s%%N); echo $((e-s))`, dev))
	line := w.readLine(t, waitFor)
	var nanos int64
	if _, err := fmt.Sscan(strings.TrimSpace(line), &nanos); err != nil || nanos <= 0 {
		t.Fatalf("dd timing %q: %v", line, err)
	}
	rate := float64(12<<20) / (float64(nanos) / 1e9)
	t.Logf("dd oflag=direct to %s under a %d B/s write limit: %.0f B/s (%.2f× the limit)", dev, limit, rate, rate/limit)
	if rate > 1.5*limit || rate < 0.3*limit {
		t.Errorf("write rate %.0f B/s is not near the limit %d B/s", rate, limit)
	}
	u, err := c.Usage(ctx, id)
	if err != nil || u.IOWriteBytes < 12<<20 {
		t.Errorf("Usage = %+v, %v; want at least 12 MiB written", u, err)
	}
}

// rootDisk returns the major:minor of the disk holding /.
func rootDisk(t *testing.T) (int64, int64) {
	t.Helper()
	maj, mnr, err := blockDevice("/")
	if err != nil {
		t.Skipf("the root filesystem has no block device here: %v", err)
	}
	return maj, mnr
}

// TestDeviceRulesHold checks that a process in a group with Docker's
// default device rules can mknod a disk node but not open it: both the
// host's root disk and a loop disk made by the test. The loop disk is the
// control: without rules the same probe opens it, so the test notices a
// probe that fails for another reason (this VM refuses even root to open
// its root disk /dev/vda, whatever the cgroup says).
func TestDeviceRulesHold(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	rootMaj, rootMin := rootDisk(t)
	loop := loopDevice(t, 8<<20)
	loopMaj, loopMin, err := blockDevice(loop)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	seq := 0
	probe := func(id string, limits resources.Limits, maj, mnr int64) string {
		t.Helper()
		seq++
		id = fmt.Sprintf("%s-%d", id, seq)
		if _, err := c.CreateGroup(ctx, id, limits); err != nil {
			t.Fatal(err)
		}
		node := filepath.Join(dir, fmt.Sprintf("disk%d", seq))
		script := fmt.Sprintf(`mknod %[1]s b %[2]d %[3]d || { echo mknod-failed; exit 0; }; if head -c 512 %[1]s >/dev/null 2>%[1]s.err; then echo opened; else echo denied; fi`, node, maj, mnr)
		w := startWorkload(t, c, id, "sh", script)
		got := w.readLine(t, waitFor)
		msg, _ := os.ReadFile(node + ".err")
		t.Logf("%s: block %d:%d → %s %s", id, maj, mnr, got, strings.TrimSpace(string(msg)))
		return got
	}
	if got := probe("berth-dev-none", resources.Limits{}, loopMaj, loopMin); got != "opened" {
		t.Fatalf("without device rules the probe of loop disk %d:%d said %q, want opened", loopMaj, loopMin, got)
	}
	for _, d := range [][2]int64{{loopMaj, loopMin}, {rootMaj, rootMin}} {
		if got := probe("berth-dev-default", resources.Limits{Devices: resources.DefaultDeviceRules()}, d[0], d[1]); got != "denied" {
			t.Errorf("with Docker's default device rules the probe of block %d:%d said %q, want denied (mknod allowed, open refused)", d[0], d[1], got)
		}
	}
	// /dev/null, allowed, still works.
	if _, err := c.CreateGroup(ctx, "berth-dev-null", resources.Limits{Devices: resources.DefaultDeviceRules()}); err != nil {
		t.Fatal(err)
	}
	w := startWorkload(t, c, "berth-dev-null", "sh", `echo x >/dev/null && echo ok`)
	if line := w.readLine(t, waitFor); line != "ok" {
		t.Errorf("/dev/null under the default rules: %q, want ok", line)
	}
}

func TestBadInput(t *testing.T) {
	c, _ := newTestController(t, "")
	ctx := context.Background()
	bad := []struct {
		name   string
		limits resources.Limits
		field  string
	}{
		{"negative memory", resources.Limits{MemoryBytes: -1}, "MemoryBytes"},
		{"tiny memory", resources.Limits{MemoryBytes: 4096}, "MemoryBytes"},
		{"absurd memory", resources.Limits{MemoryBytes: 1 << 62}, "MemoryBytes"},
		{"soft above hard", resources.Limits{MemoryBytes: 64 << 20, MemorySoftBytes: 128 << 20}, "MemorySoftBytes"},
		{"negative cpus", resources.Limits{CPUs: -1}, "CPUs"},
		{"absurd cpus", resources.Limits{CPUs: 1e6}, "CPUs"},
		{"absurd shares", resources.Limits{CPUShares: 1 << 40}, "CPUShares"},
		{"bad cpuset", resources.Limits{CPUSetCPUs: "0-"}, "CPUSetCPUs"},
		{"missing cpu", resources.Limits{CPUSetCPUs: "4096"}, "CPUSetCPUs"},
		{"negative pids", resources.Limits{Pids: -5}, "Pids"},
		{"absurd pids", resources.Limits{Pids: 1 << 40}, "Pids"},
		{"swap without memory", resources.Limits{SwapBytes: 1 << 20}, "SwapBytes"},
		{"io device missing", resources.Limits{IOReadBPS: 1 << 20, IODevice: "/nonexistent/berth"}, "/nonexistent/berth"},
		{"io device on tmpfs", resources.Limits{IOReadBPS: 1 << 20, IODevice: "/dev/shm"}, "/dev/shm"},
		{"bad device type", resources.Limits{Devices: []resources.DeviceRule{{Type: "x", Major: 1, Minor: 3, Access: "r"}}}, "Devices[0]"},
		{"bad device access", resources.Limits{Devices: []resources.DeviceRule{{Type: "c", Major: 1, Minor: 3, Access: "rx"}}}, "Devices[0]"},
	}
	for i, tc := range bad {
		id := fmt.Sprintf("berth-bad-%d", i)
		_, err := c.CreateGroup(ctx, id, tc.limits)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: CreateGroup error = %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
		if c.be.exists(id) {
			t.Errorf("%s: a refused CreateGroup left cgroup %s behind", tc.name, id)
		}
	}
	for _, id := range []string{"", "../escape", "a/b", ".hidden", strings.Repeat("x", 200)} {
		if _, err := c.CreateGroup(ctx, id, resources.Limits{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("CreateGroup(%q) error = %v, want InvalidArgument", id, err)
		}
	}
	// Unknown ids.
	if err := c.Attach(ctx, "berth-unknown", os.Getpid()); !errdefs.IsNotFound(err) {
		t.Errorf("Attach to an unknown group: %v, want NotFound", err)
	}
	if err := c.Update(ctx, "berth-unknown", resources.Limits{}); !errdefs.IsNotFound(err) {
		t.Errorf("Update of an unknown group: %v, want NotFound", err)
	}
	// Attach of a dead pid.
	if _, err := c.CreateGroup(ctx, "berth-bad-attach", resources.Limits{}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	err := c.Attach(ctx, "berth-bad-attach", cmd.Process.Pid)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), fmt.Sprint(cmd.Process.Pid)) {
		t.Errorf("Attach of dead pid %d: %v, want NotFound naming the pid", cmd.Process.Pid, err)
	}
	if err := c.Attach(ctx, "berth-bad-attach", -3); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Attach of pid -3: %v, want InvalidArgument", err)
	}
	// A failed Update leaves the old limits in force and on record.
	if _, err := c.CreateGroup(ctx, "berth-bad-update", resources.Limits{Pids: 10}); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, "berth-bad-update", resources.Limits{Pids: -7}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Update with Pids -7: %v, want InvalidArgument", err)
	}
	data, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", c.be.placement("berth-bad-update").CgroupPath, "pids.max"))
	if strings.TrimSpace(string(data)) != "10" {
		t.Errorf("pids.max after a refused update = %q, want 10", data)
	}
	// A kernel refusal during create (a cpuset naming no memory node)
	// leaves no partial cgroup.
	_, err = c.CreateGroup(ctx, "berth-bad-kernel", resources.Limits{CPUSetMems: "7"})
	if err == nil {
		t.Errorf("CreateGroup with CPUSetMems 7 on a host without node 7 succeeded")
	}
	for _, n := range c.be.(*v1Backend).present {
		if _, err := os.Stat(c.be.(*v1Backend).dir(n, "berth-bad-kernel")); err == nil {
			t.Errorf("failed CreateGroup left %s", c.be.(*v1Backend).dir(n, "berth-bad-kernel"))
		}
	}
}
