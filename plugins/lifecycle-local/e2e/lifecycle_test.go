//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/lifecycle/conformance"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// TestConformance runs the lifecycle suite against lifecycle-local driving
// the real plugins.
func TestConformance(t *testing.T) {
	s := startStack(t)
	conformance.Run(t, func(t *testing.T) lifecycle.Manager { return s.mustManager(t) }, conformance.Options{
		Sleeper: s.sleeper(),
		Exiter:  s.exiter,
		// As PID 1 without a handler, a shell ignores SIGTERM.
		Stubborn:   &lifecycle.Config{Image: s.image, Cmd: []string{"sh", "-c", "while true; do sleep 0.1; done"}},
		NamePrefix: "conf-",
		Timeout:    waitFor,
	})
}

// TestOnFailureRestartsExactlyThree: a container that always exits 1 under
// on-failure:3 runs four times (three restarts) and then stays stopped.
func TestOnFailureRestartsExactlyThree(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	events, err := m.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.exiter(1)
	cfg.Restart = lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 3}
	c, err := m.Create(ctx, "flaky", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Delete(context.Background(), c.ID, true) }()
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	starts, exits := 0, 0
	timeout := time.After(waitFor)
	for exits < 4 {
		select {
		case e := <-events:
			if e.ContainerID != c.ID {
				continue
			}
			switch e.Kind {
			case lifecycle.EventStart:
				starts++
			case lifecycle.EventExit:
				exits++
				if e.ExitCode != 1 {
					t.Fatalf("exit %d with code %d, want 1", exits, e.ExitCode)
				}
			}
		case <-timeout:
			t.Fatalf("after %s: %d starts, %d exits; want 4 exits", waitFor, starts, exits)
		}
	}
	eventually(t, "recorded as stopped after 3 restarts", func() bool {
		got, err := m.Get(ctx, c.ID)
		return err == nil && got.State == lifecycle.StateStopped && got.RestartCount == 3 && got.ExitCode == 1
	})
	// Removing it ends the story: had a fourth restart been scheduled, its
	// start would show before the delete.
	if err := m.Delete(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	for {
		e := <-events
		if e.ContainerID != c.ID {
			continue
		}
		if e.Kind == lifecycle.EventStart {
			t.Fatal("a fourth restart happened under on-failure:3")
		}
		if e.Kind == lifecycle.EventDelete {
			break
		}
	}
	if starts != 4 {
		t.Fatalf("%d starts, want 4 (1 + 3 restarts)", starts)
	}
}

// resourcesClient and friends reach the real plugins the way the core does.
func (s *stack) snapshotter(t *testing.T) snapshot.Snapshotter {
	c, err := s.h.Client(plugin.LayerSnapshot, "overlay")
	if err != nil {
		t.Fatal(err)
	}
	return c.(snapshot.Snapshotter)
}

func (s *stack) resources(t *testing.T) resources.Controller {
	c, err := s.h.Client(plugin.LayerResources, "cgroup")
	if err != nil {
		t.Fatal(err)
	}
	return c.(resources.Controller)
}

func (s *stack) isolation(t *testing.T) isolation.Runtime {
	var rt isolation.Runtime
	eventually(t, "isolation plugin available", func() bool {
		c, err := s.h.Client(plugin.LayerIsolation, "sandbox")
		if err != nil {
			return false
		}
		rt = c.(isolation.Runtime)
		return true
	})
	return rt
}

// leftovers lists what the layers still hold for container id.
func (s *stack) leftovers(t *testing.T, id string) []string {
	t.Helper()
	ctx := ctxT(t)
	var out []string
	if _, err := s.snapshotter(t).Stat(ctx, id); !errdefs.IsNotFound(err) {
		out = append(out, "rootfs snapshot")
	}
	_ = s.snapshotter(t).Walk(ctx, func(_ context.Context, i snapshot.Info) error {
		if i.Kind == snapshot.KindActive && (i.Labels["org.berth.container"] == id || strings.HasPrefix(i.Name, "extract-")) {
			out = append(out, "active snapshot "+i.Name)
		}
		return nil
	})
	groups, err := s.resources(t).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if g.ID == id {
			out = append(out, "resource group")
		}
	}
	tasks, err := s.isolation(t).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if task.ID == id {
			out = append(out, "isolation task")
		}
	}
	return out
}

// TestRemoveLeavesNothing runs a container and removes it: no snapshot,
// group, task or log file remains; then a create that fails late (at the
// spec, after the snapshot and the group exist) leaves nothing either.
func TestRemoveLeavesNothing(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	c, err := m.Create(ctx, "tidy", s.sleeper())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if left := s.leftovers(t, c.ID); !slices.Contains(left, "resource group") || !slices.Contains(left, "isolation task") {
		t.Fatalf("a running container holds %v; want its group and task (the check must see them)", left)
	}
	if err := m.Delete(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	if left := s.leftovers(t, c.ID); len(left) != 0 {
		t.Fatalf("after rm: %v left", left)
	}
	logs, _ := filepath.Glob(filepath.Join(s.dir, "state", "plugins", "lifecycle-local", "logs", c.ID+"*"))
	if len(logs) != 0 {
		t.Fatalf("log files left: %v", logs)
	}

	bad := s.sleeper()
	bad.WorkingDir = "relative/dir"
	if _, err := m.Create(ctx, "doomed", bad); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "relative/dir") {
		t.Fatalf("Create with a relative working dir = %v, want ErrInvalidArgument naming it", err)
	}
	if left := s.leftovers(t, "no-such-id"); len(left) != 0 {
		t.Fatalf("after a failed create: %v left", left)
	}
	groups, _ := s.resources(t).List(ctx)
	for _, g := range groups {
		if _, err := m.Get(ctx, g.ID); errdefs.IsNotFound(err) {
			t.Errorf("resource group %s belongs to no container", g.ID)
		}
	}
	_ = s.snapshotter(t).Walk(ctx, func(_ context.Context, i snapshot.Info) error {
		if i.Kind != snapshot.KindActive {
			return nil
		}
		owner := i.Labels["org.berth.container"]
		if _, err := m.Get(ctx, owner); owner == "" || errdefs.IsNotFound(err) {
			t.Errorf("active snapshot %s belongs to no container", i.Name)
		}
		return nil
	})
	tasks, _ := s.isolation(t).List(ctx)
	for _, task := range tasks {
		if _, err := m.Get(ctx, task.ID); errdefs.IsNotFound(err) {
			t.Errorf("isolation task %s belongs to no container", task.ID)
		}
	}
	if _, err := m.Get(ctx, "doomed"); !errdefs.IsNotFound(err) {
		t.Fatalf("the failed create left a record: %v", err)
	}
}

// TestLifecyclePluginKilled kills lifecycle-local with SIGKILL while two
// containers run; one of them is killed while the plugin is down. After
// the host restarts the plugin, the survivor is still running (same pid)
// and the other is stopped with its real exit code (137).
func TestLifecyclePluginKilled(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	var cs []lifecycle.Container
	for _, name := range []string{"survivor", "victim"} {
		c, err := m.Create(ctx, name, s.sleeper())
		if err != nil {
			t.Fatal(err)
		}
		if c, err = m.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		defer func() { _ = s.mustManager(t).Delete(context.Background(), c.ID, true) }()
	}
	pid := s.pluginPid(t, "lifecycle/local")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lifecycle plugin process gone", func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
	if err := syscall.Kill(cs[1].Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill victim's process %d: %v", cs[1].Pid, err)
	}
	eventually(t, "lifecycle plugin restarted", func() bool {
		p := s.pluginPid(t, "lifecycle/local")
		return p != pid && p > 0
	})
	m = s.mustManager(t)
	var survivor, victim lifecycle.Container
	eventually(t, "records reconciled", func() bool {
		var err1, err2 error
		survivor, err1 = m.Get(ctx, "survivor")
		victim, err2 = m.Get(ctx, "victim")
		return err1 == nil && err2 == nil && victim.State == lifecycle.StateStopped
	})
	if survivor.State != lifecycle.StateRunning || survivor.Pid != cs[0].Pid {
		t.Errorf("survivor after the restart: %s pid %d; want running with pid %d", survivor.State, survivor.Pid, cs[0].Pid)
	}
	if victim.ExitCode != 137 {
		t.Errorf("victim's exit code %d, want 137 (SIGKILL)", victim.ExitCode)
	}
	all, err := m.List(ctx, lifecycle.Filter{All: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range all {
		if c.Name == "survivor" || c.Name == "victim" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("List shows %d of the two containers; nothing may be forgotten or duplicated", n)
	}
	// The survivor is watched again: stopping it is seen.
	got, err := m.Stop(ctx, "survivor", waitFor)
	if err != nil || got.State != lifecycle.StateStopped {
		t.Fatalf("Stop survivor after the restart = %s, %v", got.State, err)
	}
}

// TestIsolationPluginKilled kills isolation-sandbox with SIGKILL: the
// container keeps running (its supervisor owns it), and once the plugin is
// back lifecycle reconciles and still sees the container's exit.
func TestIsolationPluginKilled(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	c, err := m.Create(ctx, "steady", s.sleeper())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.mustManager(t).Delete(context.Background(), c.ID, true) }()
	if c, err = m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	pid := s.pluginPid(t, "isolation/sandbox")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "isolation plugin restarted", func() bool {
		p := s.pluginPid(t, "isolation/sandbox")
		return p != pid && p > 0
	})
	if err := syscall.Kill(c.Pid, 0); err != nil {
		t.Fatalf("container process %d died with the isolation plugin: %v", c.Pid, err)
	}
	got, err := m.Get(ctx, c.ID)
	if err != nil || got.State != lifecycle.StateRunning {
		t.Fatalf("after the isolation restart: %s, %v", got.State, err)
	}
	// The container ends by itself now; lifecycle learns its exit code
	// through the restarted plugin.
	if err := syscall.Kill(c.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "exit seen through the restarted isolation plugin", func() bool {
		got, err := m.Get(ctx, c.ID)
		return err == nil && got.State == lifecycle.StateStopped
	})
	if got, _ := m.Get(ctx, c.ID); got.ExitCode != 0 {
		t.Errorf("exit code %d, want 0 (the trap's)", got.ExitCode)
	}
}

// TestOutputLogAndStats: the container's output lands in the log file
// lifecycle gave isolation (what `berth logs` reads), and Stats of a
// running container merges real cgroup usage.
func TestOutputLogAndStats(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	c, err := m.Create(ctx, "talker", lifecycle.Config{Image: s.image, Cmd: []string{"sh", "-c", "echo hello-from-e2e; exit 4"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Delete(context.Background(), c.ID, true) }()
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	st, err := m.Wait(ctx, c.ID)
	if err != nil || st.Code != 4 {
		t.Fatalf("Wait = %+v, %v; want code 4", st, err)
	}
	logPath := filepath.Join(s.dir, "state", "plugins", "lifecycle-local", "logs", c.ID+".log")
	eventually(t, "output in "+logPath, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "hello-from-e2e")
	})

	sl, err := m.Create(ctx, "busy", s.sleeper())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Delete(context.Background(), sl.ID, true) }()
	if _, err := m.Start(ctx, sl.ID); err != nil {
		t.Fatal(err)
	}
	stats, err := m.Stats(ctx, sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Pids < 1 || stats.MemoryBytes == 0 || stats.Time.IsZero() {
		t.Fatalf("Stats of a running shell = %+v; want at least one pid, some memory and a time", stats)
	}
}

// frozen reads the freezer of cgroup path (v1 freezer hierarchy or v2).
func frozen(t *testing.T, cgroupPath string) bool {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", cgroupPath, "freezer.state")); err == nil {
		return strings.TrimSpace(string(b)) == "FROZEN"
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cgroupPath, "cgroup.freeze"))
	if err != nil {
		t.Fatalf("no freezer for cgroup %s: %v", cgroupPath, err)
	}
	return strings.TrimSpace(string(b)) == "1"
}

// TestPauseFreezesAndMarksTheGroup: pause marks the resources group paused
// and the container's cgroup is frozen; resume undoes both.
func TestPauseFreezesAndMarksTheGroup(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	c, err := m.Create(ctx, "napper", s.sleeper())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Delete(context.Background(), c.ID, true) }()
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	group := func() resources.Group {
		t.Helper()
		gs, err := s.resources(t).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			if g.ID == c.ID {
				return g
			}
		}
		t.Fatalf("no resource group %s", c.ID)
		return resources.Group{}
	}
	g := group()
	if g.Paused || frozen(t, g.Placement.CgroupPath) {
		t.Fatalf("a running container's group is paused (%v) or frozen", g.Paused)
	}
	if _, err := m.Pause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if g = group(); !g.Paused || !frozen(t, g.Placement.CgroupPath) {
		t.Fatalf("after Pause: group marked paused %v, cgroup frozen %v; want both", g.Paused, frozen(t, g.Placement.CgroupPath))
	}
	if _, err := m.Resume(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if g = group(); g.Paused || frozen(t, g.Placement.CgroupPath) {
		t.Fatalf("after Resume: group marked paused %v, cgroup frozen %v; want neither", g.Paused, frozen(t, g.Placement.CgroupPath))
	}
	// Stopping a paused container thaws it so its stop signal lands.
	if _, err := m.Pause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	got, err := m.Stop(ctx, c.ID, waitFor)
	if err != nil || got.State != lifecycle.StateStopped || got.ExitCode != 0 {
		t.Fatalf("Stop of a paused container = %s exit %d, %v; want stopped by its TERM trap (0)", got.State, got.ExitCode, err)
	}
}

// TestTenInParallel runs ten containers at once, each created, started,
// waited for and removed by its own goroutine: each gets its own exit
// code and nothing is left.
func TestTenInParallel(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			errs <- func() error {
				c, err := m.Create(ctx, fmt.Sprintf("par-%d", i), s.exiter(i))
				if err != nil {
					return err
				}
				defer func() { _ = m.Delete(context.Background(), c.ID, true) }()
				if _, err := m.Start(ctx, c.ID); err != nil {
					return err
				}
				st, err := m.Wait(ctx, c.ID)
				if err != nil {
					return err
				}
				if st.Code != i {
					return fmt.Errorf("par-%d exited %d, want %d", i, st.Code, i)
				}
				if err := m.Delete(ctx, c.ID, false); err != nil {
					return err
				}
				if left := s.leftovers(t, c.ID); len(left) != 0 {
					return fmt.Errorf("par-%d left %v", i, left)
				}
				return nil
			}()
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkRunTrue measures one container's whole life through the stack
// (create, start, wait for `true`, remove): lifecycle and the three
// plugins below it over their real go-plugin connections.
func BenchmarkRunTrue(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	stackOnce.Do(func() { shared, stackErr = newStack() })
	if stackErr != nil {
		b.Fatal(stackErr)
	}
	m, err := shared.manager()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cfg := lifecycle.Config{Image: shared.image, Cmd: []string{"true"}}
	b.ResetTimer()
	for i := range b.N {
		c, err := m.Create(ctx, fmt.Sprintf("bench-%d", i), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Start(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		if st, err := m.Wait(ctx, c.ID); err != nil || st.Code != 0 {
			b.Fatalf("wait: %+v %v", st, err)
		}
		if err := m.Delete(ctx, c.ID, false); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOOMKill: a container over its memory limit is killed by the kernel;
// it stops with 137, marked OOM-killed, and an oom event is sent.
func TestOOMKill(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	events, err := m.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lifecycle.Config{Image: s.image, Cmd: []string{"sh", "-c", `x=$(head -c 200000000 /dev/zero | tr '\0' a); echo survived`}}
	cfg.Limits.MemoryBytes = 32 << 20
	cfg.Limits.SwapBytes = 0
	c, err := m.Create(ctx, "hog", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Delete(context.Background(), c.ID, true) }()
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	st, err := m.Wait(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := m.Get(ctx, c.ID)
	if st.Code != 137 || !got.OOMKilled {
		t.Fatalf("hog ended with %d, OOM-killed %v; want 137 and true", st.Code, got.OOMKilled)
	}
	timeout := time.After(waitFor)
	for {
		select {
		case e := <-events:
			if e.ContainerID == c.ID && e.Kind == lifecycle.EventOOM {
				return
			}
		case <-timeout:
			t.Fatalf("no oom event for %s after %s", c.Name, waitFor)
		}
	}
}

// TestExec runs a process in a running container with its own env; its
// effect shows in the container's writable layer.
func TestExec(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	c, err := m.Create(ctx, "host-of-exec", s.sleeper())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Delete(context.Background(), c.ID, true) }()
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	execID, err := m.Exec(ctx, c.ID, lifecycle.ExecConfig{Cmd: []string{"sh", "-c", "echo $GREETING > /tmp/marker"}, Env: []string{"GREETING=hello-exec"}})
	if err != nil || execID == "" {
		t.Fatalf("Exec = %q, %v", execID, err)
	}
	mounts, err := s.snapshotter(t).Mounts(ctx, c.ID)
	if err != nil || len(mounts) == 0 {
		t.Fatalf("Mounts(%s) = %v, %v", c.ID, mounts, err)
	}
	upper, ok := mounts[0].Option("upperdir")
	if !ok {
		t.Fatalf("rootfs mount %+v has no upperdir", mounts[0])
	}
	eventually(t, "the exec'd process wrote /tmp/marker", func() bool {
		b, _ := os.ReadFile(filepath.Join(upper, "tmp", "marker"))
		return strings.TrimSpace(string(b)) == "hello-exec"
	})
	if _, err := m.Exec(ctx, c.ID, lifecycle.ExecConfig{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Exec without a command = %v, want ErrInvalidArgument", err)
	}
}

// lockedBuffer is an io.Writer tests can read while it is written.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// TestAttachStdin attaches to a running `cat` opened with -i: what is
// written to its stdin comes back on its stdout.
func TestAttachStdin(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	c, err := m.Create(ctx, "echoer", lifecycle.Config{Image: s.image, Cmd: []string{"cat"}, OpenStdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Delete(context.Background(), c.ID, true) }()
	if _, err := m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	defer stdinR.Close()
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- m.Attach(actx, c.ID, "", isolation.Streams{Stdin: stdinR, Stdout: &out, Stderr: &out}) }()
	// Keep writing until the echo shows: the attach may still be
	// connecting when the first line goes out.
	go func() {
		for actx.Err() == nil {
			if _, err := io.WriteString(stdinW, "ping-through-lifecycle\n"); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	deadline := time.After(waitFor)
	for !strings.Contains(out.String(), "ping-through-lifecycle") {
		select {
		case err := <-done:
			t.Fatalf("Attach returned early: %v (output %q)", err, out.String())
		case <-deadline:
			t.Fatalf("no echo after %s; got %q", waitFor, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Attach did not return after its context was cancelled")
	}
}

// TestDaemonCrash: every plugin is killed with SIGKILL (the daemon died)
// while three containers run; one of them is killed meanwhile. After the
// plugins start again the two others are running with the same pids and
// the third is stopped with its real exit code.
func TestDaemonCrash(t *testing.T) {
	s := startStack(t)
	m := s.mustManager(t)
	ctx := ctxT(t)
	var cs []lifecycle.Container
	for i := range 3 {
		c, err := m.Create(ctx, fmt.Sprintf("crash-%d", i), s.sleeper())
		if err != nil {
			t.Fatal(err)
		}
		if c, err = m.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		defer func() { _ = s.mustManager(t).Delete(context.Background(), c.ID, true) }()
	}
	s.crashAndRestart(t, func() {
		if err := syscall.Kill(cs[2].Pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill crash-2's process: %v", err)
		}
	})
	m = s.mustManager(t)
	eventually(t, "crash-2 recorded as stopped", func() bool {
		c, err := m.Get(ctx, "crash-2")
		return err == nil && c.State == lifecycle.StateStopped
	})
	for _, want := range cs[:2] {
		got, err := m.Get(ctx, want.Name)
		if err != nil || got.State != lifecycle.StateRunning || got.Pid != want.Pid {
			t.Errorf("%s after the crash: %s pid %d (%v); want running with pid %d", want.Name, got.State, got.Pid, err, want.Pid)
		}
	}
	if got, _ := m.Get(ctx, "crash-2"); got.ExitCode != 137 {
		t.Errorf("crash-2's exit code %d, want 137", got.ExitCode)
	}
	running, err := m.List(ctx, lifecycle.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range running {
		if strings.HasPrefix(c.Name, "crash-") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("List shows %d running crash- containers, want 2", n)
	}
	// The survivors are still driven: stop one, and see its exit.
	if got, err := m.Stop(ctx, "crash-0", waitFor); err != nil || got.State != lifecycle.StateStopped {
		t.Fatalf("Stop after the crash = %s, %v", got.State, err)
	}
}
