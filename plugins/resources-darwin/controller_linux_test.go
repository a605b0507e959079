package main

// The darwin plugin on Linux: the same controller, engine and wrapper, with
// the /proc source instead of proc_pid_rusage. Enforcement itself is tested
// in internal/rpolicy; these tests check the contract (conformance in
// process, over gRPC and as a plugin process) and the wrapper.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/resources/conformance"
	"github.com/berth-dev/berth/sdk/schema"
)

var config = schema.Config{JSON: []byte(`{"sample_interval":"100ms","cpu_tick":"50ms"}`)}

func configured(t *testing.T) (*controller, plugin.ConfigureRequest) {
	t.Helper()
	req := plugin.ConfigureRequest{Config: config, APIVersion: plugin.APIVersion, StateDir: t.TempDir()}
	c := New(hclog.NewNullLogger())
	t.Cleanup(c.Close)
	if err := c.Configure(context.Background(), req); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return c, req
}

func TestConformance(t *testing.T) {
	c, req := configured(t)
	conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{Capabilities: capabilities, Reconfigure: &req})
}

func TestConformanceFreshControllers(t *testing.T) {
	conformance.Run(t, func(t *testing.T) resources.Controller {
		c, _ := configured(t)
		return c
	}, conformance.Options{Capabilities: capabilities})
}

func TestConformanceOverGRPC(t *testing.T) {
	c, req := configured(t)
	conformance.RunOverGRPC(t, c, conformance.Options{Capabilities: capabilities, Reconfigure: &req})
}

// build builds this plugin for the host.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "resources-darwin")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", bin, "github.com/berth-dev/berth/plugins/resources-darwin").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestConformancePluginProcess(t *testing.T) {
	c, _ := conformance.Launch(t, build(t))
	req := plugin.ConfigureRequest{Config: config, APIVersion: plugin.APIVersion, StateDir: t.TempDir()}
	if err := c.Configure(context.Background(), req); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{Capabilities: capabilities, Reconfigure: &req})
}

// TestRestartKeepsGroups checks that a new controller over the same state
// dir knows the groups, their marks and their processes.
func TestRestartKeepsGroups(t *testing.T) {
	c, req := configured(t)
	ctx := context.Background()
	if _, err := c.CreateGroup(ctx, "g", resources.Limits{CPUs: 0.5, MemoryBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	pid := conformance.SpawnCommand(t, "sleep", "60")
	if err := c.Attach(ctx, "g", pid); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPaused(ctx, "g", true); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2 := New(hclog.NewNullLogger())
	t.Cleanup(c2.Close)
	if err := c2.Configure(ctx, req); err != nil {
		t.Fatal(err)
	}
	groups, err := c2.List(ctx)
	if err != nil || len(groups) != 1 {
		t.Fatalf("List after restart = %+v, %v", groups, err)
	}
	g := groups[0]
	if g.ID != "g" || !g.Paused || g.Limits.CPUs != 0.5 || len(g.Pids) != 1 || g.Pids[0] != pid {
		t.Errorf("after restart group = %+v, want g paused with cpus 0.5 and pid %d", g, pid)
	}
}

func TestPlacementIsWrapper(t *testing.T) {
	c := New(hclog.NewNullLogger())
	t.Cleanup(c.Close)
	req := plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(`{"rlimit_nofile":1024,"rlimit_fsize":0,"rlimit_cpu":0}`)}, StateDir: t.TempDir()}
	if err := c.Configure(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	p, err := c.CreateGroup(context.Background(), "low", resources.Limits{CPUShares: 256})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	want := []string{exe, "wrap", "-group", "low", "-rlimit-nofile", "1024", "-nice", "6", "-background", "-io-throttle", "--"}
	if strings.Join(p.Wrapper, " ") != strings.Join(want, " ") {
		t.Errorf("Wrapper = %q, want %q", p.Wrapper, want)
	}
	if p.CgroupPath != "" {
		t.Errorf("CgroupPath = %q, want none", p.CgroupPath)
	}
}

// TestWrapperAppliesPolicy runs the wrapper as a placement would and looks
// at the workload it execs.
func TestWrapperAppliesPolicy(t *testing.T) {
	bin := build(t)
	out, err := exec.Command(bin, "wrap", "-group", "w", "-nice", "5", "-io-throttle", "-rlimit-nofile", "64", "-rlimit-fsize", "1048576",
		"--", "sh", "-c", `echo "$(ulimit -n) $(ulimit -f) $$"; cat /proc/$$/stat`).CombinedOutput()
	if err != nil {
		t.Fatalf("wrap: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("wrap printed %q", out)
	}
	var nofile, fsizeBlocks, pid int
	if _, err := fmt.Sscan(lines[0], &nofile, &fsizeBlocks, &pid); err != nil {
		t.Fatalf("parse %q: %v", lines[0], err)
	}
	if nofile != 64 || fsizeBlocks != 1048576/512 && fsizeBlocks != 1048576/1024 {
		t.Errorf("workload has nofile %d, fsize %d blocks; want 64 and 1 MiB", nofile, fsizeBlocks)
	}
	f := strings.Fields(lines[1][strings.LastIndexByte(lines[1], ')')+2:])
	pgid, _ := strconv.Atoi(f[2])
	nice, _ := strconv.Atoi(f[16])
	if pgid != pid || nice != 5 {
		t.Errorf("workload pid %d has pgid %d and nice %d; want its own process group and nice 5", pid, pgid, nice)
	}
	// The background flag wins over nice.
	out, err = exec.Command(bin, "wrap", "-background", "--", "sh", "-c", `cat /proc/$$/stat`).CombinedOutput()
	if err != nil {
		t.Fatalf("wrap -background: %v\n%s", err, out)
	}
	s := string(out)
	if f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]); f[16] != "19" {
		t.Errorf("wrap -background: nice %s, want 19", f[16])
	}
	// Bad use fails before anything runs, with a message.
	for _, args := range [][]string{{"wrap"}, {"wrap", "-nice", "40", "--", "true"}, {"wrap", "--", "/nonexistent/berth"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "wrap") {
			t.Errorf("%q: %v, %q; want a failure that says what was wrong", args, err, out)
		}
	}
}

func TestUnsupportedLimitsRefused(t *testing.T) {
	c, _ := configured(t)
	for _, l := range []resources.Limits{{Pids: 10}, {IOReadBPS: 1}, {CPUSetCPUs: "0"}, {Devices: resources.DefaultDeviceRules()}} {
		if _, err := c.CreateGroup(context.Background(), "x", l); err == nil || !strings.Contains(err.Error(), "cannot enforce") {
			t.Errorf("CreateGroup(%+v) = %v, want NotImplemented", l, err)
		}
	}
}

// TestCrossBuildsForDarwin builds the plugin for darwin/arm64 without cgo,
// as it ships: purego reaches libSystem through its fake cgo runtime.
// (make check-darwin type-checks it but does not cross-build it, because
// purego's cgo build imports runtime/cgo.)
func TestCrossBuildsForDarwin(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-build skipped in -short mode")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-o", filepath.Join(t.TempDir(), "resources-darwin"), "github.com/berth-dev/berth/plugins/resources-darwin")
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
}
