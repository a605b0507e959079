// Package snapshottest runs a snapshot plugin binary the way the daemon
// does (built, launched and supervised by core/host from a config.hcl) and
// hands tests the client the host holds for it.
package snapshottest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/daemon"
	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// Build builds the plugin main package pkg into a temp dir as
// snapshot-<name> and returns its path.
func Build(t *testing.T, pkg, name string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the plugin needs the go tool in PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "snapshot-"+name)
	if out, err := exec.Command(gobin, "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Launch starts the plugin at bin as snapshot plugin name under a host, with
// short state and runtime dirs below stateRoot ("" for a temp dir), and
// returns the host's client for it. The host stops when the test ends.
func Launch(t *testing.T, bin, name, stateRoot string) snapshot.Snapshotter {
	t.Helper()
	dir := stateRoot
	if dir == "" {
		d, err := os.MkdirTemp("", "berth-snap")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		dir = d
	}
	src := fmt.Sprintf(`
berth {
  state_dir   = %q
  runtime_dir = %q
  plugin_dirs = []
  log_level   = "debug"
}

plugin "snapshot" %q {
  path = %q
}
`, filepath.Join(dir, "state"), filepath.Join(dir, "run"), name, bin)
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		t.Fatalf("load %s: %s", path, config.FormatDiagnostics(diags))
	}
	specs, diags := daemon.HostSpecs(cfg)
	if diags.HasErrors() {
		t.Fatalf("HostSpecs: %s", config.FormatDiagnostics(diags))
	}
	h := host.New(host.Options{
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Warn, Output: os.Stderr}),
		LogLevel:   "warn",
		StateDir:   cfg.Berth.StateDir,
		RuntimeDir: cfg.Berth.RuntimeDir,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		h.Stop(ctx)
	})
	if err := h.Start(context.Background(), specs); err != nil {
		t.Fatalf("host.Start: %v", err)
	}
	pc, err := h.Client(plugin.LayerSnapshot, name)
	if err != nil {
		t.Fatalf("host.Client(snapshot, %s): %v", name, err)
	}
	sn, ok := pc.(snapshot.Snapshotter)
	if !ok {
		t.Fatalf("host.Client(snapshot, %s) is a %T, not a snapshot.Snapshotter", name, pc)
	}
	return sn
}
