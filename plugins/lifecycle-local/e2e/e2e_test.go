//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/daemon"
	"github.com/berth-dev/berth/core/host"
	coreimages "github.com/berth-dev/berth/core/images"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
)

// The e2e tests start containers and wait for them; they are privileged
// and not CPU-heavy, but they share one stack, so none runs in parallel.

const waitFor = 60 * time.Second

// binDir holds the plugin binaries (binDir/plugins/<layer>-<name>) and the
// sandbox's init (binDir/berth-sandbox-init), built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// Each test says why it skips.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "berth-e2e-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := 1
	if err := buildAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build plugins:", err)
	} else {
		code = m.Run()
	}
	if shared != nil {
		shared.stop()
		if leaked && code == 0 {
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func buildAll(dir string) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	build := func(out string, args ...string) error {
		cmd := exec.Command("go", append([]string{"build", "-o", filepath.Join(dir, out)}, args...)...)
		cmd.Dir = root
		cmd.Stderr = os.Stderr
		return cmd.Run()
	}
	for _, p := range []string{"lifecycle-local", "resources-cgroup", "snapshot-overlay", "isolation-sandbox"} {
		if err := build(filepath.Join("plugins", p), "./plugins/"+p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	// As `make build` builds it: static, since it runs inside containers.
	return build("berth-sandbox-init", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`, "./cmd/berth-sandbox-init")
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: real cgroups, overlay mounts and namespaces (CI runs as root)")
	}
}

// stack is the core's plugin host running the four plugins, and the image
// service it brokers to lifecycle.
type stack struct {
	t      *testing.T
	h      *host.Host
	images *coreimages.Service
	image  string
	dir    string
	// cgroupParent holds the resource groups of this run.
	cgroupParent string
	hostOpts     host.Options
	specs        []host.Spec
}

var (
	stackOnce sync.Once
	shared    *stack
	stackErr  error
)

// logSink collects the host's log, shown when a test fails.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := os.Getenv("BERTH_E2E_LOG"); f != "" {
		if fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
			_, _ = fh.Write(p)
			_ = fh.Close()
		}
	}
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var hostLog = &logSink{}

// startStack starts the stack shared by every test of the package on first
// use (plugins take a while to launch); TestMain stops it at the end.
func startStack(t *testing.T) *stack {
	t.Helper()
	requireRoot(t)
	stackOnce.Do(func() { shared, stackErr = newStack() })
	if stackErr != nil {
		t.Fatalf("start the plugin stack: %v\nlog:\n%s", stackErr, hostLog)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plugin host log:\n%s", hostLog)
		}
	})
	shared.t = t
	return shared
}

func newStack() (*stack, error) {
	// Short paths: unix sockets live under the runtime dir.
	dir, err := os.MkdirTemp("", "blc")
	if err != nil {
		return nil, err
	}
	s := &stack{dir: dir, image: "berth.test/busybox:e2e"}
	svc, err := coreimages.New(coreimages.Options{Root: filepath.Join(dir, "state", "images")})
	if err != nil {
		return nil, err
	}
	s.images = svc
	rootfs := filepath.Join(dir, "rootfs")
	if err := busyboxRootfs(rootfs); err != nil {
		return nil, err
	}
	if _, err := svc.Import(context.Background(), images.ImportOptions{
		Dir: rootfs, Name: s.image,
		Config:   images.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}},
		Platform: images.Platform{OS: "linux", Architecture: "amd64"},
	}); err != nil {
		return nil, fmt.Errorf("import busybox: %w", err)
	}
	s.hostOpts = host.Options{
		Logger:         hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Debug, Output: hostLog}),
		LogLevel:       "debug",
		StateDir:       filepath.Join(dir, "state"),
		RuntimeDir:     filepath.Join(dir, "run"),
		RestartBackoff: 200 * time.Millisecond,
		Services: map[string]host.Service{
			plugin.HandleImages: func(g *grpc.Server) { images.RegisterServer(g, svc) },
		},
	}
	s.h = host.New(s.hostOpts)
	// The plugins are configured as the daemon configures them: from a
	// config.hcl, decoded against each plugin's schema. The cgroup parent
	// is this run's own, so a daemon on the machine is never touched.
	s.cgroupParent = fmt.Sprintf("berth-e2e-%d", os.Getpid())
	cfgPath := filepath.Join(dir, "config.hcl")
	src := fmt.Sprintf(`
berth {
  state_dir   = %[1]q
  runtime_dir = %[2]q
  plugin_dirs = [%[3]q]
  log_level   = "debug"
}
plugin "resources" "cgroup" {
  parent = %[4]q
}
plugin "snapshot" "overlay" {}
plugin "isolation" "sandbox" {
  default     = true
  snapshotter = "overlay"
}
plugin "lifecycle" "local" {
  restart_backoff = "50ms"
}
`, filepath.Join(dir, "state"), filepath.Join(dir, "run"), filepath.Join(binDir, "plugins"), s.cgroupParent)
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		return nil, err
	}
	cfg, diags := config.Load(cfgPath)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s", config.FormatDiagnostics(diags))
	}
	specs, diags := daemon.HostSpecs(cfg)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s", config.FormatDiagnostics(diags))
	}
	s.specs = specs
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	if err := s.h.Start(ctx, specs); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// crashAndRestart kills every plugin process with SIGKILL, as when the
// daemon is killed (its plugins die with it), runs meanwhile, and starts a
// new host on the same state: what `berth system start` does after a
// crash.
func (s *stack) crashAndRestart(t *testing.T, meanwhile func()) {
	t.Helper()
	var pids []int
	for _, p := range s.h.Plugins() {
		pids = append(pids, p.Pid)
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	s.h.Stop(ctx)
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("plugin process %d gone", pid), func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		})
	}
	meanwhile()
	s.h = host.New(s.hostOpts)
	if err := s.h.Start(ctx, s.specs); err != nil {
		t.Fatalf("start the plugins again: %v", err)
	}
}

func (s *stack) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if m, err := s.manager(); err == nil {
		if cs, err := m.List(ctx, lifecycle.Filter{All: true}); err == nil {
			for _, c := range cs {
				_ = m.Delete(ctx, c.ID, true)
			}
		}
	}
	s.h.Stop(ctx)
	// Supervisors outlive plugins by design; the containers were removed
	// above, so nothing of them is left to kill. Groups were deleted with
	// them; only the run's parent cgroup remains.
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", s.cgroupParent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", s.cgroupParent))
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() {
				fmt.Fprintf(os.Stderr, "e2e: cgroup %s left behind\n", filepath.Join(d, e.Name()))
				leaked = true
				_ = os.Remove(filepath.Join(d, e.Name()))
			}
		}
		_ = os.Remove(d)
	}
	_ = os.RemoveAll(s.dir)
}

// leaked is set when the stack's teardown found something left behind; it
// fails the run.
var leaked bool

// busyboxRootfs lays out a rootfs of Debian's static busybox.
func busyboxRootfs(dir string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("the e2e tests need Debian's busybox-static (scripts/install-deps.sh installs it): %w", err)
	}
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	for _, applet := range []string{"sh", "sleep", "true", "false", "cat", "echo", "ls", "kill"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644)
}

// manager returns the live lifecycle client (a new one after the plugin
// restarts).
func (s *stack) manager() (lifecycle.Manager, error) {
	c, err := s.h.Client(plugin.LayerLifecycle, "local")
	if err != nil {
		return nil, err
	}
	m, ok := c.(lifecycle.Manager)
	if !ok {
		return nil, fmt.Errorf("lifecycle client is a %T", c)
	}
	return m, nil
}

func (s *stack) mustManager(t *testing.T) lifecycle.Manager {
	t.Helper()
	var m lifecycle.Manager
	eventually(t, "lifecycle plugin available", func() bool {
		var err error
		m, err = s.manager()
		return err == nil
	})
	return m
}

func (s *stack) pluginPid(t *testing.T, id string) int {
	t.Helper()
	for _, p := range s.h.Plugins() {
		if string(p.Layer)+"/"+p.Name == id {
			return p.Pid
		}
	}
	t.Fatalf("plugin %s not running", id)
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not so after %s", what, waitFor)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitFor)
	t.Cleanup(cancel)
	return ctx
}

// sleeper runs until SIGTERM (a shell as PID 1 needs a trap to end on it).
func (s *stack) sleeper() lifecycle.Config {
	return lifecycle.Config{Image: s.image, Cmd: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}}
}

func (s *stack) exiter(code int) lifecycle.Config {
	return lifecycle.Config{Image: s.image, Cmd: []string{"sh", "-c", "exit " + strconv.Itoa(code)}}
}
