package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/api"
)

// binDir holds berth and its plugins laid out as `make build` does, built
// once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-test-cli")
	if err != nil {
		panic(err)
	}
	binDir = filepath.Join(dir, "bin")
	code := 1
	if err := buildAll(binDir); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
	} else {
		code = m.Run()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildAll builds berth, every in-tree plugin (as make build does: the
// shipped config.hcl enables several) and the host's test plugin.
func buildAll(bin string) error {
	targets := map[string]string{
		".":                              "berth",
		"../../host/testdata/testplugin": "plugins/resources-test",
	}
	dirs, err := os.ReadDir("../../../plugins")
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if d.IsDir() {
			targets["../../../plugins/"+d.Name()] = "plugins/" + d.Name()
		}
	}
	args := []string{"build", "-o"}
	for pkg, out := range targets {
		cmd := exec.Command("go", append(args, filepath.Join(bin, out), pkg)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", pkg, err)
		}
	}
	// The sandbox's static init, as make build links it (the isolation
	// plugin refuses to configure without it).
	cmd := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`,
		"-o", filepath.Join(bin, "berth-sandbox-init"), "../../../cmd/berth-sandbox-init")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("berth-sandbox-init: %w", err)
	}
	return nil
}

// env is one test's config and directories.
type env struct {
	t      *testing.T
	dir    string
	config string
}

// newEnv writes config (with %s standing for the test's directory) beside a
// copy of the shipped plugin layout; paths stay short for unix sockets.
func newEnv(t *testing.T, config string) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, config: filepath.Join(dir, "config.hcl")}
	if err := os.Symlink(binDir, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.ReplaceAll(config, "%s", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _, _ = e.berth("system", "stop")
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "state", "berthd.log"))
			t.Logf("daemon log:\n%s", b)
		}
		_ = os.RemoveAll(dir)
	})
	return e
}

// berth runs the CLI with the env's config and returns stdout, stderr and
// the exit code.
func (e *env) berth(args ...string) (string, string, int) {
	cmd := exec.Command(filepath.Join(binDir, "berth"), append([]string{"--config", e.config}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("berth %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (e *env) mustBerth(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.berth(args...)
	if code != 0 {
		e.t.Fatalf("berth %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	return out
}

func (e *env) plugins() []api.PluginStatus {
	e.t.Helper()
	var ps []api.PluginStatus
	if err := json.Unmarshal([]byte(e.mustBerth("plugin", "ls", "--format", "json")), &ps); err != nil {
		e.t.Fatal(err)
	}
	return ps
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const daemonConfig = `
berth {
  state_dir   = "%s/state"
  runtime_dir = "%s/run"
  log_level   = "debug"
}
plugin "api" "grpc" {}
plugin "resources" "test" {
  label = "from-${platform}"
}
`

func TestShippedConfigValidates(t *testing.T) {
	shipped, err := os.ReadFile("../../../config.hcl")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, string(shipped))
	out := e.mustBerth("config", "validate", e.config)
	if !strings.Contains(out, "valid") {
		t.Fatalf("validate output = %q", out)
	}
}

func TestValidateReportsEveryProblemWithItsPosition(t *testing.T) {
	// A typo, a wrong type, a missing required attribute and an unknown
	// plugin, all in one file: each is reported at its place, in one run.
	e := newEnv(t, `
plugin "api" "grpc" {
  bogus  = true
  socket = ["not", "a", "string"]
}
plugin "resources" "test" {}
plugin "snapshot" "nosuch" {}
`)
	_, stderr, code := e.berth("config", "validate")
	if code != 1 {
		t.Fatalf("exit code = %d; want 1\n%s", code, stderr)
	}
	for _, w := range []string{
		`config.hcl:3,3-8: in plugin "api" "grpc": An argument named "bogus" is not expected here.`,
		`config.hcl:4,12-34: in plugin "api" "grpc": Inappropriate value for attribute "socket": string required`,
		`config.hcl:6,27-27: in plugin "resources" "test": The argument "label" is required, but no definition was found.`,
		`config.hcl:7,1-27: in plugin "snapshot" "nosuch": unknown plugin: no binary named snapshot-nosuch`,
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}

	// Envelope mistakes are reported before any plugin is launched.
	e2 := newEnv(t, `
plugin "resources" "test" {
  default = "yes"
  enabeld = true
}
`)
	_, stderr, code = e2.berth("config", "validate")
	if code != 1 {
		t.Fatalf("exit code = %d; want 1\n%s", code, stderr)
	}
	if !strings.Contains(stderr, `config.hcl:3,13-18: in plugin "resources" "test": Inappropriate value for attribute "default": a bool is required.`) {
		t.Errorf("stderr lacks the wrong-type error:\n%s", stderr)
	}
}

func TestDaemonRestartsKilledPluginsAndTakesThemDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon's state and runtime dirs are created with root-only modes (CI runs as root)")
	}
	e := newEnv(t, daemonConfig)
	out := e.mustBerth("system", "start")
	if !strings.Contains(out, "berth daemon started") {
		t.Fatalf("start output = %q", out)
	}
	if out := e.mustBerth("system", "start"); !strings.Contains(out, "already running") {
		t.Fatalf("second start = %q", out)
	}

	ps := e.plugins()
	if len(ps) != 2 {
		t.Fatalf("plugins = %+v", ps)
	}
	byName := map[string]api.PluginStatus{}
	for _, p := range ps {
		if p.Pid <= 0 || p.Health != api.HealthHealthy {
			t.Fatalf("plugin not running: %+v", p)
		}
		byName[string(p.Layer)+"/"+p.Name] = p
	}
	if !strings.Contains(e.mustBerth("version"), "Server:") {
		t.Fatal("version shows no server")
	}

	// kill -9 a plugin: it comes back with a new pid.
	old := byName["api/grpc"].Pid
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "api/grpc restarted with a new pid", func() bool {
		for _, p := range e.plugins() {
			if p.Name == "grpc" {
				return p.Pid > 0 && p.Pid != old && p.Restarts >= 1 && p.Health == api.HealthHealthy
			}
		}
		return false
	})
	// The CLI reaches the public API again (it retries while it restarts).
	if !strings.Contains(e.mustBerth("version"), "Server:") {
		t.Fatal("version shows no server after the api plugin restarted")
	}

	// kill -9 the daemon: no plugin process is left running.
	var st api.Status
	if err := json.Unmarshal([]byte(e.mustBerth("system", "status", "--format", "json")), &st); err != nil {
		t.Fatal(err)
	}
	pids := []int{}
	for _, p := range st.Plugins {
		pids = append(pids, p.Pid)
	}
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, pid := range append(pids, st.Pid) {
		eventually(t, fmt.Sprintf("pid %d to be gone", pid), func() bool { return !processAlive(pid) })
	}

	// A daemon started after the crash takes over the stale pid file and
	// sockets, and stops cleanly.
	e.mustBerth("system", "start")
	if out := e.mustBerth("system", "stop"); !strings.Contains(out, "stopped") {
		t.Fatalf("stop output = %q", out)
	}
	for _, name := range []string{"admin.sock", "berthd.pid"} {
		if _, err := os.Stat(filepath.Join(e.dir, "run", name)); !os.IsNotExist(err) {
			t.Errorf("%s left behind after stop (%v)", name, err)
		}
	}
	if out, _, _ := e.berth("system", "status"); out != "" {
		t.Errorf("status after stop printed %q", out)
	}
}

func TestDaemonReportsPluginThatFailsToStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root)")
	}
	e := newEnv(t, `
berth {
  state_dir   = "%s/state"
  runtime_dir = "%s/run"
}
plugin "api" "grpc" {
  sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
}
`)
	_, stderr, code := e.berth("system", "start")
	if code == 0 || !strings.Contains(stderr, "does not match the sha256 in config.hcl") {
		t.Fatalf("start with a wrong checksum: exit %d\n%s", code, stderr)
	}
}
