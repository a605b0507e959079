package cgroupctl

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/rpolicy"
	"github.com/berth-dev/berth/sdk/resources"
)

// TestV2ResourcesMapping checks how Limits become unified-hierarchy
// values; the files themselves are written on pure v2 hosts
// (TestV2Conformance in the VM guest).
func TestV2ResourcesMapping(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "berth"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "berth", "memory.swap.max"), []byte("max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &v2Backend{log: hclog.NewNullLogger(), root: root, parent: "berth", controllers: v2Controllers, ioDir: t.TempDir()}
	res, err := b.resources(resources.Limits{CPUShares: 1024, CPUs: 1.5, CPUSetCPUs: "0", MemoryBytes: 256 << 20, MemorySoftBytes: 128 << 20, Pids: 64}, resources.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if *res.CPU.Weight != cgroup2.ConvertCPUSharesToCgroupV2Value(1024) || res.CPU.Max != "150000 100000" || res.CPU.Cpus != "0" {
		t.Errorf("CPU = weight %d max %q cpus %q", *res.CPU.Weight, res.CPU.Max, res.CPU.Cpus)
	}
	if *res.Memory.Max != 256<<20 || *res.Memory.High != 128<<20 || *res.Memory.Swap != 256<<20 {
		t.Errorf("Memory = max %d high %d swap %d; want 256 MiB, soft limit as memory.high 128 MiB, swap as much as memory", *res.Memory.Max, *res.Memory.High, *res.Memory.Swap)
	}
	if res.Pids.Max != 64 {
		t.Errorf("Pids.Max = %d", res.Pids.Max)
	}
	// No limits: every value is the kernel's "no limit".
	res, err = b.resources(resources.Limits{}, resources.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if *res.CPU.Weight != 100 || res.CPU.Max != "max 100000" || *res.Memory.Max != math.MaxInt64 || *res.Memory.High != math.MaxInt64 || res.Pids.Max != -1 || res.IO != nil || res.Devices != nil {
		t.Errorf("no limits gave %+v %+v %+v %+v", res.CPU, res.Memory, res.Pids, res.IO)
	}
	// An IO limit on the disk of ioDir, lifted again by an update.
	withIO := resources.Limits{IOReadBPS: 1 << 20}
	res, err = b.resources(withIO, resources.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IO.Max) != 2 || res.IO.Max[0].Rate != 1<<20 || res.IO.Max[1].Rate != math.MaxUint64 {
		t.Errorf("IO = %+v, want rbps 1 MiB and wbps max", res.IO.Max)
	}
	res, err = b.resources(resources.Limits{}, withIO)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IO.Max) != 2 || res.IO.Max[0].Rate != math.MaxUint64 || res.IO.Max[1].Rate != math.MaxUint64 {
		t.Errorf("lifting IO = %+v, want both rates max", res.IO.Max)
	}
	// Device rules become an eBPF program at create; changing them later
	// is refused rather than silently stacked.
	res, _ = b.resources(resources.Limits{Devices: resources.DefaultDeviceRules()}, resources.Limits{})
	if len(res.Devices) != len(resources.DefaultDeviceRules()) {
		t.Errorf("Devices = %d rules", len(res.Devices))
	}
	if _, _, err := cgroup2.DeviceFilter(res.Devices); err != nil {
		t.Errorf("the default rules do not compile to a device filter: %v", err)
	}
	if err := b.update("x", resources.Limits{Devices: resources.DefaultDeviceRules()}, resources.Limits{}); err == nil {
		t.Error("changing device rules on v2 was accepted")
	}
}

// fakeV2 is a v2-shaped backend whose memory.events is a plain file the
// test writes, so the monitor's inotify path runs on hosts without v2
// controllers. Everything else is unused by the monitor.
type fakeV2 struct {
	backend
	file  string
	high  atomic.Uint64
	kills atomic.Uint64
}

func (f *fakeV2) memoryEventsFile(string) string { return f.file }
func (f *fakeV2) memoryEvents(string) (memoryCounters, error) {
	return memoryCounters{OOMKills: f.kills.Load(), High: f.high.Load(), Usage: 1}, nil
}
func (f *fakeV2) throttling(string) (uint64, uint64, error) { return 0, 0, nil }
func (f *fakeV2) pidsRefused(string) (uint64, error)        { return 0, nil }

func TestMonitorWatchesMemoryEventsFile(t *testing.T) {
	f := &fakeV2{file: filepath.Join(t.TempDir(), "memory.events")}
	if err := os.WriteFile(f.file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	br := rpolicy.NewBroker(hclog.NewNullLogger())
	events := br.Subscribe(t.Context())
	m, err := newMonitor(f, br, time.Hour, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	if err := m.watch("g", resources.Limits{MemoryBytes: 64 << 20, MemorySoftBytes: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	touch := func() {
		if err := os.WriteFile(f.file, []byte("high 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.high.Store(3)
	touch()
	ev := waitEvent(t, events, waitFor, "memory_pressure from memory.events", func(ev resources.LimitEvent) bool { return ev.Kind == resources.EventMemoryPressure })
	if ev.GroupID != "g" || ev.Count != 3 {
		t.Errorf("event %+v, want group g count 3", ev)
	}
	f.kills.Store(1)
	touch()
	ev = waitEvent(t, events, waitFor, "oom_kill from memory.events", func(ev resources.LimitEvent) bool { return ev.Kind == resources.EventOOMKill })
	if ev.GroupID != "g" || ev.Count != 1 {
		t.Errorf("event %+v, want group g count 1", ev)
	}
	// Unwatched, a change is not reported.
	m.unwatch("g")
	f.kills.Store(2)
	touch()
	select {
	case ev := <-events:
		t.Errorf("event after unwatch: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestV2DeviceRulesEBPF runs the v2 device path for real where it can: an
// eBPF device program attached to a group in the unified hierarchy is
// enforced on a hybrid host too (device programs need no v2 controller).
func TestV2DeviceRulesEBPF(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			t.Skip("no cgroup v2 mount")
		}
	}
	c, _ := newTestController(t, `,"mode":"v2"`)
	ctx := t.Context()
	loop := loopDevice(t, 8<<20)
	maj, mnr, err := blockDevice(loop)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	probe := func(id string, rules []resources.DeviceRule) string {
		t.Helper()
		if _, err := c.CreateGroup(ctx, id, resources.Limits{Devices: rules}); err != nil {
			t.Fatalf("CreateGroup(%s): %v", id, err)
		}
		node := filepath.Join(dir, id)
		w := startWorkload(t, c, id, "sh", "mknod "+node+" b "+itoa(maj)+" "+itoa(mnr)+" || { echo mknod-failed; exit 0; }; if head -c 512 "+node+" >/dev/null 2>&1; then echo opened; else echo denied; fi")
		return w.readLine(t, waitFor)
	}
	if got := probe("berth-v2dev-none", nil); got != "opened" {
		t.Fatalf("without rules the probe of %d:%d said %q, want opened", maj, mnr, got)
	}
	if got := probe("berth-v2dev-default", resources.DefaultDeviceRules()); got != "denied" {
		t.Errorf("with the default rules as an eBPF program the probe of %d:%d said %q, want denied", maj, mnr, got)
	}
	if got := probe("berth-v2dev-allow", append(resources.DefaultDeviceRules(), resources.DeviceRule{Allow: true, Type: "b", Major: maj, Minor: mnr, Access: "rw"})); got != "opened" {
		t.Errorf("with the loop disk allowed the probe said %q, want opened", got)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
