package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/resources/conformance"
	"github.com/berth-dev/berth/sdk/schema"
)

func requiresProcfs(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("resources-procfs reads /proc, which %s does not have", runtime.GOOS)
	}
}

// configured returns a controller configured with req, closed when t ends.
func configured(t *testing.T, req plugin.ConfigureRequest) *controller {
	t.Helper()
	c := New(hclog.NewNullLogger())
	t.Cleanup(c.Close)
	if err := c.Configure(context.Background(), req); err != nil {
		t.Fatalf("Configure(%+v): %v", req, err)
	}
	return c
}

func config(t *testing.T, procRoot, interval string) schema.Config {
	t.Helper()
	return schema.Config{JSON: fmt.Appendf(nil, `{"proc_root":%q,"sample_interval":%q}`, procRoot, interval)}
}

func TestConformance(t *testing.T) {
	requiresProcfs(t)
	req := plugin.ConfigureRequest{Config: config(t, "/proc", "100ms"), APIVersion: plugin.APIVersion, StateDir: t.TempDir()}
	c := configured(t, req)
	conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{
		Capabilities: []string{resources.CapUsage},
		Reconfigure:  &req,
	})
}

func TestConformanceFreshControllers(t *testing.T) {
	requiresProcfs(t)
	// No Reconfigure: each subtest gets its own controller and state dir,
	// configured with the defaults (an empty config).
	conformance.Run(t, func(t *testing.T) resources.Controller {
		return configured(t, plugin.ConfigureRequest{StateDir: t.TempDir()})
	}, conformance.Options{Capabilities: []string{resources.CapUsage}})
}

func TestConformanceOverGRPC(t *testing.T) {
	requiresProcfs(t)
	req := plugin.ConfigureRequest{Config: config(t, "/proc", "100ms"), APIVersion: plugin.APIVersion, StateDir: t.TempDir()}
	c := configured(t, req)
	conformance.RunOverGRPC(t, c, conformance.Options{
		Capabilities: []string{resources.CapUsage},
		Reconfigure:  &req,
	})
}

func TestConfigSchemaDefaults(t *testing.T) {
	if err := configSchema.Validate(); err != nil {
		t.Fatalf("schema: %v", err)
	}
	c := New(hclog.NewNullLogger())
	defer c.Close()
	for _, tc := range []struct {
		name, json, wantErr string
	}{
		{"bad interval", `{"proc_root":"/proc","sample_interval":"often"}`, "sample_interval"},
		{"zero interval", `{"proc_root":"/proc","sample_interval":"0s"}`, "sample_interval"},
		{"missing proc root", `{"proc_root":"/nonexistent-proc","sample_interval":"1s"}`, "proc_root"},
		{"unknown key", `{"proc_root":"/proc","sample_interval":"1s","bogus":1}`, "bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Configure(context.Background(), plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(tc.json)}})
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Configure(%s) = %v, want an invalid argument naming %q", tc.json, err, tc.wantErr)
			}
		})
	}
}

func TestNotConfigured(t *testing.T) {
	c := New(hclog.NewNullLogger())
	defer c.Close()
	if _, err := c.CreateGroup(context.Background(), "a", resources.Limits{}); !errdefs.IsInvalidState(err) {
		t.Errorf("CreateGroup before Configure = %v, want invalid state", err)
	}
}

func TestLimitsAreRefusedByName(t *testing.T) {
	requiresProcfs(t)
	c := configured(t, plugin.ConfigureRequest{StateDir: t.TempDir()})
	ctx := context.Background()
	if _, err := c.CreateGroup(ctx, "plain", resources.Limits{IODevice: "/var/lib/berth"}); err != nil {
		t.Fatalf("CreateGroup with only IODevice (no bandwidth limit): %v", err)
	}
	for field, l := range map[string]resources.Limits{
		"CPUShares":       {CPUShares: 1024},
		"CPUs":            {CPUs: 1.5},
		"CPUSetCPUs":      {CPUSetCPUs: "0-1"},
		"CPUSetMems":      {CPUSetMems: "0"},
		"MemoryBytes":     {MemoryBytes: 1 << 30},
		"MemorySoftBytes": {MemorySoftBytes: 1 << 29},
		"SwapBytes":       {SwapBytes: -1},
		"IOReadBPS":       {IOReadBPS: 1 << 20},
		"IOWriteBPS":      {IOWriteBPS: 1 << 20},
		"Pids":            {Pids: 64},
		"Devices":         {Devices: resources.DefaultDeviceRules()},
	} {
		_, err := c.CreateGroup(ctx, "g-"+field, l)
		if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), field) {
			t.Errorf("CreateGroup with %s = %v, want not implemented naming %s", field, err, field)
		}
		if err := c.Update(ctx, "plain", l); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), field) {
			t.Errorf("Update with %s = %v, want not implemented naming %s", field, err, field)
		}
	}
	groups, _ := c.List(ctx)
	if len(groups) != 1 {
		t.Errorf("refused groups were created: %+v", groups)
	}
}

// TestRestartKeepsGroups checks that a second controller on the same state
// dir (the plugin after a restart) sees the groups and processes of the
// first.
func TestRestartKeepsGroups(t *testing.T) {
	requiresProcfs(t)
	ctx := context.Background()
	dir := t.TempDir()
	first := configured(t, plugin.ConfigureRequest{StateDir: dir})
	pid := conformance.SpawnCommand(t, "sleep", "3600")
	if _, err := first.CreateGroup(ctx, "web", resources.Limits{}); err != nil {
		t.Fatal(err)
	}
	if err := first.Attach(ctx, "web", pid); err != nil {
		t.Fatal(err)
	}
	if err := first.SetPaused(ctx, "web", true); err != nil {
		t.Fatal(err)
	}
	first.Close()

	second := configured(t, plugin.ConfigureRequest{StateDir: dir})
	groups, err := second.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].ID != "web" || !groups[0].Paused || !slices.Equal(groups[0].Pids, []int{pid}) {
		t.Fatalf("after restart List = %+v, want web, paused, pids [%d]", groups, pid)
	}
	if _, err := second.CreateGroup(ctx, "web", resources.Limits{}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("CreateGroup(web) after restart = %v, want already exists", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != stateFile {
			t.Errorf("state dir holds %s besides %s (a temporary file left behind?)", e.Name(), stateFile)
		}
	}
}

func TestCorruptStateIsReported(t *testing.T) {
	requiresProcfs(t)
	dir := t.TempDir()
	path := filepath.Join(dir, stateFile)
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := New(hclog.NewNullLogger())
	defer c.Close()
	err := c.Configure(context.Background(), plugin.ConfigureRequest{StateDir: dir})
	if !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), path) {
		t.Errorf("Configure with a corrupt %s = %v, want invalid state naming the file", path, err)
	}
}

// fakeProc is a proc_root the test writes process files into.
type fakeProc struct {
	t    *testing.T
	root string
}

func (f fakeProc) set(pid int, start, utime, stime, residentPages uint64, state string) {
	f.t.Helper()
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	// Fields 3..22 and a few more; the command name has spaces and
	// parentheses, as a real one may.
	stat := fmt.Sprintf("%d (evil) (name) %s 1 %d %d 0 -1 4194304 100 0 0 0 %d %d 0 0 20 0 1 0 %d 1000 %d 18446744073709551615\n",
		pid, state, pid, pid, utime, stime, start, residentPages)
	statm := fmt.Sprintf("1000 %d 50 10 0 100 0\n", residentPages)
	for name, text := range map[string]string{"stat": stat, "statm": statm} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f fakeProc) remove(pid int) {
	if err := os.RemoveAll(filepath.Join(f.root, fmt.Sprint(pid))); err != nil {
		f.t.Fatal(err)
	}
}

// TestUsageFromFakeProc drives the accounting through a fake proc_root:
// CPU time counts from attach, RSS and pids of live processes, and a
// process that exits (or whose pid is reused) keeps its CPU time and
// contributes nothing else.
func TestUsageFromFakeProc(t *testing.T) {
	f := fakeProc{t: t, root: t.TempDir()}
	// A long interval: the shared sampler stays out of the way and Usage
	// samples on the spot.
	c := configured(t, plugin.ConfigureRequest{Config: config(t, f.root, "1h"), StateDir: t.TempDir()})
	ctx := context.Background()
	page := uint64(os.Getpagesize())

	f.set(100, 5000, 30, 10, 25, "S") // 40 ticks used before attach
	f.set(200, 6000, 0, 0, 10, "R")
	if _, err := c.CreateGroup(ctx, "g", resources.Limits{}); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{100, 200} {
		if err := c.Attach(ctx, "g", pid); err != nil {
			t.Fatalf("Attach %d: %v", pid, err)
		}
	}
	if err := c.Attach(ctx, "g", 999); !errdefs.IsNotFound(err) {
		t.Errorf("Attach of a pid with no /proc entry = %v, want not found", err)
	}

	usage := func() resources.Usage {
		t.Helper()
		u, err := c.Usage(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	steps := []struct {
		name    string
		change  func()
		cpu     uint64 // ticks
		mem     uint64 // pages
		pids    uint64
		peakMem uint64 // pages
	}{
		{"attached", func() {}, 0, 35, 2, 35},
		{"both run", func() { f.set(100, 5000, 50, 20, 30, "S"); f.set(200, 6000, 7, 3, 10, "R") }, 30 + 10, 40, 2, 40},
		{"200 is a zombie", func() { f.set(200, 6000, 9, 3, 0, "Z") }, 30 + 12, 30, 1, 40},
		{"200 reaped", func() { f.remove(200) }, 30 + 12, 30, 1, 40},
		{"100's pid reused", func() { f.set(100, 9999, 500, 500, 99, "R") }, 30 + 12, 0, 0, 40},
	}
	for _, s := range steps {
		s.change()
		u := usage()
		if u.CPUUsageNanos != s.cpu*nanosPerTick || u.MemoryBytes != s.mem*page || u.Pids != s.pids || u.MemoryPeakBytes != s.peakMem*page {
			t.Errorf("%s: usage = cpu %dns, mem %d, pids %d, peak %d; want cpu %dns, mem %d, pids %d, peak %d",
				s.name, u.CPUUsageNanos, u.MemoryBytes, u.Pids, u.MemoryPeakBytes,
				s.cpu*nanosPerTick, s.mem*page, s.pids, s.peakMem*page)
		}
	}
	groups, _ := c.List(ctx)
	if len(groups) != 1 || len(groups[0].Pids) != 0 {
		t.Errorf("List after every process left = %+v, want g with no pids", groups)
	}
}

func TestAttachMovesProcess(t *testing.T) {
	f := fakeProc{t: t, root: t.TempDir()}
	c := configured(t, plugin.ConfigureRequest{Config: config(t, f.root, "1h")})
	ctx := context.Background()
	f.set(7, 1, 0, 0, 1, "S")
	for _, id := range []string{"a", "b"} {
		if _, err := c.CreateGroup(ctx, id, resources.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Attach(ctx, "a", 7); err != nil {
		t.Fatal(err)
	}
	f.set(7, 1, 10, 0, 1, "S")
	if err := c.Attach(ctx, "b", 7); err != nil {
		t.Fatal(err)
	}
	f.set(7, 1, 15, 0, 1, "S")
	ua, _ := c.Usage(ctx, "a")
	ub, _ := c.Usage(ctx, "b")
	if ua.CPUUsageNanos != 10*nanosPerTick || ua.Pids != 0 || ub.CPUUsageNanos != 5*nanosPerTick || ub.Pids != 1 {
		t.Errorf("after moving pid 7 from a to b: a = %+v, b = %+v; want a 10 ticks 0 pids, b 5 ticks 1 pid", ua, ub)
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       procStat
		wantErr    bool
	}{
		{"plain", "42 (sleep) S 1 42 42 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 777 100 5 0", procStat{StartTicks: 777, CPUTicks: 7}, false},
		{"odd name", "42 (a) b (c)) R 1 42 42 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 777 100 5 0", procStat{StartTicks: 777, CPUTicks: 7}, false},
		{"zombie", "42 (x) Z 1 42 42 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 0 0", procStat{StartTicks: 9, CPUTicks: 2, Zombie: true}, false},
		{"short", "42 (x) S 1 2 3", procStat{}, true},
		{"no name", "garbage", procStat{}, true},
		{"bad number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 x 4 0 0 20 0 1 0 777 100 5 0", procStat{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.text))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseStat(%q) = %+v, %v; want %+v, error %v", tc.text, got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := parseStatm([]byte("1")); err == nil {
		t.Error("parseStatm of one field: no error")
	}
	if _, err := readStat(t.TempDir(), 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readStat of a missing pid = %v, want ErrNotExist", err)
	}
}
