package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/internal/procwait"
	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/spec"
)

// These tests boot real VMs (qemu; TCG here) as root: the plugin binary,
// the guest agent and the static sandbox init are built, a Debian kernel is
// installed into a kernel store (the cached .deb), and the demo image's
// rootfs becomes an ext4 image each task gets a copy of. VM tests skip
// without qemu or the kernel package; CI has both.

var (
	testDir   string // everything the tests make
	binDir    string // isolation-vm, berth-vm-agent, berth-sandbox-init
	coreState string // a core state dir the plugins' state dirs go under
	baseImage string // the demo rootfs as an ext4 image
	setupErr  error
	skipWhy   string

	kernelOnce sync.Once
	kernel     *vmkernel.Kernel // the machine-wide cached test kernel
)

func TestMain(m *testing.M) {
	var err error
	testDir, err = os.MkdirTemp("", "berth-vmt")
	if err != nil {
		panic(err)
	}
	switch {
	case os.Geteuid() != 0:
		skipWhy = "needs root"
	case !have("qemu-system-x86_64"):
		skipWhy = "qemu-system-x86_64 not installed (scripts/install-deps.sh)"
	default:
		setupErr = setup()
	}
	code := m.Run()
	_ = os.RemoveAll(testDir)
	os.Exit(code)
}

func have(bin string) bool { _, err := exec.LookPath(bin); return err == nil }

func setup() error {
	binDir = filepath.Join(testDir, "bin")
	coreState = filepath.Join(testDir, "state")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	builds := []struct {
		out, pkg string
		env      []string
		flags    []string
	}{
		{"isolation-vm", "github.com/berth-dev/berth/plugins/isolation-vm", nil, nil},
		{"berth-vm-agent", "github.com/berth-dev/berth/plugins/isolation-vm/guest", []string{"CGO_ENABLED=0"}, []string{"-trimpath", "-ldflags=-s -w"}},
		{"berth-sandbox-init", "github.com/berth-dev/berth/cmd/berth-sandbox-init", nil,
			[]string{"-tags", "netgo,osusergo", "-ldflags", "-s -w -linkmode external -extldflags -static"}},
	}
	errs := make(chan error, len(builds))
	for _, b := range builds {
		go func() {
			args := append(append([]string{"build", "-o", filepath.Join(binDir, b.out)}, b.flags...), b.pkg)
			cmd := exec.Command("go", args...)
			cmd.Env = append(os.Environ(), b.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
			errs <- nil
		}()
	}
	rootfs := filepath.Join(testDir, "rootfs")
	if out, err := exec.Command("../../scripts/demo-image.sh", "--rootfs", rootfs).CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/demo-image.sh --rootfs: %v\n%s", err, out)
	}
	baseImage = filepath.Join(testDir, "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", rootfs, "-L", "rootfs", baseImage, "64M").CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %v\n%s", err, out)
	}
	for range builds {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

func requireVM(t *testing.T) {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	if setupErr != nil {
		t.Fatalf("test setup: %v", setupErr)
	}
	kernelOnce.Do(func() { kernel = vmkerneltest.Kernel(t) })
	if kernel == nil {
		t.Fatal("no test kernel (see the first VM test's log)")
	}
}

// pluginDirs returns a fresh plugin state dir under coreState (so the
// plugin finds the kernel store) and a short runtime dir.
func pluginDirs(t *testing.T) (string, string) {
	t.Helper()
	run, err := os.MkdirTemp("", "bvm")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(coreState, "plugins", filepath.Base(run))
	t.Cleanup(func() {
		// A test that failed half way leaves its supervisors and VMs:
		// they must not outlive it (a passing test has deleted them, and
		// noLeaks said so).
		killUsing(state, run)
		_ = os.RemoveAll(run)
		_ = os.RemoveAll(state)
	})
	return state, run
}

// killUsing SIGKILLs every process whose command line names one of dirs.
func killUsing(dirs ...string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		for _, d := range dirs {
			if strings.Contains(string(b), d) {
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				break
			}
		}
	}
}

// testConfig is the plugin block the tests use: small VMs.
func testConfig(extra string) schema.Config {
	return schema.Config{JSON: []byte(`{"kernel":"` + kernel.Image() + `","agent":"` + filepath.Join(binDir, "berth-vm-agent") + `","sandbox_init":"` +
		filepath.Join(binDir, "berth-sandbox-init") + `","memory":"256MiB","cpus":1,"accel":"tcg","boot_timeout":"90s"` + extra + `}`)}
}

func configured(t *testing.T, stateDir, runDir, extra string) *runtime {
	t.Helper()
	rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	rt.supervisorExe = filepath.Join(binDir, "isolation-vm")
	if err := rt.Configure(context.Background(), plugin.ConfigureRequest{Config: testConfig(extra), StateDir: stateDir, RuntimeDir: runDir}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return rt
}

// newSpec is the suite's NewSpec: the demo image as a private copy of the
// ext4 image (the snapshot layer's block mount), Docker's defaults.
func newSpec(t *testing.T, id string, o conformance.SpecOptions) isolation.Spec {
	t.Helper()
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: o.Args},
		lifecycle.Config{Tty: o.TTY, OpenStdin: o.Stdin}, spec.Extra{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	if out, err := exec.Command("cp", "--sparse=always", baseImage, img).CombinedOutput(); err != nil {
		t.Fatalf("copy the rootfs image: %v: %s", err, out)
	}
	is := isolation.Spec{ID: id, OCI: s, LogPath: o.LogPath, Annotations: map[string]string{},
		Rootfs: []mount.Mount{{Type: "ext4", Source: img, Options: []string{"rw", "format=raw"}}}}
	if o.Stdin {
		is.Annotations[isolation.AnnotationOpenStdin] = "open"
	}
	return is
}

// noLeaks asserts nothing of the plugin's tasks is left: task dirs,
// sockets, run dirs, supervisors, qemu processes.
func noLeaks(t *testing.T, stateDir, runDir string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(stateDir, "tasks"))
	if len(entries) > 0 {
		t.Errorf("task dirs left: %v", entries)
	}
	// (go-plugin's own sockets of a plugin killed by the tests are not
	// the plugin's to remove.)
	socks, _ := filepath.Glob(filepath.Join(runDir, "*.sock"))
	runDirs, _ := filepath.Glob(filepath.Join(runDir, "[0-9a-f]*"))
	if len(socks)+len(runDirs) > 0 {
		t.Errorf("sockets or VM run dirs left: %v %v", socks, runDirs)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), stateDir) || strings.Contains(string(b), runDir) {
			t.Errorf("process left running: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// TestRunInVM is the end-to-end path in process: create (boot), attach,
// start, wait, log, delete, and nothing left.
func TestRunInVM(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := filepath.Join(t.TempDir(), "task.log")
	id := "vm-e2e"
	start := time.Now()
	// The init waits for /done so that an exec can hit the memory limit
	// while it runs; it runs under --init (berth-init is PID 1 and passes
	// the exit code through). Its oomScoreAdj of -1000 (inherited by its
	// shell) keeps the OOM killer on the hog: with 32 MiB, a second kill
	// while the hog's memory is still being freed would otherwise take
	// whichever process is next largest.
	spec := newSpec(t, id, conformance.SpecOptions{Args: []string{"sh", "-c",
		"echo hello from the vm; uname -r; cat /proc/1/comm; cat /proc/self/oom_score_adj; while [ ! -e /done ]; do sleep 0.2; done; exit 3"}, LogPath: log})
	spec.OCI.Process.Args = append([]string{isolation.InitPath, "--"}, spec.OCI.Process.Args...)
	unkillable := -1000
	spec.OCI.Process.OOMScoreAdj = &unkillable
	spec.OCI.Annotations[isolation.AnnotationInit] = isolation.InitPath
	if spec.OCI.Linux.Resources == nil {
		spec.OCI.Linux.Resources = &specs.LinuxResources{}
	}
	memLimit := int64(32 << 20)
	spec.OCI.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &memLimit}
	// The console goes to the file the caller names (berth logs --boot).
	bootFile := filepath.Join(t.TempDir(), id+".boot.log")
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[isolation.AnnotationBootLog] = bootFile
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Logf("created (VM booted) in %s", time.Since(start))
	if b, err := os.ReadFile(bootFile); err != nil || !strings.Contains(string(b), "serving the host") {
		t.Errorf("boot log %s (%v) lacks the agent's %q:\n%s", bootFile, err, "serving the host", b)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "tasks", id, bootLog)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the task dir has its own boot.log too (%v): the console must go to the annotated file only", err)
	}
	if testing.Verbose() {
		b, _ := os.ReadFile(filepath.Join(stateDir, "tasks", id, supervisorLog))
		t.Logf("supervisor log:\n%s", b)
	}
	var out strings.Builder
	done := make(chan error, 1)
	sw := &syncWriter{b: &out}
	go func() { done <- rt.Attach(ctx, id, "", isolation.Streams{Stdout: sw}) }()
	events, err := rt.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	eventually(t, "the init prints its PID 1's name and OOM score", func() bool { return strings.Count(sw.String(), "\n") >= 4 })
	if !strings.Contains(sw.String(), "\nberth-init\n") {
		t.Errorf("PID 1 of the --init task is not berth-init; output %q", sw.String())
	}
	if !strings.HasSuffix(sw.String(), "\n-1000\n") {
		t.Errorf("the init's process.oomScoreAdj -1000 did not reach its shell; output %q", sw.String())
	}
	// An exec allocating past the 32 MiB limit is OOM-killed in the guest:
	// one EventOOM of the task (from the agent's events) arrives.
	run := func(execID string, args ...string) isolation.ExitStatus {
		t.Helper()
		// An exec inherits the init's oomScoreAdj unless it sets its own
		// (as runc's exec): these are plain processes, the hog killable.
		plain := 0
		if _, err := rt.Exec(ctx, id, execID, &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, OOMScoreAdj: &plain}); err != nil {
			b, _ := os.ReadFile(bootFile)
			t.Fatalf("Exec %v: %v\nboot log:\n%s", args, err, b)
		}
		e, err := rt.Wait(ctx, id, execID)
		if err != nil {
			t.Fatalf("Wait exec %v: %v", args, err)
		}
		return e
	}
	if e := run("hog", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"); e.Signal != syscall.SIGKILL && e.Code != 137 {
		t.Errorf("the memory hog exited %+v; want killed by the OOM killer", e)
	}
	next := func() isolation.TaskEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(2 * time.Minute):
			t.Fatal("no task event for 2m")
		}
		return isolation.TaskEvent{}
	}
	ooms := 0
	for ev := next(); ; ev = next() {
		if ev.Kind == isolation.EventOOM && ev.ID == id {
			t.Logf("oom event %+v", ev)
			if ev.Time.IsZero() {
				t.Errorf("EventOOM without a time: %+v", ev)
			}
			ooms++
			break
		}
	}
	run("done", "touch", "/done")
	e, err := rt.Wait(ctx, id, "")
	if err != nil || e.Code != 3 {
		t.Fatalf("Wait = %+v, %v; want exit 3 (through berth-init)", e, err)
	}
	// The init's exit (its cgroup saw the kill, OOMKilled) adds no second
	// EventOOM: mode vm's OOM events come from the agent only.
	for ev := next(); !(ev.Kind == isolation.EventExit && ev.ID == id && ev.ExecID == ""); ev = next() {
		if ev.Kind == isolation.EventOOM && ev.ID == id {
			ooms++
		}
	}
	if ooms != 1 {
		t.Errorf("%d EventOOMs for one OOM kill; want 1", ooms)
	}
	if err := <-done; err != nil {
		t.Errorf("Attach: %v", err)
	}
	if !strings.Contains(out.String(), "hello from the vm\n6.1.0-56-amd64") {
		t.Errorf("output %q", out.String())
	}
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), `"log":"hello from the vm\n","stream":"stdout"`) {
		t.Errorf("log:\n%s", b)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	t.Logf("whole run %s", time.Since(start))
	if n := rt.oomWatching(); n != 0 {
		t.Errorf("%d agent-events subscriptions left after Delete", n)
	}
	noLeaks(t, stateDir, runDir)
	if _, err := os.Stat(bootFile); err != nil {
		t.Errorf("Delete removed the caller's boot log: %v", err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestConformanceOverGRPC runs the isolation conformance suite against the
// plugin binary launched by core/host, over real gRPC, with one VM per task
// the suite creates; the recover test kills the plugin with SIGKILL while a
// VM runs: the host relaunches it and the task, VM and all, must have kept
// running.
func TestConformanceOverGRPC(t *testing.T) {
	requireVM(t)
	run, err := os.MkdirTemp("", "bvm")
	if err != nil {
		t.Fatal(err)
	}
	hostState := filepath.Join(coreState, "grpc")
	t.Cleanup(func() {
		killUsing(run, hostState)
		_ = os.RemoveAll(run)
		_ = os.RemoveAll(hostState)
	})
	h := host.New(host.Options{Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}), LogLevel: "info",
		StateDir: hostState, RuntimeDir: run, RestartBackoff: 100 * time.Millisecond})
	cfg := testConfig("")
	hs := host.Spec{Layer: plugin.LayerIsolation, Name: "vm", Path: filepath.Join(binDir, "isolation-vm"), Default: true,
		StartTimeout: time.Minute, DecodeConfig: func(*schema.Spec) (schema.Config, error) { return cfg, nil }}
	if err := h.Start(context.Background(), []host.Spec{hs}); err != nil {
		t.Fatalf("host.Start: %v", err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.Stop(c)
	}()
	client := func(t *testing.T) isolation.Runtime {
		pc, err := h.Client(plugin.LayerIsolation, "vm")
		if err != nil {
			t.Fatal(err)
		}
		return pc.(isolation.Runtime)
	}
	pluginPid := func() int { return h.Plugins()[0].Pid }
	var vms atomic.Int32
	start := time.Now()
	conformance.Run(t, client, conformance.Options{
		NewSpec: func(t *testing.T, id string, o conformance.SpecOptions) isolation.Spec {
			vms.Add(1)
			return newSpec(t, id, o)
		},
		Capabilities: capabilities(),
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
	t.Logf("conformance over gRPC: %d task specs (VMs booted for each one Create accepted) in %s", vms.Load(), time.Since(start).Round(time.Second))
	noLeaks(t, filepath.Join(hostState, "plugins", "isolation-vm"), filepath.Join(run, "isolation-vm"))
}

// counterLines returns the numbers a counter task logged, in order.
func counterLines(t *testing.T, log string) []int {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Log string `json:"log"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			t.Fatalf("log line %q is not json-file", sc.Text())
		}
		if n, err := strconv.Atoi(strings.TrimSpace(e.Log)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 2m", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCheckpointRestore checkpoints a running counter (the VM stops),
// deletes the task as lifecycle does before a restore, restores it from
// the checkpoint into a new VM, and checks the counter goes on from where
// it was; then nothing of the task is left but the checkpoint dir, which
// is its caller's (lifecycle removes it with the container).
func TestCheckpointRestore(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := filepath.Join(t.TempDir(), "task.log")
	id := "vm-counter"
	spec := newSpec(t, id, conformance.SpecOptions{LogPath: log,
		Args: []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"}})
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer func() { _, _ = rt.Delete(context.Background(), id) }()
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	eventually(t, "the counter reaches 5", func() bool { return len(counterLines(t, log)) >= 5 })
	var before State
	if err := readJSON(filepath.Join(stateDir, "tasks", id, stateFile), &before); err != nil {
		t.Fatal(err)
	}
	// A checkpoint that leaves the task running: the supervisor takes a
	// new agent session, the log and the exit keep coming.
	keep := t.TempDir()
	if err := rt.Checkpoint(ctx, id, isolation.CheckpointOptions{Dir: keep, LeaveRunning: true}); err != nil {
		t.Fatalf("Checkpoint with LeaveRunning: %v", err)
	}
	n := len(counterLines(t, log))
	eventually(t, "the counter goes on after a LeaveRunning checkpoint", func() bool { return len(counterLines(t, log)) >= n+3 })
	if st, err := rt.Stats(ctx, id); err != nil || st.Pids < 1 {
		t.Errorf("Stats after a LeaveRunning checkpoint = %+v, %v", st, err)
	}
	// Then as lifecycle does it: pause, checkpoint (the VM ends).
	if err := rt.Pause(ctx, id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	ckDir := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.Mkdir(ckDir, 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := rt.Checkpoint(ctx, id, isolation.CheckpointOptions{Dir: ckDir}); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	t.Logf("checkpoint of a paused %d MiB VM took %s", 256, time.Since(start))
	if err := syscall.Kill(before.VMPid, 0); err == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", before.VMPid)); !strings.Contains(string(b), ") Z ") {
			t.Errorf("the VM (qemu %d) still runs after a checkpoint without LeaveRunning", before.VMPid)
		}
	}
	tasks, err := rt.List(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].Status != isolation.StatusStopped {
		t.Errorf("List after the checkpoint = %+v, %v; want the task stopped", tasks, err)
	}
	// Lifecycle deletes the checkpointed task, then restores it.
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete of the checkpointed task: %v", err)
	}
	saved := counterLines(t, log)
	last := saved[len(saved)-1]
	start = time.Now()
	info, err := rt.Restore(ctx, spec, ckDir)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restore (new VM from the checkpoint, agent re-dialled) took %s", time.Since(start))
	if info.Status != isolation.StatusRunning || info.Pid != before.Pid {
		t.Errorf("Restore = %+v; want running with the guest pid %d", info, before.Pid)
	}
	eventually(t, "the counter goes on after the restore", func() bool { return len(counterLines(t, log)) >= len(saved)+3 })
	after := counterLines(t, log)[len(saved):]
	// Output the guest had not yet handed over when it was saved comes
	// out after the restore; a restarted counter would start at 1.
	if after[0] != last+1 {
		t.Errorf("after the restore the counter printed %v; the last number before the checkpoint was %d", after[:3], last)
	}
	t.Logf("counter: ... %d | restore | %v ...", last, after[:3])
	if err := rt.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if e, err := rt.Wait(ctx, id, ""); err != nil || e.Signal != syscall.SIGKILL {
		t.Errorf("Wait after the restore = %+v, %v; want killed", e, err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	noLeaks(t, stateDir, runDir)
	// The checkpoint dir holds only what Checkpoint wrote; the caller
	// (lifecycle) removes it with the container.
	entries, _ := os.ReadDir(ckDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "task.json,vm" {
		t.Errorf("checkpoint dir holds %v, want task.json and vm", names)
	}
}

// TestBindMountsAreSharedAndBlockCheckpoint: a `-v` bind mount reaches the
// container over 9p, and such a container cannot be checkpointed (qemu
// refuses to migrate a VM with a mounted 9p share) — a clear error, and the
// task runs on.
func TestBindMountsAreSharedAndBlockCheckpoint(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "greeting"), []byte("hello over 9p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := "vm-bind"
	spec := newSpec(t, id, conformance.SpecOptions{Args: []string{"sh", "-c", "cat /data/greeting; echo written >/data/out; sleep 1000"}})
	spec.OCI.Mounts = append(spec.OCI.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: share, Options: []string{"rbind", "rw"}})
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer func() {
		_ = rt.Signal(context.Background(), id, "", syscall.SIGKILL, true)
		_, _ = rt.Wait(context.Background(), id, "")
		if _, err := rt.Delete(context.Background(), id); err != nil {
			t.Errorf("Delete: %v", err)
		}
		noLeaks(t, stateDir, runDir)
	}()
	var out strings.Builder
	go func() { _ = rt.Attach(ctx, id, "", isolation.Streams{Stdout: &syncWriter{b: &out}}) }()
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	eventually(t, "the container writes to the share", func() bool {
		b, _ := os.ReadFile(filepath.Join(share, "out"))
		return string(b) == "written\n"
	})
	err := rt.Checkpoint(ctx, id, isolation.CheckpointOptions{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "bind mount") || !strings.Contains(err.Error(), "cannot be checkpointed") {
		t.Errorf("Checkpoint with a bind mount: %v; want a clear refusal", err)
	}
	tasks, _ := rt.List(ctx)
	if len(tasks) != 1 || tasks[0].Status != isolation.StatusRunning {
		t.Errorf("after the refused checkpoint: %+v; want it running", tasks)
	}
}

// TestBootFailures: a kernel that does not exist fails Create at once,
// naming it; a guest that powers off during boot (its agent told to
// listen on vsock, which this machine lacks) fails Create as soon as the
// VM ends; an init that never answers (busybox's init as /init) fails
// Create at the boot timeout. Each error carries the console's last
// lines, and none leaves anything running.
func TestBootFailures(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, `,"boot_timeout":"20s"`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	spec := newSpec(t, "vm-badkernel", conformance.SpecOptions{Args: []string{"true"}})
	spec.VM = &isolation.VMSizing{Kernel: "/no/such/vmlinux"}
	if _, err := rt.Create(ctx, spec); err == nil || !strings.Contains(err.Error(), "/no/such/vmlinux") {
		t.Errorf("Create with a missing kernel: %v; want an error naming it", err)
	}

	// A generous boot timeout: the VM's end, not the timeout, must end
	// this Create, however slow the guest is under load.
	stateDir2, runDir2 := pluginDirs(t)
	patient := configured(t, stateDir2, runDir2, `,"boot_timeout":"5m"`)
	spec = newSpec(t, "vm-poweroff", conformance.SpecOptions{Args: []string{"true"}})
	spec.VM = &isolation.VMSizing{KernelArgs: []string{"berth.agent=vsock"}}
	start := time.Now()
	_, err := patient.Create(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "the VM ended") {
		t.Errorf("Create of a guest that powers off: %v; want the VM's end reported", err)
	}
	t.Logf("guest powering off during boot: Create failed after %s: %v", time.Since(start).Round(time.Millisecond), err)

	initrd := filepath.Join(t.TempDir(), "busybox-init.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := vmkernel.BuildInitramfs(f, vmkernel.InitramfsSpec{Agent: "/bin/busybox"}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	spec = newSpec(t, "vm-noagent", conformance.SpecOptions{Args: []string{"true"}})
	spec.VM = &isolation.VMSizing{Initrd: initrd}
	start = time.Now()
	_, err = rt.Create(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "did not answer within 20s") {
		t.Errorf("Create with an init that never answers: %v; want the boot timeout", err)
	}
	t.Logf("agent never answering: Create failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	for _, r := range []*runtime{rt, patient} {
		if tasks, _ := r.List(ctx); len(tasks) != 0 {
			t.Errorf("failed creates left tasks: %+v", tasks)
		}
	}
	noLeaks(t, stateDir, runDir)
	noLeaks(t, stateDir2, runDir2)
}

// TestSupervisorKilled: a supervisor killed with SIGKILL takes its VM with
// it (the hypervisor dies with its owner); the task reads as stopped with
// an unknown exit, and Delete removes what the supervisor left (socket,
// run dir, task dir).
func TestSupervisorKilled(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id := "vm-killed"
	if _, err := rt.Create(ctx, newSpec(t, id, conformance.SpecOptions{Args: []string{"sleep", "1000"}})); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var st State
	if err := readJSON(filepath.Join(stateDir, "tasks", id, stateFile), &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.SupervisorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procwait.Gone(st.SupervisorPid, time.Minute)
	procwait.Gone(st.VMPid, time.Minute)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.VMPid)); err == nil && strings.Contains(string(b), "qemu") {
		t.Errorf("qemu %d outlived its supervisor", st.VMPid)
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
	noLeaks(t, stateDir, runDir)
}
