package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/plugin"
)

// waitTemplate waits until the plugin's template store holds a valid
// template and returns it.
func waitTemplate(t *testing.T, stateDir string) vmtemplate.Entry {
	t.Helper()
	store := &vmtemplate.Store{Dir: templatesDir(stateDir)}
	var got vmtemplate.Entry
	eventually(t, "the vm template is built", func() bool {
		entries, _ := store.List()
		for _, e := range entries {
			if e.Err == nil {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// runTask creates, starts and waits for a task running script, and
// returns its output and the supervisor log.
func runTask(t *testing.T, rt *runtime, stateDir, id, script string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := rt.Create(ctx, newSpec(t, id, conformance.SpecOptions{Args: []string{"sh", "-c", script}})); err != nil {
		t.Fatalf("Create %s: %v", id, err)
	}
	created := time.Since(start)
	var out strings.Builder
	done := make(chan error, 1)
	go func() { done <- rt.Attach(ctx, id, "", isolation.Streams{Stdout: &syncWriter{b: &out}}) }()
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start %s: %v", id, err)
	}
	if e, err := rt.Wait(ctx, id, ""); err != nil || e.Code != 0 {
		t.Fatalf("Wait %s = %+v, %v", id, e, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Attach %s: %v", id, err)
	}
	slog, _ := os.ReadFile(filepath.Join(stateDir, "tasks", id, supervisorLog))
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete %s: %v", id, err)
	}
	t.Logf("%s: created in %v, ran and deleted in %v", id, created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, l := range strings.Split(string(slog), "\n") {
		if strings.Contains(l, "since_start") || strings.Contains(l, "took") {
			t.Logf("  %s", l)
		}
	}
	return out.String(), string(slog)
}

// TestTemplateStart: with templates on, the first task boots cold and
// starts the template's build; later tasks start from it and are each
// their own (hostname, random numbers, clock); a template-started task
// checkpoints with its RAM file and restores where it was; a corrupt
// template means a logged cold boot and a rebuild; nothing is left.
func TestTemplateStart(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, `,"templates":true`)
	script := "hostname; cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s"

	_, slog := runTask(t, rt, stateDir, "tpl-first", "true")
	if !strings.Contains(slog, "booting cold") {
		t.Errorf("first task: want a cold boot (no template yet); supervisor log:\n%s", slog)
	}
	tpl := waitTemplate(t, stateDir)
	t.Logf("template %s built in %v", tpl.ID, tpl.Manifest.BuildTook.Round(time.Millisecond))

	var outs [2][]string
	for i := range outs {
		id := "tpl-clone-" + strconv.Itoa(i)
		before := time.Now().Unix()
		out, slog := runTask(t, rt, stateDir, id, script)
		after := time.Now().Unix()
		if !strings.Contains(slog, "vm started from template") {
			t.Fatalf("%s did not start from the template; supervisor log:\n%s", id, slog)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("%s output %q", id, out)
		}
		outs[i] = lines
		if lines[0] != id[:min(12, len(id))] {
			t.Errorf("%s hostname %q", id, lines[0])
		}
		if d, err := strconv.ParseInt(lines[3], 10, 64); err != nil || d < before-1 || d > after+1 {
			t.Errorf("%s date %q, host %d..%d: want within 1 s", id, lines[3], before, after)
		}
	}
	if outs[0][1] == outs[1][1] || outs[0][2] == outs[1][2] {
		t.Errorf("two template-started VMs drew the same random numbers: %q %q", outs[0], outs[1])
	}

	// Checkpoint of a template-started VM (file-backed RAM) and restore.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := filepath.Join(t.TempDir(), "task.log")
	id := "tpl-counter"
	spec := newSpec(t, id, conformance.SpecOptions{LogPath: log,
		Args: []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"}})
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = rt.Delete(context.Background(), id) }()
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the counter reaches 5", func() bool { return len(counterLines(t, log)) >= 5 })
	if err := rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	ckDir := filepath.Join(t.TempDir(), "ck")
	if err := os.Mkdir(ckDir, 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := rt.Checkpoint(ctx, id, isolation.CheckpointOptions{Dir: ckDir}); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	t.Logf("checkpoint of a paused template-started 256 MiB VM: %v", time.Since(start).Round(time.Millisecond))
	if fi, err := os.Stat(filepath.Join(ckDir, checkpointVM, checkpointRAM)); err != nil || fi.Size() != 256<<20 {
		t.Fatalf("checkpoint RAM file: %v, %v", fi, err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	saved := counterLines(t, log)
	start = time.Now()
	if _, err := rt.Restore(ctx, spec, ckDir); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restore of it: %v", time.Since(start).Round(time.Millisecond))
	eventually(t, "the counter goes on after the restore", func() bool { return len(counterLines(t, log)) >= len(saved)+3 })
	if after := counterLines(t, log)[len(saved):]; after[0] != saved[len(saved)-1]+1 {
		t.Errorf("counter after the restore %v, last before %d", after[:3], saved[len(saved)-1])
	}
	if err := rt.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}

	// A corrupt template: a clear reason in the log, a cold boot, the
	// template built again.
	// The RAM clone of a VM whose supervisor was killed with it (no run
	// dir any more) is swept at the next Create.
	cloneDir := (&vmtemplate.Store{Dir: templatesDir(stateDir)}).CloneDir()
	stale := filepath.Join(cloneDir, "0123456789ab.ram")
	if err := os.WriteFile(stale, []byte("ram of a dead VM"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(tpl.Dir, vmtemplate.VMDir, "state")
	if err := os.WriteFile(state, []byte("not a migration stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, slog := runTask(t, rt, stateDir, "tpl-corrupt", "echo still runs")
	if out != "still runs\n" || !strings.Contains(slog, "is corrupt") || !strings.Contains(slog, "booting cold") {
		t.Errorf("corrupt template: output %q; supervisor log:\n%s", out, slog)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale RAM clone %s not swept: %v", stale, err)
	}
	waitTemplate(t, stateDir)
	noLeaks(t, stateDir, runDir)
	clones, _ := os.ReadDir((&vmtemplate.Store{Dir: templatesDir(stateDir)}).CloneDir())
	if len(clones) > 0 {
		t.Errorf("RAM clones left: %v", clones)
	}
}

// TestConformanceFromTemplate runs the isolation conformance suite in
// process against a runtime whose tasks start from a template (built by a
// first task); Restart is a new runtime over the same dirs (the
// supervisors, separate processes, keep running), then Recover.
func TestConformanceFromTemplate(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	var logBuf strings.Builder
	logw := &syncWriter{b: &logBuf}
	newRT := func(t *testing.T) *runtime {
		rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: logw}))
		rt.supervisorExe = filepath.Join(binDir, "isolation-vm")
		if err := rt.Configure(context.Background(), plugin.ConfigureRequest{Config: testConfig(`,"templates":true`),
			StateDir: stateDir, RuntimeDir: runDir}); err != nil {
			t.Fatalf("Configure: %v", err)
		}
		return rt
	}
	rt := newRT(t)
	runTask(t, rt, stateDir, "tpl-warm", "true")
	waitTemplate(t, stateDir)
	var specs atomic.Int32
	start := time.Now()
	conformance.Run(t, func(*testing.T) isolation.Runtime { return rt }, conformance.Options{
		NewSpec: func(t *testing.T, id string, o conformance.SpecOptions) isolation.Spec {
			specs.Add(1)
			return newSpec(t, id, o)
		},
		Capabilities: capabilities(),
		Restart: func(t *testing.T) isolation.Runtime {
			rt = newRT(t)
			return rt
		},
	})
	logw.mu.Lock()
	fromTemplate := strings.Count(logBuf.String(), "task starts from vm template")
	logw.mu.Unlock()
	t.Logf("conformance from templates: %d task specs, %d tasks started from the template, in %s", specs.Load(), fromTemplate,
		time.Since(start).Round(time.Second))
	if fromTemplate == 0 {
		t.Errorf("no task started from the template; plugin log:\n%s", logBuf.String())
	}
	noLeaks(t, stateDir, runDir)
}
