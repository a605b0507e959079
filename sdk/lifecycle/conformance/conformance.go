// Package conformance is the conformance suite of the lifecycle layer: it
// checks that a lifecycle.Manager keeps the contract written in
// sdk/lifecycle — the state machine and its plain InvalidState errors,
// name and ID-prefix lookup, exit codes, events, restart policies — whoever
// wrote it and however it is reached.
//
// Run it against a manager in process, through the real gRPC adapters with
// RunOverGRPC, and against the client of a plugin launched as a process:
//
//	conformance.Run(t, func(t *testing.T) lifecycle.Manager { return m }, conformance.Options{
//		Sleeper: lifecycle.Config{Image: "busybox", Cmd: []string{"sleep", "3600"}},
//		Exiter:  func(code int) lifecycle.Config { return lifecycle.Config{Image: "busybox", Cmd: []string{"sh", "-c", fmt.Sprintf("exit %d", code)}} },
//	})
//
// The manager must be configured with working layers below it: the suite
// creates and runs real containers of the configs it is given. It names
// them with Options.NamePrefix and removes them when a subtest ends, so it
// can share a manager with other tests. It never asserts timings: what
// must happen eventually is polled for, up to Options.Timeout.
package conformance

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// Options tune the suite to the manager under test.
type Options struct {
	// Sleeper is a container config whose process runs until it is
	// signalled (and ends on SIGTERM or SIGKILL).
	Sleeper lifecycle.Config
	// Exiter returns a container config whose process exits by itself, at
	// once, with code.
	Exiter func(code int) lifecycle.Config
	// Stubborn, when set, is a config whose process ignores SIGTERM, for
	// checking that Stop escalates to SIGKILL after its timeout.
	Stubborn *lifecycle.Config
	// NamePrefix starts every container name; "conformance-" when empty.
	NamePrefix string
	// Timeout bounds each wait for something that happens eventually; 30s
	// when zero. It is a deadline, never an expectation.
	Timeout time.Duration
}

var seq atomic.Int64

type suite struct {
	opts Options
	m    lifecycle.Manager
}

// Run runs the suite. newManager is called once per subtest; it may return
// the same live manager each time.
func Run(t *testing.T, newManager func(t *testing.T) lifecycle.Manager, opts Options) {
	t.Helper()
	if opts.NamePrefix == "" {
		opts.NamePrefix = "conformance-"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Exiter == nil || opts.Sleeper.Image == "" {
		t.Fatal("conformance.Options needs Sleeper and Exiter")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"CreateAndLookup", testCreateAndLookup},
		{"IllegalRequestsAreInvalidState", testIllegal},
		{"StartPauseResumeStopStartDelete", testLifecycle},
		{"ExitCodeAndWait", testExitCode},
		{"Events", testEvents},
		{"RestartOnFailure", testRestartOnFailure},
		{"Checkpoint", testCheckpoint},
		{"KillAndStopEscalation", testKill},
		{"Volumes", testVolumes},
		{"SetRestartPolicy", testSetRestartPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &suite{opts: opts, m: newManager(t)})
		})
	}
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.opts.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// create makes a container with a unique name and removes it (force) when
// the test ends.
func (s *suite) create(t *testing.T, cfg lifecycle.Config) lifecycle.Container {
	t.Helper()
	name := fmt.Sprintf("%s%d", s.opts.NamePrefix, seq.Add(1))
	c, err := s.m.Create(s.ctx(t), name, cfg)
	if err != nil {
		t.Fatalf("Create(%s, image %s): %v", name, cfg.Image, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		defer cancel()
		if err := s.m.Delete(ctx, c.ID, true); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("cleanup: Delete(%s, force): %v", name, err)
		}
	})
	return c
}

func (s *suite) get(t *testing.T, ref string) lifecycle.Container {
	t.Helper()
	c, err := s.m.Get(s.ctx(t), ref)
	if err != nil {
		t.Fatalf("Get(%s): %v", ref, err)
	}
	return c
}

func (s *suite) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(s.opts.Timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not so after %s", what, s.opts.Timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func testCreateAndLookup(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	c := s.create(t, s.opts.Sleeper)
	if !idPattern.MatchString(c.ID) {
		t.Errorf("container id %q is not 64 hex digits", c.ID)
	}
	if c.State != lifecycle.StateCreated || c.CreatedAt.IsZero() {
		t.Errorf("new container: state %s, created %v; want created with a time", c.State, c.CreatedAt)
	}
	for _, ref := range []string{c.ID, c.Name, c.ID[:12]} {
		if got, err := s.m.Get(ctx, ref); err != nil || got.ID != c.ID {
			t.Errorf("Get(%s) = %s, %v; want %s", ref, got.ID, err, c.ID)
		}
	}
	if _, err := s.m.Create(ctx, c.Name, s.opts.Sleeper); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Create with a taken name = %v, want ErrAlreadyExists", err)
	}
	all, err := s.m.List(ctx, lifecycle.Filter{All: true})
	if err != nil || !slices.ContainsFunc(all, func(x lifecycle.Container) bool { return x.ID == c.ID }) {
		t.Errorf("List(All) = %d containers, %v; want it to include %s", len(all), err, c.Name)
	}
	running, err := s.m.List(ctx, lifecycle.Filter{})
	if err != nil || slices.ContainsFunc(running, func(x lifecycle.Container) bool { return x.ID == c.ID }) {
		t.Errorf("List() includes created container %s (%v); it lists running and paused ones only", c.Name, err)
	}
	if err := s.m.Delete(ctx, c.Name, false); err != nil {
		t.Fatalf("Delete(%s): %v", c.Name, err)
	}
	if _, err := s.m.Get(ctx, c.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.m.Delete(ctx, c.ID, false); !errdefs.IsNotFound(err) {
		t.Errorf("Delete of a deleted container = %v, want ErrNotFound", err)
	}
	if _, err := s.m.Get(ctx, s.opts.NamePrefix+"no-such-container"); !errdefs.IsNotFound(err) {
		t.Errorf("Get of an unknown name = %v, want ErrNotFound", err)
	}
}

// invalid asserts err is ErrInvalidState naming the container and its
// state.
func invalid(t *testing.T, what string, c lifecycle.Container, err error) {
	t.Helper()
	if !errdefs.IsInvalidState(err) {
		t.Errorf("%s of a %s container = %v, want ErrInvalidState", what, c.State, err)
		return
	}
	if !strings.Contains(err.Error(), c.Name) || !strings.Contains(err.Error(), string(c.State)) {
		t.Errorf("%s of a %s container: error %q should name the container (%s) and its state", what, c.State, err, c.Name)
	}
}

func testIllegal(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	c := s.create(t, s.opts.Sleeper)
	_, err := s.m.Pause(ctx, c.ID)
	invalid(t, "Pause", c, err)
	_, err = s.m.Resume(ctx, c.ID)
	invalid(t, "Resume", c, err)
	_, err = s.m.Restore(ctx, c.ID)
	invalid(t, "Restore", c, err)
	_, err = s.m.Exec(ctx, c.ID, lifecycle.ExecConfig{Cmd: []string{"true"}})
	invalid(t, "Exec", c, err)

	c, err = s.m.Start(ctx, c.ID)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	_, err = s.m.Start(ctx, c.ID)
	invalid(t, "Start", c, err)
	_, err = s.m.Resume(ctx, c.ID)
	invalid(t, "Resume", c, err)
	invalid(t, "Delete without force", c, s.m.Delete(ctx, c.ID, false))

	c, err = s.m.Stop(ctx, c.ID, 0)
	if err != nil || c.State != lifecycle.StateStopped {
		t.Fatalf("Stop = %s, %v", c.State, err)
	}
	_, err = s.m.Pause(ctx, c.ID)
	invalid(t, "Pause", c, err)
	invalid(t, "Kill", c, s.m.Kill(ctx, c.ID, 9))
	_, err = s.m.Exec(ctx, c.ID, lifecycle.ExecConfig{Cmd: []string{"true"}})
	invalid(t, "Exec", c, err)
}

func testLifecycle(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	c := s.create(t, s.opts.Sleeper)
	c, err := s.m.Start(ctx, c.Name)
	if err != nil || c.State != lifecycle.StateRunning || c.Pid <= 0 || c.StartedAt.IsZero() {
		t.Fatalf("Start = %+v, %v; want running with a pid", c, err)
	}
	if got := s.get(t, c.ID); got.State != lifecycle.StateRunning {
		t.Fatalf("Get after Start: %s", got.State)
	}
	running, _ := s.m.List(ctx, lifecycle.Filter{})
	if !slices.ContainsFunc(running, func(x lifecycle.Container) bool { return x.ID == c.ID }) {
		t.Errorf("List() lacks running container %s", c.Name)
	}
	if c, err = s.m.Pause(ctx, c.ID); err != nil || c.State != lifecycle.StatePaused {
		t.Fatalf("Pause = %s, %v", c.State, err)
	}
	if c, err = s.m.Resume(ctx, c.ID); err != nil || c.State != lifecycle.StateRunning {
		t.Fatalf("Resume = %s, %v", c.State, err)
	}
	if c, err = s.m.Stop(ctx, c.ID, s.opts.Timeout); err != nil || c.State != lifecycle.StateStopped {
		t.Fatalf("Stop = %s, %v", c.State, err)
	}
	if c, err = s.m.Stop(ctx, c.ID, s.opts.Timeout); err != nil || c.State != lifecycle.StateStopped {
		t.Fatalf("Stop of a stopped container = %s, %v; want a no-op", c.State, err)
	}
	if c, err = s.m.Start(ctx, c.ID); err != nil || c.State != lifecycle.StateRunning {
		t.Fatalf("Start of a stopped container = %s, %v; want running again", c.State, err)
	}
	if err := s.m.Delete(ctx, c.ID, true); err != nil {
		t.Fatalf("Delete(force) of a running container: %v", err)
	}
	if _, err := s.m.Get(ctx, c.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
}

func testExitCode(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	c := s.create(t, s.opts.Exiter(3))
	done := make(chan error, 1)
	var code int
	go func() {
		st, err := s.m.Wait(ctx, c.ID)
		code = st.Code
		done <- err
	}()
	if _, err := s.m.Start(ctx, c.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	select {
	case err := <-done:
		if err != nil || code != 3 {
			t.Fatalf("Wait = %d, %v; want 3", code, err)
		}
	case <-time.After(s.opts.Timeout):
		t.Fatalf("Wait did not return %s after the process should have exited", s.opts.Timeout)
	}
	s.eventually(t, "stopped with exit code 3", func() bool {
		got := s.get(t, c.ID)
		return got.State == lifecycle.StateStopped && got.ExitCode == 3
	})
	// Wait on a stopped container returns at once with its exit code.
	st, err := s.m.Wait(ctx, c.ID)
	if err != nil || st.Code != 3 {
		t.Errorf("Wait of a stopped container = %+v, %v; want code 3", st, err)
	}
}

// expectEvents reads events of container id until want kinds arrived in order
// (other kinds in between are allowed) or the timeout.
func (s *suite) expectEvents(t *testing.T, events <-chan lifecycle.Event, id string, want ...string) []lifecycle.Event {
	t.Helper()
	var got []lifecycle.Event
	var kinds []string
	timeout := time.After(s.opts.Timeout)
	for i := 0; i < len(want); {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("events closed after %v; want %v", kinds, want)
			}
			if e.ContainerID != id {
				continue
			}
			got = append(got, e)
			kinds = append(kinds, e.Kind)
			if e.Kind == want[i] {
				i++
			}
		case <-timeout:
			t.Fatalf("events %v after %s; want %v in order", kinds, s.opts.Timeout, want)
		}
	}
	return got
}

func testEvents(t *testing.T, s *suite) {
	ctx, cancel := context.WithCancel(s.ctx(t))
	defer cancel()
	events, err := s.m.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	c := s.create(t, s.opts.Exiter(5))
	if _, err := s.m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	got := s.expectEvents(t, events, c.ID, lifecycle.EventCreate, lifecycle.EventStart, lifecycle.EventExit)
	last := got[len(got)-1]
	if last.ExitCode != 5 || last.Name != c.Name || last.Time.IsZero() {
		t.Errorf("exit event %+v; want code 5, name %s and a time", last, c.Name)
	}
	if err := s.m.Delete(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	s.expectEvents(t, events, c.ID, lifecycle.EventDelete)
	cancel()
	deadline := time.After(s.opts.Timeout)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("Events channel still open %s after its context ended", s.opts.Timeout)
		}
	}
}

// testRestartOnFailure: on-failure:2 with a process that always fails
// restarts it exactly twice. After the third exit no start follows before
// the container is removed.
func testRestartOnFailure(t *testing.T, s *suite) {
	ctx, cancel := context.WithCancel(s.ctx(t))
	defer cancel()
	events, _ := s.m.Events(ctx)
	cfg := s.opts.Exiter(1)
	cfg.Restart = lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 2}
	c := s.create(t, cfg)
	if _, err := s.m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	s.expectEvents(t, events, c.ID,
		lifecycle.EventStart, lifecycle.EventExit, lifecycle.EventStart, lifecycle.EventExit, lifecycle.EventStart, lifecycle.EventExit)
	s.eventually(t, "stopped after 2 restarts", func() bool {
		got := s.get(t, c.ID)
		return got.State == lifecycle.StateStopped && got.RestartCount == 2 && got.ExitCode == 1
	})
	if err := s.m.Delete(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.expectEvents(t, events, c.ID, lifecycle.EventDelete) {
		if e.Kind == lifecycle.EventStart {
			t.Fatalf("a third restart happened (on-failure:2)")
		}
	}
}

// testCheckpoint: a checkpoint either works (checkpointed, then restored
// to running) or fails with ErrNotImplemented and leaves the container
// running.
func testCheckpoint(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	c := s.create(t, s.opts.Sleeper)
	if _, err := s.m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.m.Checkpoint(ctx, c.ID, false)
	switch {
	case errdefs.IsNotImplemented(err):
		if now := s.get(t, c.ID); now.State != lifecycle.StateRunning {
			t.Fatalf("after an unsupported checkpoint the container is %s, want running", now.State)
		}
		t.Logf("checkpoint not implemented below this manager: %v", err)
		return
	case err != nil:
		t.Fatalf("Checkpoint: %v", err)
	}
	if got.State != lifecycle.StateCheckpointed || got.Checkpoint == "" {
		t.Fatalf("Checkpoint = %s at %q; want checkpointed with a path", got.State, got.Checkpoint)
	}
	_, err = s.m.Start(ctx, c.ID)
	invalid(t, "Start", got, err)
	if got, err = s.m.Restore(ctx, c.ID); err != nil || got.State != lifecycle.StateRunning {
		t.Fatalf("Restore = %s, %v", got.State, err)
	}
}

// testKill: Kill with SIGKILL ends a running container with 137; Stop of a
// process that ignores SIGTERM escalates to SIGKILL after the timeout.
func testKill(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	c := s.create(t, s.opts.Sleeper)
	if _, err := s.m.Start(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Kill(ctx, c.ID, 9); err != nil {
		t.Fatalf("Kill(SIGKILL): %v", err)
	}
	s.eventually(t, "killed container stopped with 137", func() bool {
		got := s.get(t, c.ID)
		return got.State == lifecycle.StateStopped && got.ExitCode == 137
	})
	if s.opts.Stubborn == nil {
		return
	}
	st := s.create(t, *s.opts.Stubborn)
	if _, err := s.m.Start(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.m.Stop(ctx, st.ID, 500*time.Millisecond)
	if err != nil || got.State != lifecycle.StateStopped || got.ExitCode != 137 {
		t.Fatalf("Stop of a process ignoring SIGTERM = %s exit %d, %v; want stopped by SIGKILL (137)", got.State, got.ExitCode, err)
	}
}
