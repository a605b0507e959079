package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/spec"
)

const deadline = 30 * time.Second

func imageConfig(cmd ...string) spec.ImageConfig {
	return spec.ImageConfig{Cmd: cmd, Env: []string{"PATH=/bin"}, OS: "linux"}
}

// newTestManager configures a Manager over fake layers in a fresh state
// dir, with short restart backoffs.
func newTestManager(t *testing.T, l *fakeLayers, dir string) *Manager {
	t.Helper()
	m := NewWithLayers(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}), l)
	m.settings = DefaultSettings()
	if err := m.Configure(context.Background(), plugin.ConfigureRequest{StateDir: dir, RuntimeDir: t.TempDir()}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	m.settings.RestartBackoff = 10 * time.Millisecond
	m.settings.MaxRestartBackoff = 40 * time.Millisecond
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not true after %s", what, deadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func stateOf(t *testing.T, m *Manager, ref string) lifecycle.Container {
	t.Helper()
	c, err := m.Get(context.Background(), ref)
	if err != nil {
		t.Fatalf("Get(%s): %v", ref, err)
	}
	return c
}

func TestCreateDrivesLayersInOrder(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	l.j.take()
	ctx := context.Background()
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine", Env: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !IsContainerID(c.ID) || c.Name != "web" || c.State != lifecycle.StateCreated || c.Isolation != "sandbox" || c.SnapshotKey != c.ID || c.ImageDigest != l.images.images["alpine"].Digest {
		t.Fatalf("created %+v", c)
	}
	chains := ChainIDs(l.images.images["alpine"].Layers)
	var got []string
	for _, call := range l.j.take() {
		// Extraction keys are random; keep their shape.
		f := strings.Fields(call)
		for i := range f {
			if strings.HasPrefix(f[i], "extract-") {
				f[i] = "extract"
			}
		}
		got = append(got, strings.Join(f, " "))
	}
	want := []string{
		"images.Resolve alpine",
		"images.AddLease " + c.ID + " " + l.images.images["alpine"].Digest,
		"snapshot.Stat " + chains[1], "snapshot.Stat " + chains[0],
		"snapshot.Prepare extract", "images.OpenBlob sha256:" + strings.Repeat("1", 64), "snapshot.Apply extract sha256:" + strings.Repeat("1", 64), "snapshot.Commit " + chains[0] + " extract",
		"snapshot.Prepare extract " + chains[0], "images.OpenBlob sha256:" + strings.Repeat("2", 64), "snapshot.Apply extract sha256:" + strings.Repeat("2", 64), "snapshot.Commit " + chains[1] + " extract",
		"snapshot.Prepare " + c.ID + " " + chains[1],
		"resources.CreateGroup " + c.ID,
		"isolation.Create " + c.ID,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The task spec: the rootfs mounts from Prepare, the cgroup from the
	// placement, the process from the image and the user's env.
	task := l.iso.tasks[c.ID].info.Spec
	if len(task.Rootfs) != 1 || task.Rootfs[0].Type != "overlay" || task.OCI.Linux.CgroupsPath != "/berth/"+c.ID ||
		!slices.Equal(task.OCI.Process.Args, []string{"/bin/sh", "-c", "echo hi"}) || !slices.Contains(task.OCI.Process.Env, "A=1") || task.LogPath == "" {
		t.Fatalf("task spec %+v / %+v", task, task.OCI.Process)
	}
	// A second container of the same image reuses the unpacked layers.
	if task.Annotations[isolation.AnnotationOpenStdin] != "" {
		t.Errorf("a container without -i got an open stdin")
	}
	c2, err := m.Create(ctx, "", lifecycle.Config{Image: "alpine", OpenStdin: true})
	if err != nil {
		t.Fatal(err)
	}
	if c2.Name != c2.ID[:12] {
		t.Errorf("unnamed container got name %q, want its short id", c2.Name)
	}
	if l.iso.tasks[c2.ID].info.Spec.Annotations[isolation.AnnotationOpenStdin] != "open" {
		t.Errorf("OpenStdin did not reach the task spec as %s", isolation.AnnotationOpenStdin)
	}
	if n := l.j.count("snapshot.Apply"); n != 0 {
		t.Errorf("second create applied %d layers again", n)
	}
	if _, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine"}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second create named web = %v, want ErrAlreadyExists", err)
	}
	for _, bad := range []string{"-x", "a b", strings.Repeat("ab", 32)} {
		if _, err := m.Create(ctx, bad, lifecycle.Config{Image: "alpine"}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("create named %q = %v, want ErrInvalidArgument", bad, err)
		}
	}
	if _, err := m.Create(ctx, "x", lifecycle.Config{Image: "alpine", Isolation: "vm"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"vm"`) {
		t.Errorf("create in an unconfigured mode = %v, want ErrInvalidArgument naming it", err)
	}
	if got, err := m.Get(ctx, c.ID[:10]); err != nil || got.ID != c.ID {
		t.Errorf("Get by id prefix = %v, %v", got.ID, err)
	}
}

// TestFailedCreateLeavesNothing fails each step of Create in turn: no
// snapshot, group, task or record remains, and the name is free again.
func TestFailedCreateLeavesNothing(t *testing.T) {
	for _, step := range []string{"images.Resolve", "images.AddLease", "snapshot.Apply", "snapshot.Prepare", "resources.CreateGroup", "isolation.Create"} {
		t.Run(step, func(t *testing.T) {
			l := newFakeLayers()
			m := newTestManager(t, l, t.TempDir())
			boom := errdefs.Unavailable("%s failed on purpose", step)
			l.j.failOn(step, boom)
			_, err := m.Create(context.Background(), "web", lifecycle.Config{Image: "alpine"})
			if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "on purpose") || !strings.Contains(err.Error(), "create web") {
				t.Fatalf("Create = %v, want the step's error, wrapped with the container name", err)
			}
			if a := l.snap.active(); len(a) != 0 {
				t.Errorf("active snapshots left: %v", a)
			}
			if g := l.res.groupIDs(); len(g) != 0 {
				t.Errorf("groups left: %v", g)
			}
			if ts := l.iso.taskIDs(); len(ts) != 0 {
				t.Errorf("tasks left: %v", ts)
			}
			if n := l.images.leaseCount(); n != 0 {
				t.Errorf("%d image leases left", n)
			}
			if cs, _ := m.List(context.Background(), lifecycle.Filter{All: true}); len(cs) != 0 {
				t.Errorf("records left: %+v", cs)
			}
			l.j.failOn(step, nil)
			if _, err := m.Create(context.Background(), "web", lifecycle.Config{Image: "alpine"}); err != nil {
				t.Errorf("create after the failure cleared: %v", err)
			}
		})
	}
}

func TestRunPauseStopDeleteOrder(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	id := c.ID
	expect := func(what string, want ...string) {
		t.Helper()
		var got []string
		for _, call := range l.j.take() {
			if !strings.HasPrefix(call, "resources.Usage") {
				got = append(got, strings.ReplaceAll(call, id, "ID"))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s calls:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	l.j.take()
	if c, err = m.Start(ctx, "web"); err != nil || c.State != lifecycle.StateRunning || c.Pid == 0 {
		t.Fatalf("Start = %+v, %v", c, err)
	}
	expect("start", "isolation.Start ID")
	if _, err := m.Start(ctx, "web"); !errdefs.IsInvalidState(err) || err.Error() != "container web is running; only a created or stopped container can be started" {
		t.Fatalf("second Start = %v", err)
	}
	if c, err = m.Pause(ctx, "web"); err != nil || c.State != lifecycle.StatePaused {
		t.Fatalf("Pause = %+v, %v", c, err)
	}
	expect("pause", "resources.SetPaused ID true", "isolation.Pause ID")
	if c, err = m.Resume(ctx, "web"); err != nil || c.State != lifecycle.StateRunning {
		t.Fatalf("Resume = %+v, %v", c, err)
	}
	expect("resume", "isolation.Resume ID", "resources.SetPaused ID false")

	// A pause isolation refuses leaves the group unmarked again.
	l.j.failOn("isolation.Pause", errdefs.Unavailable("freezer busy"))
	if _, err := m.Pause(ctx, "web"); err == nil {
		t.Fatal("Pause succeeded though isolation failed")
	}
	expect("failed pause", "resources.SetPaused ID true", "isolation.Pause ID", "resources.SetPaused ID false")
	l.j.failOn("isolation.Pause", nil)
	if stateOf(t, m, "web").State != lifecycle.StateRunning {
		t.Fatal("a failed pause changed the state")
	}

	if _, err := m.Exec(ctx, "web", lifecycle.ExecConfig{Cmd: []string{"ls", "/"}, User: "1000:1000"}); err != nil {
		t.Fatal(err)
	}
	expect("exec", "isolation.Exec ID ls /")

	// The process ignores SIGTERM: stop escalates to SIGKILL after the
	// timeout.
	l.iso.ignore[15] = true
	if c, err = m.Stop(ctx, "web", 50*time.Millisecond); err != nil || c.State != lifecycle.StateStopped || c.ExitCode != 137 {
		t.Fatalf("Stop = %+v, %v; want stopped with 137", c, err)
	}
	expect("stop", "isolation.Signal ID 15 false", "isolation.Signal ID 9 true")
	if _, err := m.Pause(ctx, "web"); err == nil || err.Error() != "container web is stopped; only a running container can be paused" {
		t.Fatalf("Pause of a stopped container = %v", err)
	}
	if c, err = m.Stop(ctx, "web", time.Second); err != nil || c.State != lifecycle.StateStopped {
		t.Fatalf("Stop of a stopped container = %+v, %v; want a no-op", c, err)
	}
	l.j.take()

	// Starting a stopped container creates its task again.
	if c, err = m.Start(ctx, "web"); err != nil || c.State != lifecycle.StateRunning {
		t.Fatalf("restart = %+v, %v", c, err)
	}
	expect("start again", "isolation.Delete ID", "isolation.Create ID", "isolation.Start ID")
	if err := m.Delete(ctx, "web", false); !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "force") {
		t.Fatalf("Delete of a running container = %v, want ErrInvalidState suggesting force", err)
	}
	l.iso.ignore[15] = false
	if err := m.Delete(ctx, "web", true); err != nil {
		t.Fatal(err)
	}
	expect("force delete", "isolation.Signal ID 9 true", "isolation.Delete ID", "resources.Delete ID", "snapshot.Remove ID", "images.DeleteLease ID")
	if _, err := m.Get(ctx, "web"); !errdefs.IsNotFound(err) {
		t.Fatalf("Get after delete = %v", err)
	}
	if err := m.Delete(ctx, "web", false); !errdefs.IsNotFound(err) {
		t.Fatalf("Delete of a deleted container = %v, want ErrNotFound", err)
	}
	if len(l.snap.active()) != 0 || len(l.res.groupIDs()) != 0 || len(l.iso.taskIDs()) != 0 || l.images.leaseCount() != 0 {
		t.Fatalf("left behind: snapshots %v groups %v tasks %v", l.snap.active(), l.res.groupIDs(), l.iso.taskIDs())
	}
}

func TestCheckpoint(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	c, _ := m.Create(ctx, "db", lifecycle.Config{Image: "alpine"})
	if _, err := m.Start(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	l.j.take()
	// Without CRIU: surfaced plainly, and the container runs on.
	_, err := m.Checkpoint(ctx, "db", false)
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "container db cannot be checkpointed") {
		t.Fatalf("Checkpoint = %v, want ErrNotImplemented saying so", err)
	}
	if got := stateOf(t, m, "db"); got.State != lifecycle.StateRunning {
		t.Fatalf("after a failed checkpoint the container is %s", got.State)
	}
	calls := strings.Join(l.j.take(), "\n")
	want := strings.Join([]string{"resources.SetPaused ID true", "isolation.Pause ID", "isolation.Checkpoint ID false", "isolation.Resume ID", "resources.SetPaused ID false"}, "\n")
	if strings.ReplaceAll(calls, c.ID, "ID") != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", calls, want)
	}

	l.iso.checkpoint = true
	got, err := m.Checkpoint(ctx, "db", false)
	if err != nil || got.State != lifecycle.StateCheckpointed || got.Checkpoint == "" {
		t.Fatalf("Checkpoint = %+v, %v", got, err)
	}
	if _, err := m.Start(ctx, "db"); !errdefs.IsInvalidState(err) {
		t.Fatalf("Start of a checkpointed container = %v", err)
	}
	got, err = m.Restore(ctx, "db")
	if err != nil || got.State != lifecycle.StateRunning || got.Pid == 0 {
		t.Fatalf("Restore = %+v, %v", got, err)
	}
	// The checkpoint killed the earlier run; its late exit changes nothing.
	time.Sleep(20 * time.Millisecond)
	if stateOf(t, m, "db").State != lifecycle.StateRunning {
		t.Fatal("an earlier run's exit stopped the restored container")
	}
	// The restored process exiting is seen.
	l.iso.exit(c.ID, 3)
	eventually(t, "restored container stops with 3", func() bool {
		c := stateOf(t, m, "db")
		return c.State == lifecycle.StateStopped && c.ExitCode == 3
	})
}

// TestOnFailureRestartsExactlyN runs a process that always fails under
// on-failure:3: it is restarted exactly 3 times, then left stopped.
func TestOnFailureRestartsExactlyN(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	code := 1
	l.iso.exitOnStart = &code
	c, err := m.Create(ctx, "flaky", lifecycle.Config{Image: "alpine", Restart: lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 3}})
	if err != nil {
		t.Fatal(err)
	}
	events, _ := m.Events(ctx)
	if _, err := m.Start(ctx, "flaky"); err != nil {
		t.Fatal(err)
	}
	starts, exits := 0, 0
	for exits < 4 {
		select {
		case e := <-events:
			switch e.Kind {
			case lifecycle.EventStart:
				starts++
			case lifecycle.EventExit:
				exits++
				if e.ExitCode != 1 {
					t.Errorf("exit event with code %d", e.ExitCode)
				}
			}
		case <-time.After(deadline):
			t.Fatalf("after %s: %d starts, %d exits; want 4 exits", deadline, starts, exits)
		}
	}
	// The fourth exit is being recorded under the container's lock; once
	// that is done no restart may be pending.
	m.lock(c.ID)()
	m.mu.Lock()
	_, pending := m.timers[c.ID]
	m.mu.Unlock()
	got := stateOf(t, m, "flaky")
	if pending || got.State != lifecycle.StateStopped || got.RestartCount != 3 || got.ExitCode != 1 || l.j.count("isolation.Start "+c.ID) != 4 || starts != 4 {
		t.Fatalf("after the last exit: %s, exit %d, %d restarts, restart pending %v, %d starts (%d start events); want stopped, 1, 3, none pending, 4",
			got.State, got.ExitCode, got.RestartCount, pending, l.j.count("isolation.Start "+c.ID), starts)
	}
	// A success ends on-failure; "no" never restarts.
	if ShouldRestart(store.Record{Container: lifecycle.Container{State: lifecycle.StateStopped, ExitCode: 0, Config: lifecycle.Config{Restart: lifecycle.RestartPolicy{Name: "on-failure"}}}}) {
		t.Error("on-failure restarts after exit 0")
	}
	if ShouldRestart(store.Record{Container: lifecycle.Container{State: lifecycle.StateStopped, ExitCode: 1}}) {
		t.Error("no policy restarts")
	}
	if !ShouldRestart(store.Record{Container: lifecycle.Container{State: lifecycle.StateStopped, RestartCount: 50, Config: lifecycle.Config{Restart: lifecycle.RestartPolicy{Name: "unless-stopped"}}}}) {
		t.Error("unless-stopped does not restart")
	}
}

// TestAlwaysRestartsUntilStopped: "always" restarts after a clean exit,
// and a manual stop ends it.
func TestAlwaysRestartsUntilStopped(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	c, _ := m.Create(ctx, "svc", lifecycle.Config{Image: "alpine", Restart: lifecycle.RestartPolicy{Name: "always"}})
	if _, err := m.Start(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	l.iso.exit(c.ID, 0)
	eventually(t, "restarted after exit 0", func() bool {
		c := stateOf(t, m, "svc")
		return c.RestartCount == 1 && c.State == lifecycle.StateRunning
	})
	if _, err := m.Stop(ctx, "svc", time.Second); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	_, pending := m.timers[c.ID]
	m.mu.Unlock()
	if got := stateOf(t, m, "svc"); got.State != lifecycle.StateStopped || pending {
		t.Fatalf("after manual stop: %s, restart pending %v", got.State, pending)
	}
}

// TestReconcileAfterRestart: a new manager over the same store and the
// same (still running) tasks. One container still runs, one exited
// meanwhile with code 3, one's task vanished, one create was cut short,
// and a task no record knows is left over.
func TestReconcileAfterRestart(t *testing.T) {
	l := newFakeLayers()
	dir := t.TempDir()
	m := NewWithLayers(hclog.NewNullLogger(), l)
	ctx := context.Background()
	if err := m.Configure(ctx, plugin.ConfigureRequest{StateDir: dir}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, name := range []string{"alive", "died", "lost"} {
		c, err := m.Create(ctx, name, lifecycle.Config{Image: "alpine"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
		ids[name] = c.ID
	}
	if _, err := m.Create(ctx, "never", lifecycle.Config{Image: "alpine"}); err != nil {
		t.Fatal(err)
	}
	// Started in isolation, but the plugin died before writing it down.
	unrecorded, err := m.Create(ctx, "unrecorded", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	ids["unrecorded"] = unrecorded.ID
	_ = m.Close() // the plugin dies; containers keep running
	if _, err := l.iso.Start(ctx, unrecorded.ID); err != nil {
		t.Fatal(err)
	}

	l.iso.exit(ids["died"], 3)
	l.iso.mu.Lock()
	delete(l.iso.tasks, ids["lost"])
	l.iso.mu.Unlock()
	// A create cut short after its snapshot and group were made.
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	half := newID()
	if err := st.Create(store.Record{Container: lifecycle.Container{ID: half, Name: "half", Isolation: "sandbox", State: lifecycle.StateCreated}, Creating: true, Snapshotter: "overlay"}); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	chains := ChainIDs(l.images.images["alpine"].Layers)
	if _, err := l.snap.Prepare(ctx, half, chains[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := l.res.CreateGroup(ctx, half, resourcesLimits()); err != nil {
		t.Fatal(err)
	}
	orphan := newID()
	if _, err := l.iso.Create(ctx, isolation.Spec{ID: orphan}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.iso.Start(ctx, orphan); err != nil {
		t.Fatal(err)
	}

	m2 := newTestManager(t, l, dir)
	alive := stateOf(t, m2, "alive")
	if alive.State != lifecycle.StateRunning || alive.Pid != l.iso.tasks[ids["alive"]].info.Pid {
		t.Errorf("alive: %+v", alive)
	}
	if died := stateOf(t, m2, "died"); died.State != lifecycle.StateStopped || died.ExitCode != 3 {
		t.Errorf("died: %s exit %d, want stopped with 3", died.State, died.ExitCode)
	}
	if lost := stateOf(t, m2, "lost"); lost.State != lifecycle.StateStopped || lost.ExitCode != ExitCodeLost {
		t.Errorf("lost: %s exit %d, want stopped with %d", lost.State, lost.ExitCode, ExitCodeLost)
	}
	if never := stateOf(t, m2, "never"); never.State != lifecycle.StateCreated {
		t.Errorf("never: %s", never.State)
	}
	if started := stateOf(t, m2, "unrecorded"); started.State != lifecycle.StateRunning || started.Pid != l.iso.tasks[ids["unrecorded"]].info.Pid {
		t.Errorf("a task started without its record saying so: %s pid %d; want adopted as running", started.State, started.Pid)
	}
	if _, err := m2.Get(ctx, "half"); !errdefs.IsNotFound(err) {
		t.Errorf("half-created container still there: %v", err)
	}
	if slices.Contains(l.snap.active(), half) || slices.Contains(l.res.groupIDs(), half) {
		t.Errorf("half-created container's snapshot or group left")
	}
	if slices.Contains(l.iso.taskIDs(), orphan) {
		t.Errorf("orphan task left")
	}
	all, _ := m2.List(ctx, lifecycle.Filter{All: true})
	if len(all) != 5 {
		t.Errorf("List(all) = %d containers, want 5 (nothing forgotten or duplicated)", len(all))
	}
	running, _ := m2.List(ctx, lifecycle.Filter{})
	if len(running) != 2 || !slices.ContainsFunc(running, func(c lifecycle.Container) bool { return c.Name == "alive" }) {
		t.Errorf("List(running) = %+v", running)
	}
	// The surviving container is watched again: its exit is seen.
	l.iso.exit(ids["alive"], 0)
	eventually(t, "alive's exit seen after reconciliation", func() bool {
		return stateOf(t, m2, "alive").State == lifecycle.StateStopped
	})
	// Wait returns at once for a stopped container.
	wctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	if st, err := m2.Wait(wctx, "died"); err != nil || st.Code != 3 {
		t.Errorf("Wait(died) = %+v, %v", st, err)
	}
}

func TestWaitEventsAndStats(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	events, _ := m.Events(ctx)
	c, _ := m.Create(ctx, "job", lifecycle.Config{Image: "alpine"})
	if _, err := m.Start(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	l.res.usage = isolation.Stats{MemoryBytes: 100, CPUUsageNanos: 5, Pids: 2}
	l.iso.stats = isolation.Stats{MemoryBytes: 70}
	s, err := m.Stats(ctx, "job")
	if err != nil || s.MemoryBytes != 70 || s.CPUUsageNanos != 5 || s.Pids != 2 {
		t.Fatalf("Stats = %+v, %v; want isolation's memory over resources' cpu and pids", s, err)
	}
	done := make(chan isolation.ExitStatus, 1)
	go func() {
		st, err := m.Wait(ctx, "job")
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	time.Sleep(10 * time.Millisecond)
	l.iso.exit(c.ID, 42)
	if st := <-done; st.Code != 42 {
		t.Fatalf("Wait = %+v, want code 42", st)
	}
	if err := m.Delete(ctx, "job", false); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for len(kinds) < 4 {
		e := <-events
		if e.ContainerID != c.ID || e.Name != "job" {
			t.Fatalf("event %+v is not about job", e)
		}
		kinds = append(kinds, e.Kind)
		if e.Kind == lifecycle.EventExit && e.ExitCode != 42 {
			t.Errorf("exit event code %d", e.ExitCode)
		}
	}
	if want := []string{"create", "start", "exit", "delete"}; !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
}

func resourcesLimits() resources.Limits { return resources.Limits{} }

// TestIsolationPluginRestart: while the isolation plugin is away one
// container exits; when the handle comes back, reconciliation records its
// real exit code and watches the survivor again.
func TestIsolationPluginRestart(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	ids := map[string]string{}
	for _, name := range []string{"a", "b"} {
		c, err := m.Create(ctx, name, lifecycle.Config{Image: "alpine"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
		ids[name] = c.ID
	}
	eventually(t, "both watchers waiting", func() bool { return l.iso.waits() == 2 })
	m.HandleChanged(ctx, plugin.HandleChange{Handle: "isolation/sandbox", Available: false, Reason: "plugin process exited"})
	l.iso.crash()
	// Let the watchers see the crash before the exit happens, so only
	// reconciliation can learn of it.
	eventually(t, "watchers gone", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.watchers) == 0
	})
	l.iso.exit(ids["a"], 7)
	if got := stateOf(t, m, "a"); got.State != lifecycle.StateRunning {
		t.Fatalf("a is %s before the plugin came back", got.State)
	}
	m.HandleChanged(ctx, plugin.HandleChange{Handle: "isolation/sandbox", Available: true})
	eventually(t, "a stopped with 7 after reconciliation", func() bool {
		c := stateOf(t, m, "a")
		return c.State == lifecycle.StateStopped && c.ExitCode == 7
	})
	if got := stateOf(t, m, "b"); got.State != lifecycle.StateRunning {
		t.Fatalf("b is %s", got.State)
	}
	l.iso.exit(ids["b"], 9)
	eventually(t, "b's later exit seen", func() bool {
		c := stateOf(t, m, "b")
		return c.State == lifecycle.StateStopped && c.ExitCode == 9
	})
}

// TestWaitSeesAnExitWhoseEventWasLost: Wait also looks at the record, so
// an exit whose event a slow subscriber lost still ends it.
func TestWaitSeesAnExitWhoseEventWasLost(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, _ := m.Create(ctx, "quiet", lifecycle.Config{Image: "alpine"})
	if _, err := m.Start(ctx, "quiet"); err != nil {
		t.Fatal(err)
	}
	done := make(chan isolation.ExitStatus, 1)
	go func() {
		st, _ := m.Wait(ctx, "quiet")
		done <- st
	}()
	// Written behind the manager's back: no event is published.
	if _, err := m.update(c.ID, func(r *store.Record) {
		r.Container.State = lifecycle.StateStopped
		r.Container.ExitCode = 9
	}); err != nil {
		t.Fatal(err)
	}
	if st := <-done; st.Code != 9 {
		t.Fatalf("Wait = %+v, want code 9", st)
	}
}

// TestStopSignalFromImageAndUser: stop sends the image's StopSignal, a
// user's --stop-signal wins over it, and Kill with the stop signal counts
// as a manual stop.
func TestStopSignalFromImageAndUser(t *testing.T) {
	l := newFakeLayers()
	img := l.images.images["alpine"]
	img.Config.StopSignal = "SIGQUIT"
	l.images.images["quitter"] = img
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	for _, tc := range []struct {
		name, image, user string
		want              int
	}{
		{"from-image", "quitter", "", 3},
		{"from-user", "quitter", "SIGUSR1", 10},
		{"default", "alpine", "", 15},
	} {
		c, err := m.Create(ctx, tc.name, lifecycle.Config{Image: tc.image, StopSignal: tc.user})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		l.j.take()
		got, err := m.Stop(ctx, c.ID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		calls := l.j.take()
		if len(calls) == 0 || calls[0] != fmt.Sprintf("isolation.Signal %s %d false", c.ID, tc.want) || got.ExitCode != 128+tc.want {
			t.Errorf("%s: calls %v, exit %d; want signal %d first and exit %d", tc.name, calls, got.ExitCode, tc.want, 128+tc.want)
		}
	}
	// Kill with the stop signal under "always": no restart follows.
	c, _ := m.Create(ctx, "svc", lifecycle.Config{Image: "quitter", Restart: lifecycle.RestartPolicy{Name: "always"}})
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(ctx, "svc", 3); err != nil {
		t.Fatal(err)
	}
	eventually(t, "svc stopped by kill", func() bool { return stateOf(t, m, "svc").State == lifecycle.StateStopped })
	m.lock(c.ID)()
	m.mu.Lock()
	_, pending := m.timers[c.ID]
	m.mu.Unlock()
	if pending || stateOf(t, m, "svc").RestartCount != 0 {
		t.Fatal("a kill with the stop signal was restarted by the always policy")
	}
}

func TestSettings(t *testing.T) {
	spec, err := NewWithLayers(nil, newFakeLayers()).ConfigSchema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(); err != nil {
		t.Fatalf("schema: %v", err)
	}
	s, err := decodeSettings(schema.Config{JSON: []byte(`{"store_timeout":null,"stop_timeout":"3s","restart_backoff":"50ms","max_restart_backoff":null}`)})
	if err != nil || s.StopTimeout != 3*time.Second || s.RestartBackoff != 50*time.Millisecond || s.StoreTimeout != DefaultSettings().StoreTimeout {
		t.Fatalf("decodeSettings = %+v, %v", s, err)
	}
	if _, err := decodeSettings(schema.Config{JSON: []byte(`{"stop_timeout":"soon"}`)}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "stop_timeout") {
		t.Fatalf("a bad duration = %v, want ErrInvalidArgument naming stop_timeout", err)
	}
	// A second process on the same state dir gets the store's clear error.
	dir := t.TempDir()
	newTestManager(t, newFakeLayers(), dir)
	other := NewWithLayers(nil, newFakeLayers())
	err = other.Configure(context.Background(), plugin.ConfigureRequest{StateDir: dir, Config: schema.Config{JSON: []byte(`{"store_timeout":"200ms"}`)}})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Configure on a store in use = %v, want ErrUnavailable saying it is locked", err)
	}
}

// TestFailedUndoKeepsTheRecordForReconciliation: when undoing a failed
// create fails too, the record stays (hidden, marked creating) and the
// next start of the plugin finishes the undo.
func TestFailedUndoKeepsTheRecordForReconciliation(t *testing.T) {
	l := newFakeLayers()
	dir := t.TempDir()
	m := newTestManager(t, l, dir)
	l.j.failOn("isolation.Create", errdefs.Unavailable("isolation went away"))
	l.j.failOn("snapshot.Remove", errdefs.Unavailable("snapshotter went away"))
	_, err := m.Create(context.Background(), "stuck", lifecycle.Config{Image: "alpine"})
	if err == nil || !strings.Contains(err.Error(), "undoing it") {
		t.Fatalf("Create = %v, want the failure and the failed undo", err)
	}
	if _, err := m.Get(context.Background(), "stuck"); !errdefs.IsNotFound(err) {
		t.Fatalf("a half-undone container is visible: %v", err)
	}
	if len(l.snap.active()) != 1 {
		t.Fatalf("active snapshots %v; the failed undo should have left the rootfs", l.snap.active())
	}
	_ = m.Close()
	l.j.failOn("isolation.Create", nil)
	l.j.failOn("snapshot.Remove", nil)
	m2 := newTestManager(t, l, dir)
	if a := l.snap.active(); len(a) != 0 {
		t.Fatalf("after reconciliation active snapshots %v remain", a)
	}
	if _, err := m2.Create(context.Background(), "stuck", lifecycle.Config{Image: "alpine"}); err != nil {
		t.Fatalf("the name is not free after reconciliation: %v", err)
	}
}
