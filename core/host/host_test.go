package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
)

// pluginDir holds the test plugins, built once by TestMain under the names
// that select their behaviour (see testdata/testplugin).
var pluginDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-test-plugins")
	if err != nil {
		panic(err)
	}
	pluginDir = dir
	err = buildTestPlugins(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "build test plugins:", err)
	} else {
		code = m.Run()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func buildTestPlugins(dir string) error {
	build := func(pkg, out string) error {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Stderr = os.Stderr
		return cmd.Run()
	}
	if err := build("./testdata/testplugin", "resources-ok"); err != nil {
		return err
	}
	if err := build("./testdata/lifecycleprobe", "lifecycle-probe"); err != nil {
		return err
	}
	for _, mode := range []string{"hang", "crashstart", "badproto", "freeze"} {
		if err := os.Link(filepath.Join(dir, "resources-ok"), filepath.Join(dir, "resources-"+mode)); err != nil {
			return err
		}
	}
	return nil
}

// lockedBuffer collects the host's log; it is printed when a test fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestHost returns a host with fast health checks and backoff, stopped
// at the end of the test.
func newTestHost(t *testing.T) *Host {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	h := New(Options{
		Logger:            hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
		LogLevel:          "debug",
		StateDir:          filepath.Join(dir, "state"),
		RuntimeDir:        filepath.Join(dir, "run"),
		HealthInterval:    200 * time.Millisecond,
		RestartBackoff:    100 * time.Millisecond,
		MaxRestartBackoff: time.Second,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.Stop(ctx)
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
		_ = os.RemoveAll(dir)
	})
	return h
}

func spec(layer plugin.Layer, name, binary string) Spec {
	return Spec{Layer: layer, Name: name, Path: filepath.Join(pluginDir, binary), StartTimeout: 5 * time.Second}
}

// startWithin runs h.Start and fails the test if it does not return in time:
// a bad plugin must give an error, never a hang.
func startWithin(t *testing.T, h *Host, specs ...Spec) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.Start(context.Background(), specs) }()
	select {
	case err := <-done:
		return err
	case <-time.After(90 * time.Second):
		t.Fatal("Start did not return within 90s")
		return nil
	}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pluginStatus(t *testing.T, h *Host, id string) api.PluginStatus {
	t.Helper()
	for _, p := range h.Plugins() {
		if string(p.Layer)+"/"+p.Name == id {
			return p
		}
	}
	t.Fatalf("plugin %s not listed", id)
	return api.PluginStatus{}
}

func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(b), ") Z ")
}

func TestStartConfigureAndCall(t *testing.T) {
	h := newTestHost(t)
	if err := startWithin(t, h, spec(plugin.LayerResources, "ok", "resources-ok")); err != nil {
		t.Fatal(err)
	}
	st := pluginStatus(t, h, "resources/ok")
	if st.Health != api.HealthHealthy || st.Pid <= 0 || st.Version != "0.0.1" || st.Platform == "/" {
		t.Fatalf("status = %+v", st)
	}
	if !st.Default {
		t.Log("a layer's only plugin is its default even when not marked")
	}
	if name, err := h.Default(plugin.LayerResources); err != nil || name != "ok" {
		t.Fatalf("Default = %q, %v", name, err)
	}
	c, err := h.Client(plugin.LayerResources, "ok")
	if err != nil {
		t.Fatal(err)
	}
	ctl := c.(resources.Controller)
	ctx := context.Background()
	if p, err := ctl.CreateGroup(ctx, "g1", resources.Limits{Pids: 10}); err != nil || p.CgroupPath != "/test/g1" {
		t.Fatalf("CreateGroup = %+v, %v", p, err)
	}
	_, err = ctl.CreateGroup(ctx, "g1", resources.Limits{})
	if !errors.Is(err, errdefs.ErrAlreadyExists) || err.Error() != "group g1 exists" {
		t.Fatalf("second CreateGroup error = %v; want AlreadyExists with the plugin's message", err)
	}
	if err := ctl.Attach(ctx, "nope", 1); !errdefs.IsNotFound(err) {
		t.Fatalf("Attach to missing group = %v; want NotFound", err)
	}
	if _, err := h.Client(plugin.LayerSnapshot, "none"); !errdefs.IsNotFound(err) {
		t.Fatalf("Client of unconfigured plugin = %v; want NotFound", err)
	}
}

func TestLaunchFailuresAreClearErrors(t *testing.T) {
	okBinary := filepath.Join(pluginDir, "resources-ok")
	b, err := os.ReadFile(okBinary)
	if err != nil {
		t.Fatal(err)
	}
	rightSum := sha256.Sum256(b)
	wrongSum := sha256.Sum256([]byte("not the binary"))

	cases := []struct {
		name     string
		spec     Spec
		kind     error
		contains string
	}{
		{"hangs at start", withTimeout(spec(plugin.LayerResources, "hang", "resources-hang"), 2*time.Second), errdefs.ErrUnavailable, "did not complete its handshake within 2s"},
		{"crashes at start", spec(plugin.LayerResources, "crash", "resources-crashstart"), errdefs.ErrUnavailable, "exited during its handshake"},
		{"wrong protocol version", spec(plugin.LayerResources, "old", "resources-badproto"), errdefs.ErrInvalidArgument, "another plugin protocol"},
		{"wrong checksum", withSum(spec(plugin.LayerResources, "sum", "resources-ok"), wrongSum[:]), errdefs.ErrInvalidArgument, "does not match the sha256"},
		{"wrong layer", spec(plugin.LayerSnapshot, "ok", "resources-ok"), errdefs.ErrInvalidArgument, `is a "resources" plugin, not "snapshot"`},
		{"missing binary", spec(plugin.LayerResources, "gone", "resources-missing"), errdefs.ErrNotFound, "resources-missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHost(t)
			err := startWithin(t, h, tc.spec)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("Start error = %v; want kind %v containing %q", err, tc.kind, tc.contains)
			}
			st := pluginStatus(t, h, tc.spec.ID())
			if st.Health != api.HealthFailed || st.LastError == "" {
				t.Fatalf("status = %+v; want failed with its error", st)
			}
		})
	}

	t.Run("right checksum", func(t *testing.T) {
		h := newTestHost(t)
		if err := startWithin(t, h, withSum(spec(plugin.LayerResources, "sum", "resources-ok"), rightSum[:])); err != nil {
			t.Fatal(err)
		}
	})
}

func withTimeout(s Spec, d time.Duration) Spec { s.StartTimeout = d; return s }
func withSum(s Spec, sum []byte) Spec          { s.SHA256 = sum; return s }

func TestKilledPluginIsRestarted(t *testing.T) {
	h := newTestHost(t)
	if err := startWithin(t, h, spec(plugin.LayerResources, "ok", "resources-ok")); err != nil {
		t.Fatal(err)
	}
	old := pluginStatus(t, h, "resources/ok").Pid
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a restarted plugin with a new pid", func() bool {
		st := pluginStatus(t, h, "resources/ok")
		return st.Health == api.HealthHealthy && st.Pid > 0 && st.Pid != old && st.Restarts >= 1
	})
	c, err := h.Client(plugin.LayerResources, "ok")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.(resources.Controller).List(context.Background()); err != nil {
		t.Fatalf("call after restart: %v", err)
	}
}

func TestFrozenPluginIsKilledAndRestarted(t *testing.T) {
	h := newTestHost(t)
	if err := startWithin(t, h, spec(plugin.LayerResources, "freeze", "resources-freeze")); err != nil {
		t.Fatal(err)
	}
	first := pluginStatus(t, h, "resources/freeze").Pid
	eventually(t, "the frozen plugin to be restarted", func() bool {
		st := pluginStatus(t, h, "resources/freeze")
		return st.Restarts >= 1 && strings.Contains(st.LastError, "health checks")
	})
	eventually(t, "the frozen process to be gone", func() bool { return processGone(first) })
}

func TestHandlesSurviveRestartAndDependentsAreTold(t *testing.T) {
	h := newTestHost(t)
	err := startWithin(t, h,
		spec(plugin.LayerResources, "ok", "resources-ok"),
		spec(plugin.LayerLifecycle, "probe", "lifecycle-probe"))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(h.opts.StateDir, "plugins", "lifecycle-probe", "probe.log")
	probeLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	for _, want := range []string{"handles [resources]", "info resources layer=resources name=ok default=false caps=[usage]"} {
		if !strings.Contains(probeLog(), want) {
			t.Fatalf("probe log lacks %q:\n%s", want, probeLog())
		}
	}
	eventually(t, "the probe's first use of its handle, 6 s after Configure", func() bool {
		return strings.Contains(probeLog(), "create-group /test/probe-group <nil>")
	})
	if err := syscall.Kill(pluginStatus(t, h, "resources/ok").Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the probe to hear the handle went away and came back", func() bool {
		l := probeLog()
		return strings.Contains(l, "handle-changed resources available=false") &&
			strings.Contains(l, "handle-changed resources available=true")
	})
	// The restarted resources plugin holds only the group made after the
	// restart: the handle reached the new process, not the old one.
	eventually(t, "a call through the handle after the restart", func() bool {
		return strings.Contains(probeLog(), "after-restart create=<nil> list=1 <nil>")
	})
}

func TestStopEndsEveryPlugin(t *testing.T) {
	h := newTestHost(t)
	err := startWithin(t, h,
		spec(plugin.LayerResources, "ok", "resources-ok"),
		spec(plugin.LayerLifecycle, "probe", "lifecycle-probe"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range h.Plugins() {
		pids = append(pids, p.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.Stop(ctx)
	h.Stop(ctx) // idempotent
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("plugin pid %d to exit", pid), func() bool { return processGone(pid) })
	}
	for _, p := range h.Plugins() {
		if p.Health != api.HealthStopped {
			t.Errorf("%s/%s health = %s; want stopped", p.Layer, p.Name, p.Health)
		}
	}
	if err := h.Start(context.Background(), []Spec{spec(plugin.LayerResources, "late", "resources-ok")}); !errdefs.IsUnavailable(err) {
		t.Fatalf("Start after Stop = %v; want Unavailable", err)
	}
}
