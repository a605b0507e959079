package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/daemon"
	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/resources/conformance"
)

// These tests run the example plugin examples/resources-procfs as a real
// process, launched by the daemon and by the plugin host, and run the
// resources conformance suite against it. They need no root: the plugin
// only reads /proc. They poll with generous deadlines and assert no
// timings.

const waitFor = 60 * time.Second

// buildProcfs builds examples/resources-procfs into a temp dir.
func buildProcfs(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("resources-procfs reads /proc, which %s does not have", runtime.GOOS)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the example plugin needs the go tool in PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "resources-procfs")
	cmd := exec.Command(gobin, "build", "-o", bin, "github.com/berth-dev/berth/examples/resources-procfs")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build resources-procfs: %v\n%s", err, out)
	}
	return bin
}

// writeConfig writes a config.hcl that enables only the procfs plugin at
// bin, with short state and runtime dirs (unix sockets stay under 104
// bytes), and loads it.
func writeConfig(t *testing.T, bin string) *config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	src := fmt.Sprintf(`
berth {
  state_dir   = %q
  runtime_dir = %q
  plugin_dirs = []
  log_level   = "debug"
}

plugin "resources" "procfs" {
  path            = %q
  sample_interval = "200ms"
}
`, filepath.Join(dir, "state"), filepath.Join(dir, "run"), bin)
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		t.Fatalf("load %s: %s", path, config.FormatDiagnostics(diags))
	}
	return cfg
}

// dialAdmin connects to the daemon's admin socket as the CLI does.
func dialAdmin(t *testing.T, path string) *api.SystemClient {
	t.Helper()
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
	}, errdefs.DialOptions()...)
	conn, err := grpc.NewClient("passthrough:///"+path, opts...)
	if err != nil {
		t.Fatalf("dial admin socket %s: %v", path, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return api.NewSystemClient(conn)
}

// dialPluginSocket connects to the go-plugin socket of the plugin the
// daemon launched (under its runtime dir) and returns a resources client
// over it: the same client the host dispenses, talking to the same process.
func dialPluginSocket(t *testing.T, runtimeDir string) *resources.Client {
	t.Helper()
	socks, err := filepath.Glob(filepath.Join(runtimeDir, "plugin*"))
	if err != nil || len(socks) != 1 {
		t.Fatalf("want one go-plugin socket in %s, found %v (%v)", runtimeDir, socks, err)
	}
	path := socks[0]
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
	}, errdefs.DialOptions()...)
	conn, err := grpc.NewClient("passthrough:///"+path, opts...)
	if err != nil {
		t.Fatalf("dial plugin socket %s: %v", path, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return resources.NewClient(conn)
}

// waitGone polls until process pid no longer exists.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still exists %s after shutdown", what, pid, waitFor)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDaemonRunsExamplePlugin(t *testing.T) {
	bin := buildProcfs(t)
	cfg := writeConfig(t, bin)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{
			Config: cfg,
			Logger: testLogger(t, "berthd"),
			Ready:  ready,
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon.Run returned before it was ready: %v", err)
	case <-time.After(waitFor):
		t.Fatalf("daemon not ready after %s", waitFor)
	}

	sys := dialAdmin(t, daemon.AdminSocketPath(cfg))
	callCtx, callCancel := context.WithTimeout(ctx, 10*time.Second)
	plugins, err := sys.Plugins(callCtx)
	callCancel()
	if err != nil {
		t.Fatalf("System.Plugins on the admin socket: %v", err)
	}
	if len(plugins) != 1 {
		t.Fatalf("System.Plugins = %+v, want the procfs plugin alone", plugins)
	}
	p := plugins[0]
	if p.Layer != plugin.LayerResources || p.Name != "procfs" || p.Pid <= 0 || p.Health != api.HealthHealthy || p.Path != bin {
		t.Fatalf("System.Plugins reports %+v; want layer resources, name procfs, path %s, a pid and health %q", p, bin, api.HealthHealthy)
	}
	if len(p.Capabilities) != 1 || p.Capabilities[0] != resources.CapUsage {
		t.Errorf("procfs capabilities = %q, want [%q]", p.Capabilities, resources.CapUsage)
	}

	// The daemon keeps its host to itself, so the suite reaches the live
	// plugin process through its go-plugin socket.
	c := dialPluginSocket(t, filepath.Join(cfg.Berth.RuntimeDir, "resources-procfs"))
	t.Run("Conformance", func(t *testing.T) {
		conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{
			Capabilities: []string{resources.CapUsage},
		})
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("daemon.Run after cancel: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("daemon.Run did not return %s after its ctx was cancelled", waitFor)
	}
	waitGone(t, p.Pid, "plugin resources/procfs")
}

// TestHostClientOfExamplePlugin runs the suite against the client the
// plugin host itself holds for the plugin (host.Client), including a
// reconfiguration with the directories the host gave it.
func TestHostClientOfExamplePlugin(t *testing.T) {
	bin := buildProcfs(t)
	cfg := writeConfig(t, bin)
	specs, diags := daemon.HostSpecs(cfg)
	if diags.HasErrors() {
		t.Fatalf("HostSpecs: %s", config.FormatDiagnostics(diags))
	}
	h := host.New(host.Options{
		Logger:     testLogger(t, "host"),
		LogLevel:   "debug",
		StateDir:   cfg.Berth.StateDir,
		RuntimeDir: cfg.Berth.RuntimeDir,
	})
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stopCtx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		h.Stop(stopCtx)
	}
	defer stop()
	if err := h.Start(context.Background(), specs); err != nil {
		t.Fatalf("host.Start: %v", err)
	}
	pc, err := h.Client(plugin.LayerResources, "procfs")
	if err != nil {
		t.Fatalf("host.Client(resources, procfs): %v", err)
	}
	c, ok := pc.(resources.Controller)
	if !ok {
		t.Fatalf("host.Client(resources, procfs) is a %T, not a resources.Controller", pc)
	}
	pid := h.Plugins()[0].Pid
	if pid <= 0 {
		t.Fatalf("host reports pid %d for the running plugin", pid)
	}
	conformance.Run(t, func(*testing.T) resources.Controller { return c }, conformance.Options{
		Capabilities: []string{resources.CapUsage},
		Reconfigure: &plugin.ConfigureRequest{
			APIVersion: plugin.APIVersion,
			StateDir:   filepath.Join(cfg.Berth.StateDir, "plugins", "resources-procfs"),
			RuntimeDir: filepath.Join(cfg.Berth.RuntimeDir, "resources-procfs"),
		},
	})
	stop()
	waitGone(t, pid, "plugin resources/procfs")
}

// testLogger logs to t.Log until t ends, and drops what plugin goroutines
// still write after that (t.Log would panic).
func testLogger(t *testing.T, name string) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: w})
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
