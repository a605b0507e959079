// Package conformance checks that an isolation plugin keeps the
// isolation.Runtime contract: create/start/wait and exit codes, stdio round
// trips, terminals, exec, signals, pause/resume, idempotent delete, events,
// capability reporting, and recovery of running tasks after the plugin
// restarts. Run it against a plugin in process, or over gRPC against the
// live plugin process:
//
//	conformance.Run(t, func(t *testing.T) isolation.Runtime { return rt }, conformance.Options{
//		NewSpec: mySpec, Capabilities: []string{isolation.CapExec, …},
//	})
//
// The workloads are POSIX shell one-liners (sh, sleep, cat, stty, test,
// trap), which busybox provides; NewSpec supplies the rootfs that has them.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// waitFor bounds every wait of the suite; nothing asserts a duration.
const waitFor = 30 * time.Second

// SpecOptions shape a task spec.
type SpecOptions struct {
	// Args is the init process's command line.
	Args []string
	// TTY gives the process a terminal.
	TTY bool
	// Stdin opens stdin for attaches (isolation.AnnotationOpenStdin).
	Stdin bool
	// LogPath is where the supervisor writes the task's output.
	LogPath string
}

// Options configure the suite.
type Options struct {
	// NewSpec returns a complete spec for a new task id: a rootfs with a
	// POSIX shell, an OCI spec running opts.Args, and opts applied. It may
	// register cleanups on t.
	NewSpec func(t *testing.T, id string, opts SpecOptions) isolation.Spec
	// Capabilities are exactly the capabilities the plugin must declare.
	Capabilities []string
	// Restart, when set, kills the plugin process (kill -9) while a task
	// runs and returns the runtime once the plugin is back; the suite then
	// checks Recover, the log and Wait.
	Restart func(t *testing.T) isolation.Runtime
}

// Run runs the suite. newRuntime returns the runtime under test.
func Run(t *testing.T, newRuntime func(t *testing.T) isolation.Runtime, opts Options) {
	s := &suite{opts: opts, rt: newRuntime(t)}
	t.Run("Capabilities", s.testCapabilities)
	t.Run("ExitCodes", s.testExitCodes)
	t.Run("CreateWaitsForStart", s.testCreateWaitsForStart)
	t.Run("Stdio", s.testStdio)
	if s.has(isolation.CapTTY) {
		t.Run("TTY", s.testTTY)
	}
	if s.has(isolation.CapExec) {
		t.Run("Exec", s.testExec)
	}
	t.Run("Signals", s.testSignals)
	if s.has(isolation.CapPause) {
		t.Run("PauseResume", s.testPause)
	}
	t.Run("Stats", s.testStats)
	t.Run("DeleteIdempotent", s.testDelete)
	t.Run("Events", s.testEvents)
	t.Run("CreateErrors", s.testCreateErrors)
	if opts.Restart != nil && s.has(isolation.CapRecover) {
		t.Run("RecoverAfterRestart", s.testRecover)
	}
}

type suite struct {
	opts Options
	rt   isolation.Runtime
	n    int
}

func (s *suite) has(c string) bool { return slices.Contains(s.opts.Capabilities, c) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return c
}

// create makes a task and registers its deletion.
func (s *suite) create(t *testing.T, o SpecOptions) string {
	t.Helper()
	s.n++
	id := fmt.Sprintf("conf-%d-%d", os.Getpid(), s.n)
	spec := s.opts.NewSpec(t, id, o)
	info, err := s.rt.Create(ctx(t), spec)
	if err != nil {
		t.Fatalf("Create %s: %v", id, err)
	}
	if info.ID != id || info.Status != isolation.StatusCreated {
		t.Errorf("Create returned %+v; want id %s, status created", info, id)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = s.rt.Signal(c, id, "", syscall.SIGKILL, true)
		_, _ = s.rt.Wait(c, id, "")
		if _, err := s.rt.Delete(c, id); err != nil {
			t.Errorf("cleanup: Delete %s: %v", id, err)
		}
	})
	return id
}

// output collects what an attach writes.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// attach attaches in the background; the returned channel yields Attach's
// result.
func (s *suite) attach(t *testing.T, id, execID string, st isolation.Streams) <-chan error {
	done := make(chan error, 1)
	c := ctx(t)
	go func() { done <- s.rt.Attach(c, id, execID, st) }()
	return done
}

func (s *suite) start(t *testing.T, id string) {
	t.Helper()
	if pid, err := s.rt.Start(ctx(t), id); err != nil || pid <= 0 {
		t.Fatalf("Start %s = %d, %v", id, pid, err)
	}
}

func (s *suite) wait(t *testing.T, id, execID string) isolation.ExitStatus {
	t.Helper()
	e, err := s.rt.Wait(ctx(t), id, execID)
	if err != nil {
		t.Fatalf("Wait %s/%q: %v", id, execID, err)
	}
	return e
}

func waitAttach(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Attach: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("Attach did not end %s after the process exited", waitFor)
	}
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func (s *suite) testCapabilities(t *testing.T) {
	info, err := s.rt.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Layer != "isolation" {
		t.Errorf("layer %q, want isolation", info.Layer)
	}
	got, want := slices.Sorted(slices.Values(info.Capabilities)), slices.Sorted(slices.Values(s.opts.Capabilities))
	if !slices.Equal(got, want) {
		t.Errorf("capabilities %q, want %q", got, want)
	}
	if !s.has(isolation.CapCheckpoint) {
		err := s.rt.Checkpoint(ctx(t), "any", isolation.CheckpointOptions{Dir: t.TempDir()})
		if !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("Checkpoint without the capability: %v, want ErrNotImplemented", err)
		}
	}
}

func (s *suite) testExitCodes(t *testing.T) {
	for _, tc := range []struct {
		script string
		code   int
		sig    syscall.Signal
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3, 0},
		{"exec sleep 1000", 137, syscall.SIGKILL}, // killed from outside
	} {
		id := s.create(t, SpecOptions{Args: sh(tc.script)})
		s.start(t, id)
		if tc.sig != 0 {
			if err := s.rt.Signal(ctx(t), id, "", tc.sig, false); err != nil {
				t.Fatalf("Signal %d: %v", tc.sig, err)
			}
		}
		e := s.wait(t, id, "")
		if e.Code != tc.code || e.Signal != tc.sig || e.ExitedAt.IsZero() {
			t.Errorf("%q: exit %+v, want code %d signal %d and a time", tc.script, e, tc.code, tc.sig)
		}
		// Wait returns at once for an exited process, every time.
		if again := s.wait(t, id, ""); again.Code != tc.code {
			t.Errorf("%q: second Wait %+v", tc.script, again)
		}
	}
}

func (s *suite) testCreateWaitsForStart(t *testing.T) {
	id := s.create(t, SpecOptions{Args: sh("echo started")})
	var out output
	done := s.attach(t, id, "", isolation.Streams{Stdout: &out})
	tasks, err := s.rt.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(tasks, func(ti isolation.TaskInfo) bool { return ti.ID == id })
	if i < 0 || tasks[i].Status != isolation.StatusCreated || tasks[i].Spec == nil {
		t.Fatalf("List before Start: %+v; want %s created with its spec", tasks, id)
	}
	if _, err := s.rt.Start(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.rt.Start(ctx(t), id); !errors.Is(err, errdefs.ErrInvalidState) {
		t.Errorf("second Start: %v, want ErrInvalidState", err)
	}
	s.wait(t, id, "")
	waitAttach(t, done)
	if out.String() != "started\n" {
		t.Errorf("output %q, want %q (attached before Start)", out.String(), "started\n")
	}
}

func (s *suite) testStdio(t *testing.T) {
	log := t.TempDir() + "/task.log"
	id := s.create(t, SpecOptions{Args: sh("cat; echo to-stderr >&2"), Stdin: true, LogPath: log})
	var stdout, stderr output
	done := s.attach(t, id, "", isolation.Streams{Stdin: strings.NewReader("hello through stdin\n"), Stdout: &stdout, Stderr: &stderr})
	s.start(t, id)
	if e := s.wait(t, id, ""); e.Code != 0 {
		t.Errorf("exit %+v", e)
	}
	waitAttach(t, done)
	if stdout.String() != "hello through stdin\n" || stderr.String() != "to-stderr\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("task log: %v", err)
	}
	if !strings.Contains(string(b), `"hello through stdin\n"`) || !strings.Contains(string(b), `"stream":"stderr"`) {
		t.Errorf("task log lacks the output:\n%s", b)
	}
}

func (s *suite) testTTY(t *testing.T) {
	// The terminal is the task's own: tty names it (a replica the task can
	// see, not "not a tty"), it is stdin, and a resize reaches it.
	id := s.create(t, SpecOptions{Args: sh("tty; test -t 0 && echo is-a-tty; stty size"), TTY: true})
	var out output
	done := s.attach(t, id, "", isolation.Streams{Stdout: &out})
	if err := s.rt.ResizePTY(ctx(t), id, "", isolation.ConsoleSize{Width: 100, Height: 40}); err != nil {
		t.Fatalf("ResizePTY: %v", err)
	}
	s.start(t, id)
	if e := s.wait(t, id, ""); e.Code != 0 {
		t.Errorf("exit %+v", e)
	}
	waitAttach(t, done)
	got := strings.ReplaceAll(out.String(), "\r", "")
	if !ttyName.MatchString(got) || !strings.Contains(got, "is-a-tty\n") || !strings.Contains(got, "40 100\n") {
		t.Errorf("terminal output %q, want a /dev/pts/N or /dev/ttysN name, is-a-tty and the size 40 100", got)
	}
	if s.has(isolation.CapExec) {
		t.Run("Exec", s.testExecTTY)
	}
}

// ttyName matches what tty prints for a terminal the task can see: Linux
// devpts replicas and darwin's ttys.
var ttyName = regexp.MustCompile(`(?m)^/dev/(pts/[0-9]+|ttys[0-9]+)$`)

// testExecTTY checks an exec's terminal: its name, and that ResizePTY on
// the exec reaches it (stty size) while the exec waits for input.
func (s *suite) testExecTTY(t *testing.T) {
	id := s.create(t, SpecOptions{Args: []string{"sleep", "1000"}})
	s.start(t, id)
	proc := &specs.Process{Args: sh("read line; tty; test -t 0 && echo is-a-tty; stty size"), Cwd: "/", Terminal: true,
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
	if _, err := s.rt.Exec(ctx(t), id, "tty", proc); err != nil {
		t.Fatalf("Exec with a terminal: %v", err)
	}
	if err := s.rt.ResizePTY(ctx(t), id, "tty", isolation.ConsoleSize{Width: 120, Height: 33}); err != nil {
		t.Fatalf("ResizePTY of an exec: %v", err)
	}
	var out output
	done := s.attach(t, id, "tty", isolation.Streams{Stdin: strings.NewReader("go\n"), Stdout: &out})
	if e := s.wait(t, id, "tty"); e.Code != 0 {
		t.Errorf("tty exec exit %+v", e)
	}
	waitAttach(t, done)
	got := strings.ReplaceAll(out.String(), "\r", "")
	if !ttyName.MatchString(got) || !strings.Contains(got, "is-a-tty\n") || !strings.Contains(got, "33 120\n") {
		t.Errorf("exec terminal output %q, want a /dev/pts/N or /dev/ttysN name, is-a-tty and the size 33 120", got)
	}
	// A resize that races the process's exit (a client following its
	// window) is refused cleanly or ignored, never a broken descriptor.
	if err := s.rt.ResizePTY(ctx(t), id, "tty", isolation.ConsoleSize{Width: 80, Height: 24}); err != nil && !errors.Is(err, errdefs.ErrInvalidState) {
		t.Errorf("ResizePTY of an exited exec: %v, want nil or ErrInvalidState", err)
	}
}

func (s *suite) testExec(t *testing.T) {
	id := s.create(t, SpecOptions{Args: []string{"sleep", "1000"}})
	if _, err := s.rt.Exec(ctx(t), id, "early", &specs.Process{Args: []string{"true"}, Cwd: "/"}); !errors.Is(err, errdefs.ErrInvalidState) {
		t.Errorf("Exec before Start: %v, want ErrInvalidState", err)
	}
	s.start(t, id)
	proc := &specs.Process{Args: sh("echo exec-out; echo exec-err >&2; exit 5"), Cwd: "/", Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
	pid, err := s.rt.Exec(ctx(t), id, "e1", proc)
	if err != nil || pid <= 0 {
		t.Fatalf("Exec = %d, %v", pid, err)
	}
	var stdout, stderr output
	done := s.attach(t, id, "e1", isolation.Streams{Stdout: &stdout, Stderr: &stderr})
	if e := s.wait(t, id, "e1"); e.Code != 5 {
		t.Errorf("exec exit %+v, want 5", e)
	}
	waitAttach(t, done)
	if stdout.String() != "exec-out\n" || stderr.String() != "exec-err\n" {
		t.Errorf("exec stdout %q stderr %q", stdout.String(), stderr.String())
	}
	if _, err := s.rt.Exec(ctx(t), id, "e1", proc); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Exec with a used id: %v, want ErrAlreadyExists", err)
	}
	// A terminal for an exec, with stdin.
	tty := &specs.Process{Args: sh("read line; echo got:$line; test -t 1 && echo tty"), Cwd: "/", Terminal: true,
		Env: proc.Env}
	if _, err := s.rt.Exec(ctx(t), id, "e2", tty); err != nil {
		t.Fatalf("Exec with a terminal: %v", err)
	}
	var out output
	done = s.attach(t, id, "e2", isolation.Streams{Stdin: strings.NewReader("typed\n"), Stdout: &out})
	if e := s.wait(t, id, "e2"); e.Code != 0 {
		t.Errorf("tty exec exit %+v", e)
	}
	waitAttach(t, done)
	if got := strings.ReplaceAll(out.String(), "\r", ""); !strings.Contains(got, "got:typed\n") || !strings.Contains(got, "tty\n") {
		t.Errorf("tty exec output %q", got)
	}
	if _, err := s.rt.Exec(ctx(t), "no-such-task", "x", proc); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Exec in a missing task: %v, want ErrNotFound", err)
	}
}

func (s *suite) testSignals(t *testing.T) {
	id := s.create(t, SpecOptions{Args: sh(`trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done`)})
	var out output
	done := s.attach(t, id, "", isolation.Streams{Stdout: &out})
	s.start(t, id)
	eventually(t, "the task prints ready", func() bool { return strings.Contains(out.String(), "ready") })
	if err := s.rt.Signal(ctx(t), id, "", syscall.SIGTERM, false); err != nil {
		t.Fatalf("Signal TERM: %v", err)
	}
	if e := s.wait(t, id, ""); e.Code != 42 {
		t.Errorf("exit after TERM %+v, want 42 from the trap", e)
	}
	waitAttach(t, done)
	if !strings.Contains(out.String(), "got-term") {
		t.Errorf("output %q lacks the trap's", out.String())
	}
	if err := s.rt.Signal(ctx(t), id, "", syscall.SIGTERM, false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Signal to an exited task: %v, want ErrNotFound", err)
	}
	// all: every process of the task.
	id = s.create(t, SpecOptions{Args: sh("sleep 1000 & sleep 1000; wait")})
	s.start(t, id)
	if err := s.rt.Signal(ctx(t), id, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if e := s.wait(t, id, ""); e.Signal != syscall.SIGKILL {
		t.Errorf("exit after kill of all %+v", e)
	}
}

func (s *suite) status(t *testing.T, id string) isolation.Status {
	t.Helper()
	tasks, err := s.rt.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range tasks {
		if ti.ID == id {
			return ti.Status
		}
	}
	t.Fatalf("task %s not listed", id)
	return ""
}

func (s *suite) testPause(t *testing.T) {
	id := s.create(t, SpecOptions{Args: sh("i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done")})
	var out output
	done := s.attach(t, id, "", isolation.Streams{Stdout: &out})
	s.start(t, id)
	eventually(t, "output flows", func() bool { return len(out.String()) > 0 })
	if err := s.rt.Pause(ctx(t), id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := s.rt.Pause(ctx(t), id); err != nil {
		t.Errorf("Pause of a paused task: %v, want success", err)
	}
	if st := s.status(t, id); st != isolation.StatusPaused {
		t.Errorf("status %q after Pause", st)
	}
	// Output already in flight when Pause returned may still arrive; once
	// it has settled, a frozen task prints nothing at all.
	frozen := out.String()
	deadline := time.Now().Add(waitFor)
	for settled := 0; settled < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("output keeps growing %s after Pause", waitFor)
		}
		time.Sleep(100 * time.Millisecond)
		if now := out.String(); now != frozen {
			frozen, settled = now, 0
			continue
		}
		settled++
	}
	time.Sleep(300 * time.Millisecond)
	if out.String() != frozen {
		t.Errorf("output grew while paused: %q after %q", out.String(), frozen)
	}
	if err := s.rt.Resume(ctx(t), id); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if st := s.status(t, id); st != isolation.StatusRunning {
		t.Errorf("status %q after Resume", st)
	}
	eventually(t, "output flows again after Resume", func() bool { return len(out.String()) > len(frozen) })
	if err := s.rt.Signal(ctx(t), id, "", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	s.wait(t, id, "")
	waitAttach(t, done)
	if err := s.rt.Pause(ctx(t), id); !errors.Is(err, errdefs.ErrInvalidState) {
		t.Errorf("Pause of a stopped task: %v, want ErrInvalidState", err)
	}
}

func (s *suite) testStats(t *testing.T) {
	id := s.create(t, SpecOptions{Args: []string{"sleep", "1000"}})
	s.start(t, id)
	st, err := s.rt.Stats(ctx(t), id)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Pids < 1 || st.Time.IsZero() {
		t.Errorf("Stats %+v: want at least one pid and a time", st)
	}
}

func (s *suite) testDelete(t *testing.T) {
	id := s.create(t, SpecOptions{Args: []string{"sleep", "1000"}})
	s.start(t, id)
	if _, err := s.rt.Delete(ctx(t), id); !errors.Is(err, errdefs.ErrInvalidState) {
		t.Errorf("Delete of a running task: %v, want ErrInvalidState", err)
	}
	if err := s.rt.Signal(ctx(t), id, "", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	s.wait(t, id, "")
	e, err := s.rt.Delete(ctx(t), id)
	if err != nil || e.Signal != syscall.SIGKILL {
		t.Errorf("Delete = %+v, %v; want the SIGKILL exit", e, err)
	}
	if _, err := s.rt.Delete(ctx(t), id); err != nil {
		t.Errorf("second Delete: %v, want success", err)
	}
	if _, err := s.rt.Wait(ctx(t), id, ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Wait after Delete: %v, want ErrNotFound", err)
	}
	tasks, _ := s.rt.List(ctx(t))
	if slices.ContainsFunc(tasks, func(ti isolation.TaskInfo) bool { return ti.ID == id }) {
		t.Errorf("deleted task still listed")
	}
	// A created task that never started can be deleted.
	id = s.create(t, SpecOptions{Args: []string{"true"}})
	if _, err := s.rt.Delete(ctx(t), id); err != nil {
		t.Errorf("Delete of a created task: %v", err)
	}
}

func (s *suite) testEvents(t *testing.T) {
	c, cancel := context.WithCancel(ctx(t))
	events, err := s.rt.Events(c)
	if err != nil {
		t.Fatal(err)
	}
	id := s.create(t, SpecOptions{Args: sh("exit 9")})
	s.start(t, id)
	s.wait(t, id, "")
	deadline := time.After(waitFor)
	for found := false; !found; {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("events closed early")
			}
			if e.Kind == isolation.EventExit && e.ID == id && e.ExecID == "" {
				if e.Exit == nil || e.Exit.Code != 9 {
					t.Errorf("exit event %+v, want code 9", e)
				}
				found = true
			}
		case <-deadline:
			t.Fatalf("no exit event for %s within %s", id, waitFor)
		}
	}
	cancel()
	for range events { // closes once ctx is done
	}
}

func (s *suite) testCreateErrors(t *testing.T) {
	id := s.create(t, SpecOptions{Args: []string{"true"}})
	spec := s.opts.NewSpec(t, id, SpecOptions{Args: []string{"true"}})
	if _, err := s.rt.Create(ctx(t), spec); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Create of a taken id: %v, want ErrAlreadyExists", err)
	}
	spec = s.opts.NewSpec(t, id+"-noproc", SpecOptions{Args: []string{"true"}})
	spec.OCI.Process = nil
	if _, err := s.rt.Create(ctx(t), spec); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Create without a process: %v, want ErrInvalidArgument", err)
	}
	spec = s.opts.NewSpec(t, id+"-missing", SpecOptions{Args: []string{"/no/such/binary"}})
	if _, err := s.rt.Create(ctx(t), spec); err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("Create of a missing binary: %v, want an error naming it", err)
		_, _ = s.rt.Delete(ctx(t), spec.ID)
	}
	tasks, _ := s.rt.List(ctx(t))
	if slices.ContainsFunc(tasks, func(ti isolation.TaskInfo) bool { return ti.ID == spec.ID }) {
		t.Errorf("a failed Create left task %s behind", spec.ID)
	}
}

func (s *suite) testRecover(t *testing.T) {
	log := t.TempDir() + "/task.log"
	id := s.create(t, SpecOptions{LogPath: log,
		Args: sh(`trap 'echo after-restart; exit 7' USR1; echo before-restart; while true; do sleep 0.1; done`)})
	s.start(t, id)
	eventually(t, "the task logs before-restart", func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "before-restart")
	})
	s.rt = s.opts.Restart(t)
	tasks, err := s.rt.Recover(ctx(t))
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	i := slices.IndexFunc(tasks, func(ti isolation.TaskInfo) bool { return ti.ID == id })
	if i < 0 || tasks[i].Status != isolation.StatusRunning || tasks[i].Pid <= 0 {
		t.Fatalf("Recover = %+v; want %s running", tasks, id)
	}
	if err := s.rt.Signal(ctx(t), id, "", syscall.SIGUSR1, false); err != nil {
		t.Fatalf("Signal after restart: %v", err)
	}
	if e := s.wait(t, id, ""); e.Code != 7 {
		t.Errorf("Wait after restart = %+v, want the real exit code 7", e)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "after-restart") {
		t.Errorf("the log did not continue across the restart:\n%s", b)
	}
}
