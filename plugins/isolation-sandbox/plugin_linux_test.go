package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/procwait"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/spec"
)

// These tests run real containers as root: the isolation conformance suite
// in process and over gRPC against the plugin launched by the core's plugin
// host, a kill -9 of that plugin while a task runs, and leak checks after
// every delete.

var (
	binDir   string // the plugin and berth-sandbox-init, side by side
	lowerDir string // the demo image's rootfs
	setupErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-test-isb")
	if err != nil {
		panic(err)
	}
	if os.Geteuid() == 0 {
		binDir = filepath.Join(dir, "bin")
		lowerDir = filepath.Join(dir, "rootfs")
		setupErr = os.MkdirAll(binDir, 0o755)
		if setupErr == nil {
			_, setupErr = sandboxtest.BuildInit(binDir)
		}
		if setupErr == nil {
			_, setupErr = sandboxtest.BuildPackage(binDir, "isolation-sandbox", "github.com/berth-dev/berth/plugins/isolation-sandbox")
		}
		if setupErr == nil {
			// The demo image's root filesystem (busybox and /hello).
			out, err := exec.Command("../../scripts/demo-image.sh", "--rootfs", lowerDir).CombinedOutput()
			if err != nil {
				setupErr = fmt.Errorf("scripts/demo-image.sh --rootfs: %v\n%s", err, out)
			}
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func requireSetup(t *testing.T) {
	t.Helper()
	sandboxtest.RequireRoot(t)
	if setupErr != nil {
		t.Fatalf("test setup: %v", setupErr)
	}
}

// newSpec is the suite's NewSpec: the demo image on an overlay, Docker's
// defaults.
func newSpec(t *testing.T, id string, o conformance.SpecOptions) isolation.Spec {
	t.Helper()
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: o.Args},
		lifecycle.Config{Tty: o.TTY, OpenStdin: o.Stdin}, spec.Extra{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	is := isolation.Spec{ID: id, OCI: s, LogPath: o.LogPath, Annotations: map[string]string{},
		Rootfs: []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + lowerDir, "upperdir=" + filepath.Join(dir, "upper"), "workdir=" + filepath.Join(dir, "work")}}}}
	if o.Stdin {
		is.Annotations[isolation.AnnotationOpenStdin] = "open"
	}
	return is
}

var wantCaps = []string{isolation.CapRootfsOverlay, isolation.CapRootfsBind, isolation.CapExec, isolation.CapTTY,
	isolation.CapPause, isolation.CapRecover, isolation.CapSeccomp, isolation.CapNetwork, isolation.CapNetworkConnect}

// noLeaks asserts that nothing of the plugin's tasks is left: no task
// dirs, sockets, supervisor processes, berth cgroups of ours, or mounts.
func noLeaks(t *testing.T, stateDir, runtimeDir string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(stateDir, "tasks"))
	if len(entries) > 0 {
		t.Errorf("task dirs left: %v", entries)
	}
	socks, _ := filepath.Glob(filepath.Join(runtimeDir, "*.sock"))
	if len(socks) > 0 {
		t.Errorf("sockets left: %v", socks)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), stateDir) {
		t.Errorf("mounts left under %s", stateDir)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "supervise") && strings.Contains(string(b), stateDir) {
			t.Errorf("supervisor left running: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/berth-sandbox/conf-*")
	cgs2, _ := filepath.Glob("/sys/fs/cgroup/*/*/*/berth-sandbox/conf-*")
	if len(cgs)+len(cgs2) > 0 {
		t.Errorf("cgroups left: %v %v", cgs, cgs2)
	}
}

func shortDirs(t *testing.T) (string, string) {
	dir, err := os.MkdirTemp("", "berth-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "state"), filepath.Join(dir, "run")
}

func TestConformanceInProcess(t *testing.T) {
	requireSetup(t)
	stateDir, runDir := shortDirs(t)
	initPath := filepath.Join(binDir, "berth-sandbox-init")
	configure := func(t *testing.T) *runtime {
		rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
		cfg := schema.Config{JSON: []byte(`{"init_path":"` + initPath + `"}`)}
		if err := rt.Configure(context.Background(), plugin.ConfigureRequest{Config: cfg, StateDir: stateDir, RuntimeDir: runDir}); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rt := configure(t)
	conformance.Run(t, func(*testing.T) isolation.Runtime { return rt }, conformance.Options{
		NewSpec: newSpec, Capabilities: wantCaps,
		// In process, a restart is a new runtime over the same dirs.
		Restart: func(t *testing.T) isolation.Runtime { return configure(t) },
	})
	noLeaks(t, stateDir, runDir)
}

func TestCheckpointReportsCRIUReason(t *testing.T) {
	rt := newRuntime(hclog.NewNullLogger())
	reason := rt.checkpointUnavailable()
	info, _ := rt.Info(context.Background())
	has := false
	for _, c := range info.Capabilities {
		has = has || c == isolation.CapCheckpoint
	}
	if reason != "" {
		if has {
			t.Errorf("checkpoint declared though %s", reason)
		}
		err := rt.Checkpoint(context.Background(), "x", isolation.CheckpointOptions{})
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("Checkpoint error %v does not carry the reason %q", err, reason)
		}
		t.Logf("checkpoint unavailable: %s", reason)
	}
}

// TestConformanceOverGRPC runs the suite against the plugin binary
// launched and supervised by core/host, and kills it with SIGKILL for the
// recover test: the host relaunches it, and the task must have kept running.
func TestConformanceOverGRPC(t *testing.T) {
	requireSetup(t)
	stateDir, runDir := shortDirs(t)
	h := host.New(host.Options{Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}), LogLevel: "info",
		StateDir: stateDir, RuntimeDir: runDir, RestartBackoff: 100 * time.Millisecond})
	hs := host.Spec{Layer: plugin.LayerIsolation, Name: "sandbox", Path: filepath.Join(binDir, "isolation-sandbox"), Default: true}
	if err := h.Start(context.Background(), []host.Spec{hs}); err != nil {
		t.Fatalf("host.Start: %v", err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.Stop(c)
	}()
	client := func(t *testing.T) isolation.Runtime {
		pc, err := h.Client(plugin.LayerIsolation, "sandbox")
		if err != nil {
			t.Fatal(err)
		}
		return pc.(isolation.Runtime)
	}
	pluginPid := func() int { return h.Plugins()[0].Pid }
	conformance.Run(t, client, conformance.Options{
		NewSpec: newSpec, Capabilities: wantCaps,
		Restart: func(t *testing.T) isolation.Runtime {
			old := pluginPid()
			if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				p := h.Plugins()[0]
				if p.Pid > 0 && p.Pid != old && p.Health == "healthy" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("plugin not relaunched 60s after kill -9: %+v", p)
				}
				time.Sleep(50 * time.Millisecond)
			}
			return client(t)
		},
	})
	noLeaks(t, filepath.Join(stateDir, "plugins", "isolation-sandbox"), filepath.Join(runDir, "isolation-sandbox"))
}

// TestSupervisorKilled: when a supervisor dies (kill -9), the task reads
// as stopped with an unknown exit, and Delete still removes everything it
// held — the orphaned container processes included.
func TestSupervisorKilled(t *testing.T) {
	requireSetup(t)
	stateDir, runDir := shortDirs(t)
	rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	cfg := schema.Config{JSON: []byte(`{"init_path":"` + filepath.Join(binDir, "berth-sandbox-init") + `"}`)}
	ctx := context.Background()
	if err := rt.Configure(ctx, plugin.ConfigureRequest{Config: cfg, StateDir: stateDir, RuntimeDir: runDir}); err != nil {
		t.Fatal(err)
	}
	id := "conf-killed"
	if _, err := rt.Create(ctx, newSpec(t, id, conformance.SpecOptions{Args: []string{"sleep", "1000"}})); err != nil {
		t.Fatal(err)
	}
	pid, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var st supervisor.State
	if err := atomicfile.ReadJSON(filepath.Join(stateDir, "tasks", id, supervisor.StateFile), &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.SupervisorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procwait.Gone(st.SupervisorPid, 30*time.Second)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the container died with its supervisor: %v", err)
	}
	tasks, err := rt.List(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].Status != isolation.StatusStopped || tasks[0].Exit == nil || tasks[0].Exit.Code != 255 {
		t.Errorf("List after the supervisor died = %+v, %v; want it stopped with exit 255 (unknown)", tasks, err)
	}
	if _, err := rt.Wait(ctx, id, ""); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Wait: %v, want ErrUnavailable (the exit status died with the supervisor)", err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			break // killed; a zombie until its new parent reaps it
		}
		if time.Now().After(deadline) {
			t.Fatalf("container process %d still alive after Delete", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	noLeaks(t, stateDir, runDir)
}

// TestPlacementAndOOM runs a task in a cgroup made beforehand (as the
// resources layer would) with a 32 MiB memory limit: the init joins it,
// and a task that allocates past it is reported OOM-killed, with an oom
// event before its exit event.
func TestPlacementAndOOM(t *testing.T) {
	requireSetup(t)
	stateDir, runDir := shortDirs(t)
	rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	cfg := schema.Config{JSON: []byte(`{"init_path":"` + filepath.Join(binDir, "berth-sandbox-init") + `"}`)}
	ctx := context.Background()
	if err := rt.Configure(ctx, plugin.ConfigureRequest{Config: cfg, StateDir: stateDir, RuntimeDir: runDir}); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("berth-test-oom-%d", os.Getpid())
	cg, err := sandbox.OpenCgroup(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cg.Remove(); err != nil {
			t.Errorf("remove the test's cgroup: %v", err)
		}
	}()
	mem, ok := cg.V1["memory"]
	if !ok {
		t.Skip("no cgroup v1 memory hierarchy here")
	}
	if err := os.WriteFile(filepath.Join(mem, "memory.limit_in_bytes"), []byte("33554432"), 0); err != nil {
		t.Fatal(err)
	}
	events, err := rt.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := "conf-oom"
	// tail of /dev/zero keeps its one endless line in memory.
	spec := newSpec(t, id, conformance.SpecOptions{Args: []string{"tail", "/dev/zero"}})
	spec.Placement.CgroupPath = path
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = rt.Delete(ctx, id) }()
	pid, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	procs, _ := os.ReadFile(filepath.Join(mem, "cgroup.procs"))
	if !strings.Contains(string(procs), fmt.Sprint(pid)) {
		t.Errorf("init %d is not in the placement's cgroup %s (procs %q)", pid, mem, procs)
	}
	e, err := rt.Wait(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if !e.OOMKilled || e.Signal != syscall.SIGKILL {
		oc, _ := os.ReadFile(filepath.Join(mem, "memory.oom_control"))
		t.Errorf("exit %+v, want OOM-killed by SIGKILL; memory.oom_control:\n%s", e, oc)
	}
	deadline := time.After(30 * time.Second)
	sawOOM := false
	for {
		select {
		case e := <-events:
			if e.ID != id {
				continue
			}
			switch e.Kind {
			case isolation.EventOOM:
				sawOOM = true
			case isolation.EventExit:
				if !sawOOM {
					t.Error("exit event without an oom event before it")
				}
				return
			}
		case <-deadline:
			t.Fatal("no exit event within 30s")
		}
	}
}
