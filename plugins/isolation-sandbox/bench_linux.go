package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/spec"
)

// Benchmark modes (make bench): `bench-setup DIR` builds the demo image's
// rootfs and a runc bundle of it in DIR; `bench-run DIR CMD…` runs CMD in
// a container of that rootfs through this plugin's runtime — Create (the
// supervisor and the init), Start, Wait, Delete — as `runc run` does for
// the peer. The timed path is the plugin's own code; only the gRPC hop
// from the core is left out.

func benchRequested() bool {
	return len(os.Args) > 1 && (os.Args[1] == "bench-run" || os.Args[1] == "bench-setup" || os.Args[1] == "bench-pss")
}

func benchMain() {
	var err error
	switch {
	case len(os.Args) < 3:
		err = errors.New("usage: isolation-sandbox bench-setup DIR | bench-run DIR CMD...")
	case os.Args[1] == "bench-setup":
		err = benchSetup(os.Args[2])
	case os.Args[1] == "bench-pss":
		err = benchPSS(os.Args[2])
	default:
		err = benchRun(os.Args[2], os.Args[3:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolation-sandbox:", err)
		os.Exit(1)
	}
}

// benchSpec is the container both sides run: Docker's defaults (seccomp,
// capabilities, masked paths) on a read-only rootfs.
func benchSpec(id string, args []string) (*specs.Spec, error) {
	return spec.Build(spec.ImageConfig{Cmd: args, Env: []string{"PATH=/bin"}}, lifecycle.Config{ReadOnlyRootfs: true}, spec.Extra{ContainerID: id})
}

// benchSetup writes DIR/rootfs (the demo image's) and two runc bundles of
// it running `true`: DIR/bundle with the very spec the plugin runs (so both
// sides do the same work), DIR/bundle-plain with `runc spec`'s default
// (no seccomp profile, fewer masked paths), for reference.
func benchSetup(dir string) error {
	rootfs, err := filepath.Abs(filepath.Join(dir, "rootfs"))
	if err != nil {
		return err
	}
	if out, err := exec.Command("scripts/demo-image.sh", "--rootfs", rootfs).CombinedOutput(); err != nil {
		return fmt.Errorf("demo rootfs: %v\n%s", err, out)
	}
	same, err := benchSpec("berth-bench", []string{"true"})
	if err != nil {
		return err
	}
	same.Root = &specs.Root{Path: rootfs, Readonly: true}
	if err := writeBundle(filepath.Join(dir, "bundle"), same); err != nil {
		return err
	}
	plain := filepath.Join(dir, "bundle-plain")
	if err := os.MkdirAll(plain, 0o755); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(plain, "config.json"))
	if out, err := exec.Command("runc", "spec", "--bundle", plain).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %v\n%s", err, out)
	}
	var cfg specs.Spec
	if err := atomicfile.ReadJSON(filepath.Join(plain, "config.json"), &cfg); err != nil {
		return err
	}
	cfg.Process.Terminal = false
	cfg.Process.Args = []string{"true"}
	cfg.Root = &specs.Root{Path: rootfs, Readonly: true}
	return writeBundle(plain, &cfg)
}

func writeBundle(dir string, s *specs.Spec) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

// benchPSS starts three idle containers (sleep) and prints each
// supervisor's proportional set size from /proc/PID/smaps_rollup, then
// removes them.
func benchPSS(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := benchRuntime(ctx, dir)
	if err != nil {
		return err
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			_ = rt.Signal(context.Background(), id, "", syscall.SIGKILL, true)
			_, _ = rt.Wait(context.Background(), id, "")
			_, _ = rt.Delete(context.Background(), id)
		}
	}()
	for i := range 3 {
		id := fmt.Sprintf("pss-%d-%d", os.Getpid(), i)
		oci, err := benchSpec(id, []string{"sleep", "1000"})
		if err != nil {
			return err
		}
		s := isolation.Spec{ID: id, OCI: oci, Rootfs: []mount.Mount{{Type: "bind", Source: filepath.Join(dir, "rootfs"), Options: []string{"rbind", "ro"}}}}
		if _, err := rt.Create(ctx, s); err != nil {
			return err
		}
		ids = append(ids, id)
		if _, err := rt.Start(ctx, id); err != nil {
			return err
		}
	}
	time.Sleep(2 * time.Second) // idle
	for _, id := range ids {
		var st supervisor.State
		if err := atomicfile.ReadJSON(filepath.Join(dir, "state", "tasks", id, supervisor.StateFile), &st); err != nil {
			return err
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", st.SupervisorPid))
		if err != nil {
			return err
		}
		fields := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		fmt.Printf("supervisor %d: Pss %s (anon %s, file %s), Rss %s\n", st.SupervisorPid, fields["Pss"], fields["Pss_Anon"], fields["Pss_File"], fields["Rss"])
	}
	return nil
}

func benchRuntime(ctx context.Context, dir string) (*runtime, error) {
	rt := newRuntime(hclog.NewNullLogger())
	initPath, err := findInit(nil)
	if err != nil {
		return nil, err
	}
	cfg := schema.Config{JSON: []byte(fmt.Sprintf(`{"init_path":%q}`, initPath))}
	if err := rt.Configure(ctx, plugin.ConfigureRequest{Config: cfg, StateDir: filepath.Join(dir, "state"), RuntimeDir: filepath.Join(dir, "run")}); err != nil {
		return nil, err
	}
	return rt, nil
}

func benchRun(dir string, args []string) error {
	if len(args) == 0 {
		return errors.New("bench-run: no command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := benchRuntime(ctx, dir)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("bench-%d", os.Getpid())
	oci, err := benchSpec(id, args)
	if err != nil {
		return err
	}
	s := isolation.Spec{ID: id, OCI: oci, Rootfs: []mount.Mount{{Type: "bind", Source: filepath.Join(dir, "rootfs"), Options: []string{"rbind", "ro"}}}}
	if _, err := rt.Create(ctx, s); err != nil {
		return err
	}
	defer func() { _, _ = rt.Delete(context.Background(), id) }()
	if _, err := rt.Start(ctx, id); err != nil {
		return err
	}
	e, err := rt.Wait(ctx, id, "")
	if err != nil {
		return err
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		return err
	}
	if e.Code != 0 {
		return fmt.Errorf("%v exited %d", args, e.Code)
	}
	return nil
}
