package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/rpolicy"
	"github.com/berth-dev/berth/internal/sandbox/seatbelt"
	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/plugins/snapshot-apfs/apfs"
	"github.com/berth-dev/berth/sdk"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// The darwin runtime's logic on Linux: seatbeltPlatform and the supervisor's
// Seatbelt backend run for real (supervisor processes, the control socket,
// held inits released by start, execs, SIGSTOP pauses, stats from procfs,
// recovery, deletes); only the confinement is replaced, by
// supervisor.Unconfined, since sandbox-exec is darwin's. No root needed.

// seatbeltSuperviseArg makes this test binary a Seatbelt supervisor.
const seatbeltSuperviseArg = "seatbelt-supervise"

func init() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case seatbeltSuperviseArg:
		supervisor.MainSeatbelt(os.Args[2:], supervisor.SeatbeltOptions{Confine: supervisor.Unconfined, Procs: procfs{}})
	case supervisor.HoldArg:
		supervisor.HoldMain(os.Args[2:])
	case seatbeltServeArg:
		// The darwin runtime as a real plugin process, over go-plugin.
		self, _ := os.Executable()
		sdk.Serve(func(log hclog.Logger) *runtime {
			rt := newRuntime(log)
			rt.plat = seatbeltPlatform{supervise: []string{self, seatbeltSuperviseArg}}
			return rt
		})
		os.Exit(0)
	}
}

// seatbeltServeArg makes this test binary the isolation plugin with the
// darwin runtime (the core's plugin host launches it through a script).
const seatbeltServeArg = "seatbelt-serve"

// procfs is the supervisor's ProcSource on Linux (tests), from rpolicy's.
type procfs struct{ src rpolicy.ProcSource }

func (p procfs) Table() ([]supervisor.ProcInfo, error) {
	t, err := p.src.Table()
	out := make([]supervisor.ProcInfo, 0, len(t))
	for _, pr := range t {
		out = append(out, supervisor.ProcInfo{Pid: pr.Pid, PPid: pr.PPid, Pgid: pr.Pgid})
	}
	return out, err
}

func (p procfs) Use(pid int) (supervisor.ProcUse, error) {
	st, err := p.src.Stat(pid)
	return supervisor.ProcUse{CPU: st.CPU, Footprint: st.Footprint}, err
}

func newSeatbeltRuntime(t *testing.T, stateDir, runDir string) *runtime {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	rt.plat = seatbeltPlatform{supervise: []string{self, seatbeltSuperviseArg}}
	if err := rt.Configure(context.Background(), plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(`{}`)},
		StateDir: stateDir, RuntimeDir: runDir}); err != nil {
		t.Fatal(err)
	}
	return rt
}

// seatbeltSpec is a darwin-style task: a rootfs directory and host
// commands (sh, sleep, … resolve to the host's /usr/bin and /bin).
func seatbeltSpec(t *testing.T, id string, o conformance.SpecOptions) isolation.Spec {
	return seatbeltSpecIn(t.TempDir(), id, o)
}

func seatbeltSpecIn(root, id string, o conformance.SpecOptions) isolation.Spec {
	oci := &specs.Spec{Version: specs.Version, Process: &specs.Process{Args: o.Args, Terminal: o.TTY, Cwd: "/",
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"}}}
	s := isolation.Spec{ID: id, OCI: oci, LogPath: o.LogPath, Annotations: map[string]string{},
		Rootfs: []mount.Mount{{Type: "bind", Source: root}}}
	if o.Stdin {
		s.Annotations[isolation.AnnotationOpenStdin] = "open"
	}
	return s
}

// procState is the state letter of /proc/PID/stat ("" when pid is gone).
func procState(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2 : i+3]
	}
	return ""
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSeatbeltPauseStopsEveryGroup: the init and execs (with and without a
// terminal, each in a session of its own) are all stopped by Pause,
// counted by Stats and recorded on disk, and a Delete after the supervisor
// died kills every one of them.
func TestSeatbeltPauseStopsEveryGroup(t *testing.T) {
	stateDir, runDir := shortDirs(t)
	rt := newSeatbeltRuntime(t, stateDir, runDir)
	ctx := context.Background()
	id := "pause-groups"
	if _, err := rt.Create(ctx, seatbeltSpec(t, id, conformance.SpecOptions{Args: []string{"sleep", "1000"}})); err != nil {
		t.Fatal(err)
	}
	initPid, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	proc := &specs.Process{Args: []string{"sleep", "1000"}, Cwd: "/", Env: []string{"PATH=/usr/bin:/bin"}}
	plain, err := rt.Exec(ctx, id, "plain", proc)
	if err != nil {
		t.Fatal(err)
	}
	ttyProc := *proc
	ttyProc.Terminal = true
	tty, err := rt.Exec(ctx, id, "tty", &ttyProc)
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{initPid, plain, tty}
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("pid %d runs sleep", pid), func() bool {
			b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
			return strings.HasPrefix(string(b), "/usr/bin/sleep\x00")
		})
	}
	st, err := rt.Stats(ctx, id)
	if err != nil || st.Pids != 3 || st.MemoryBytes == 0 || st.MemoryPeakBytes < st.MemoryBytes {
		t.Errorf("Stats = %+v, %v; want 3 pids and their memory", st, err)
	}
	if err := rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("pid %d stopped", pid), func() bool { return procState(pid) == "T" })
	}
	if err := rt.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("pid %d continued", pid), func() bool { return procState(pid) == "S" })
	}
	var state supervisor.State
	if err := atomicfile.ReadJSON(filepath.Join(stateDir, "tasks", id, supervisor.StateFile), &state); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(state.Pgids, pids) || state.Pgid != initPid {
		t.Errorf("recorded groups %v (init %d), want %v", state.Pgids, state.Pgid, pids)
	}
	// The supervisor dies; its task's processes are left to Delete.
	if err := syscall.Kill(state.SupervisorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete after the supervisor died: %v", err)
	}
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("pid %d killed", pid), func() bool { st := procState(pid); return st == "" || st == "Z" })
	}
	noLeaks(t, stateDir, runDir)
}

func TestSeatbeltPrepare(t *testing.T) {
	p := seatbeltPlatform{}
	spec := seatbeltSpec(t, "net", conformance.SpecOptions{Args: []string{"true"}})
	for mode, want := range map[string]string{"": seatbelt.NetworkLocalhost, "none": seatbelt.NetworkLocalhost, "host": seatbelt.NetworkAll} {
		spec.Network = &isolation.NetworkAttachment{Mode: mode}
		oci := *spec.OCI
		if err := p.prepare(spec, &oci); err != nil || oci.Annotations[supervisor.AnnotationNetwork] != want {
			t.Errorf("network %q: %v, annotation %q, want %q", mode, err, oci.Annotations[supervisor.AnnotationNetwork], want)
		}
	}
	spec.Network = &isolation.NetworkAttachment{Mode: "bridge"}
	if err := p.prepare(spec, spec.OCI); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("bridge: %v, want ErrNotImplemented", err)
	}
	spec.Network = nil
	spec.Rootfs = []mount.Mount{{Type: "overlay", Source: "overlay"}}
	if err := p.prepare(spec, spec.OCI); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("overlay rootfs: %v, want ErrInvalidArgument", err)
	}
}

// TestSeatbeltRunsAnAPFSSnapshot: the mounts snapshot-apfs gives (the
// snapshotter config.hcl binds to this mode on darwin; on Linux it copies
// or reflinks) are a rootfs the darwin runtime takes: the image's program
// runs from the container's clone, and what it writes lands in the clone,
// not in the image.
func TestSeatbeltRunsAnAPFSSnapshot(t *testing.T) {
	ctx := context.Background()
	sn := apfs.New(nil)
	defer sn.Close()
	if err := sn.Configure(ctx, plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	info, err := sn.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's binding check pairs these two (core/daemon/bindings.go).
	if !slices.Contains(info.Capabilities, snapshot.CapMountBind) || !slices.Contains(seatbeltPlatform{}.caps(), isolation.CapRootfsBind) {
		t.Fatalf("snapshot-apfs %v and the darwin sandbox %v share no rootfs kind", info.Capabilities, seatbeltPlatform{}.caps())
	}
	base, err := sn.Prepare(ctx, "layer", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(base[0].Source, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho from-the-image\necho written > \"$PWD/out\"\n"
	if err := os.WriteFile(filepath.Join(base[0].Source, "app", "run"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "image", "layer"); err != nil {
		t.Fatal(err)
	}
	mounts, err := sn.Prepare(ctx, "ctr", "image")
	if err != nil {
		t.Fatal(err)
	}

	stateDir, runDir := shortDirs(t)
	rt := newSeatbeltRuntime(t, stateDir, runDir)
	log := filepath.Join(t.TempDir(), "task.log")
	spec := seatbeltSpecIn(t.TempDir(), "from-apfs", conformance.SpecOptions{Args: []string{"/app/run"}, LogPath: log})
	spec.Rootfs = mounts
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Start(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if e, err := rt.Wait(ctx, spec.ID, ""); err != nil || e.Code != 0 {
		t.Fatalf("Wait = %+v, %v", e, err)
	}
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "from-the-image") {
		t.Errorf("log lacks the program's output:\n%s", b)
	}
	if b, err := os.ReadFile(filepath.Join(mounts[0].Source, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("the container's write: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(base[0].Source, "out")); err == nil {
		t.Error("the container's write reached the image's layer")
	}
	if _, err := rt.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	noLeaks(t, stateDir, runDir)
}

// TestSeatbeltConformanceOverGRPC: the suite against the darwin runtime in
// a plugin process launched by the core's plugin host, over gRPC, with a
// kill -9 of that process for the recovery check.
func TestSeatbeltConformanceOverGRPC(t *testing.T) {
	stateDir, runDir := shortDirs(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	launcher := filepath.Join(t.TempDir(), "isolation-sandbox")
	if err := os.WriteFile(launcher, []byte("#!/bin/sh\nexec '"+self+"' "+seatbeltServeArg+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := host.New(host.Options{Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}), LogLevel: "info",
		StateDir: stateDir, RuntimeDir: runDir, RestartBackoff: 100 * time.Millisecond})
	hs := host.Spec{Layer: plugin.LayerIsolation, Name: "sandbox", Path: launcher, Default: true}
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
		NewSpec: seatbeltSpec, Capabilities: seatbeltPlatform{}.caps(),
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
