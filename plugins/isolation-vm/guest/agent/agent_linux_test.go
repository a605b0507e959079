//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/plugins/isolation-vm/guest/agent"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/spec"
)

// These tests run the agent's gRPC server in this process (as root, no VM)
// over a unix socket pair and drive it through the vmagent client: real
// containers of internal/sandbox, a busybox rootfs directory bound where a
// VM mounts its block device, real cgroups (v1 on this host; the v2 paths
// run in the VM test of package guest).

var (
	initPath string
	rootfs   string
	setupErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-test-vmagent")
	if err != nil {
		panic(err)
	}
	if os.Geteuid() == 0 {
		initPath, setupErr = sandboxtest.BuildInit(dir)
		rootfs = filepath.Join(dir, "rootfs")
		if setupErr == nil {
			setupErr = sandboxtest.Rootfs(rootfs)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// fakeSystem records the guest-wide calls; the real one (package boot) is
// exercised in the VM test.
type fakeSystem struct {
	mu       sync.Mutex
	clock    time.Time
	entropy  []byte
	hostname string
	poweroff chan struct{}
}

func (f *fakeSystem) SetClock(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = t
	return nil
}
func (f *fakeSystem) AddEntropy(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entropy = append(f.entropy, b...)
	return nil
}
func (f *fakeSystem) SetHostname(name, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hostname = name
	return nil
}
func (f *fakeSystem) Poweroff() { close(f.poweroff) }

// chanListener yields the connections pushed into it: each a host
// (re)connecting.
type chanListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *chanListener) Addr() net.Addr { return &net.UnixAddr{Name: "pair", Net: "unix"} }

type harness struct {
	t      *testing.T
	a      *agent.Agent
	l      *chanListener
	sys    *fakeSystem
	runDir string
	parent string
}

var seq atomic.Int64

func newHarness(t *testing.T) (*harness, *vmagent.Client) {
	t.Helper()
	sandboxtest.RequireRoot(t)
	if setupErr != nil {
		t.Fatalf("setup: %v", setupErr)
	}
	h := &harness{t: t, sys: &fakeSystem{poweroff: make(chan struct{})}, runDir: t.TempDir(),
		parent: fmt.Sprintf("berth-test-vmagent-%d-%d", os.Getpid(), seq.Add(1)),
		l:      &chanListener{ch: make(chan net.Conn, 1), closed: make(chan struct{})}}
	a, err := agent.New(agent.Config{Log: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}}),
		RunDir: h.runDir, InitPath: initPath, CgroupParent: h.parent, System: h.sys})
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	served := make(chan struct{})
	go func() { _ = a.Serve(h.l); close(served) }()
	t.Cleanup(func() {
		a.Close()
		<-served
		h.noLeaks()
	})
	return h, h.connect()
}

// connect makes a new host connection over a fresh socket pair.
func (h *harness) connect() *vmagent.Client {
	h.t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			h.t.Fatal(err)
		}
		return c
	}
	h.l.ch <- conn(fds[0])
	c, err := vmagent.NewClient(conn(fds[1]))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// noLeaks checks that nothing the agent made is left: mounts under the
// run dir, container dirs, cgroups under the parent.
func (h *harness) noLeaks() {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), h.runDir) {
		h.t.Errorf("mounts left under %s", h.runDir)
	}
	entries, _ := os.ReadDir(h.runDir)
	for _, e := range entries {
		if e.Name() != ".cgroups" {
			h.t.Errorf("left in the run dir: %s", e.Name())
		}
	}
	left, _ := filepath.Glob("/sys/fs/cgroup/*/" + h.parent + "/*")
	for _, d := range left {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			h.t.Errorf("cgroup left: %s", d)
		}
	}
	// No zombies: every process the containers left was reaped.
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == fmt.Sprint(os.Getpid()) {
			h.t.Errorf("zombie child left: %s", strings.TrimSpace(string(b)))
		}
	}
	// The parent itself is the controller's; remove it like resources-cgroup's tests.
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/" + h.parent)
	for _, p := range parents {
		_ = os.Remove(p)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newSpec(t *testing.T, id string, cfg lifecycle.Config, args ...string) *specs.Spec {
	t.Helper()
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: args}, cfg, spec.Extra{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func create(t *testing.T, c *vmagent.Client, id string, s *specs.Spec, openStdin bool) int {
	t.Helper()
	pid, err := c.CreateContainer(ctxT(t), vmagent.CreateRequest{ID: id, Spec: s, OpenStdin: openStdin,
		Rootfs: vmagent.Rootfs{Source: rootfs, Type: "bind"}})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", id, err)
	}
	if pid <= 0 {
		t.Fatalf("CreateContainer %s: pid %d", id, pid)
	}
	return pid
}

// syncBuf is a bytes.Buffer safe for one writer and polling readers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOutputExitCodeAndLateAttach(t *testing.T) {
	_, c := newHarness(t)
	ctx := ctxT(t)
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	create(t, c, "out", newSpec(t, "out", lifecycle.Config{}, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"), false)
	// Attach between create and start, as the supervisor does.
	var stdout, stderr syncBuf
	attached := make(chan error, 1)
	go func() { attached <- c.Attach(ctx, "out", "", isolation.Streams{Stdout: &stdout, Stderr: &stderr}) }()
	st, err := c.State(ctx, "out")
	if err != nil || st.Status != isolation.StatusCreated {
		t.Fatalf("State after create = %+v, %v", st, err)
	}
	pid, err := c.Start(ctx, "out")
	if err != nil || pid != st.Pid {
		t.Fatalf("Start = %d, %v (created pid %d)", pid, err, st.Pid)
	}
	e, err := c.Wait(ctx, "out", "")
	if err != nil || e.Code != 3 || e.ExitedAt.IsZero() {
		t.Fatalf("Wait = %+v, %v; want code 3", e, err)
	}
	if err := <-attached; err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if stdout.String() != "to-stdout\n" || stderr.String() != "to-stderr\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	// Wait again: at once, same status.
	if e2, err := c.Wait(ctx, "out", ""); err != nil || e2.Code != 3 {
		t.Errorf("second Wait = %+v, %v", e2, err)
	}
	select {
	case ev := <-events:
		if ev.Kind != isolation.EventExit || ev.ID != "out" || ev.ExecID != "" || ev.Exit == nil || ev.Exit.Code != 3 {
			t.Errorf("event = %+v", ev)
		}
	case <-time.After(30 * time.Second):
		t.Error("no exit event")
	}

	// Output written with nobody attached is kept for the first attach.
	create(t, c, "late", newSpec(t, "late", lifecycle.Config{}, "sh", "-c", "echo kept for later"), false)
	if _, err := c.Start(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, "late", ""); err != nil {
		t.Fatal(err)
	}
	var late syncBuf
	if err := c.Attach(ctx, "late", "", isolation.Streams{Stdout: &late}); err != nil || late.String() != "kept for later\n" {
		t.Errorf("late Attach = %q, %v", late.String(), err)
	}
	for _, id := range []string{"out", "late"} {
		if e, err := c.Delete(ctx, id); err != nil || (id == "out" && e.Code != 3) {
			t.Errorf("Delete(%s) = %+v, %v", id, e, err)
		}
		if _, err := c.State(ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("State after Delete = %v, want NotFound", err)
		}
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	_, c := newHarness(t)
	ctx := ctxT(t)
	if _, err := c.Start(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("Start(missing) = %v, want NotFound", err)
	}
	if _, err := c.Delete(ctx, "nope"); err != nil {
		t.Errorf("Delete(missing) = %v, want success", err)
	}
	create(t, c, "dup", newSpec(t, "dup", lifecycle.Config{}, "sleep", "600"), false)
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "dup", Spec: newSpec(t, "dup", lifecycle.Config{}, "true"),
		Rootfs: vmagent.Rootfs{Source: rootfs, Type: "bind"}}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Create = %v, want AlreadyExists", err)
	}
	if _, err := c.Exec(ctx, "dup", "x", &specs.Process{Args: []string{"true"}}); !errdefs.IsInvalidState(err) {
		t.Errorf("Exec in a created container = %v, want InvalidState", err)
	}
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "bad/id", Spec: newSpec(t, "x", lifecycle.Config{}, "true"),
		Rootfs: vmagent.Rootfs{Source: rootfs, Type: "bind"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Create(bad/id) = %v, want InvalidArgument", err)
	}
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "nodev", Spec: newSpec(t, "x", lifecycle.Config{}, "true"),
		Rootfs: vmagent.Rootfs{Source: "/dev/berth-no-such-disk", Type: "ext4"}}); err == nil || !strings.Contains(err.Error(), "berth-no-such-disk") {
		t.Errorf("Create with a missing device = %v, want an error naming it", err)
	}
	badInit := newSpec(t, "badinit", lifecycle.Config{Init: true}, "true")
	badInit.Annotations[isolation.AnnotationInit] = "/sbin/tini"
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "badinit", Spec: badInit,
		Rootfs: vmagent.Rootfs{Source: rootfs, Type: "bind"}}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "/sbin/tini") {
		t.Errorf("Create with --init at /sbin/tini = %v, want InvalidArgument naming it", err)
	}
	if _, err := c.Start(ctx, "dup"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "dup"); !errdefs.IsInvalidState(err) {
		t.Errorf("Delete(running) = %v, want InvalidState", err)
	}
	if err := c.Signal(ctx, "dup", "", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "dup", ""); err != nil || e.Signal != syscall.SIGKILL || e.Code != 137 {
		t.Errorf("Wait after SIGKILL = %+v, %v", e, err)
	}
	if err := c.Signal(ctx, "dup", "", syscall.SIGTERM, false); !errdefs.IsNotFound(err) {
		t.Errorf("Signal(exited) = %v, want NotFound", err)
	}
	if _, err := c.Delete(ctx, "dup"); err != nil {
		t.Fatal(err)
	}
	// A created container that never started can be deleted.
	create(t, c, "never", newSpec(t, "never", lifecycle.Config{}, "true"), false)
	if _, err := c.Delete(ctx, "never"); err != nil {
		t.Errorf("Delete(created) = %v", err)
	}
}

func TestStdinExecSignalsPauseStats(t *testing.T) {
	h, c := newHarness(t)
	ctx := ctxT(t)
	// docker run -i: stdin reaches the init; its end closes the pipe.
	create(t, c, "cat", newSpec(t, "cat", lifecycle.Config{OpenStdin: true}, "cat"), true)
	var out syncBuf
	done := make(chan error, 1)
	go func() {
		done <- c.Attach(ctx, "cat", "", isolation.Streams{Stdin: strings.NewReader("hello through stdin\n"), Stdout: &out})
	}()
	if _, err := c.Start(ctx, "cat"); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "cat", ""); err != nil || e.Code != 0 {
		t.Fatalf("cat exited %+v, %v", e, err)
	}
	if err := <-done; err != nil || out.String() != "hello through stdin\n" {
		t.Errorf("cat echoed %q, %v", out.String(), err)
	}

	create(t, c, "box", newSpec(t, "box", lifecycle.Config{}, "sleep", "600"), false)
	initPid, err := c.Start(ctx, "box")
	if err != nil {
		t.Fatal(err)
	}
	// Exec: output, exit code, the container's pid namespace.
	if _, err := c.Exec(ctx, "box", "e1", &specs.Process{Args: []string{"sh", "-c", "echo exec pid $$; ps -o pid,comm | grep -c sleep; exit 5"}}); err != nil {
		t.Fatal(err)
	}
	var eout syncBuf
	if err := c.Attach(ctx, "box", "e1", isolation.Streams{Stdout: &eout}); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "box", "e1"); err != nil || e.Code != 5 {
		t.Errorf("exec exit = %+v, %v", e, err)
	}
	if !strings.HasPrefix(eout.String(), "exec pid ") || !strings.HasSuffix(eout.String(), "\n1\n") {
		t.Errorf("exec output %q: want its pid and one sleep in the container", eout.String())
	}
	if _, err := c.Exec(ctx, "box", "e1", &specs.Process{Args: []string{"true"}}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("exec with a used id = %v, want AlreadyExists", err)
	}
	// Signals to an exec.
	if _, err := c.Exec(ctx, "box", "e2", &specs.Process{Args: []string{"sleep", "600"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(ctx, "box", "e2", syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "box", "e2"); err != nil || e.Code != 128+int(syscall.SIGTERM) {
		t.Errorf("exec after SIGTERM = %+v, %v", e, err)
	}
	// Stats from the container's cgroup.
	u, err := c.Stats(ctx, "box")
	if err != nil || u.Pids < 1 || u.MemoryBytes == 0 || u.Time.IsZero() {
		t.Errorf("Stats = %+v, %v", u, err)
	}
	// Update: a new memory limit in the container's cgroup.
	limit := int64(48 << 20)
	if err := c.Update(ctx, "box", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", h.parent, "box", "memory.limit_in_bytes")); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(limit) {
		t.Errorf("memory limit after Update = %q, %v; want %d", b, err, limit)
	}
	if err := c.Update(ctx, "nope", &specs.LinuxResources{}); !errdefs.IsNotFound(err) {
		t.Errorf("Update(missing) = %v, want NotFound", err)
	}
	// Pause freezes the cgroup; exec is refused while paused.
	if err := c.Pause(ctx, "box"); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(ctx, "box"); err != nil {
		t.Errorf("second Pause = %v", err)
	}
	if st, _ := c.State(ctx, "box"); st.Status != isolation.StatusPaused {
		t.Errorf("status after Pause = %s", st.Status)
	}
	if state := procState(initPid); state != "D" && state != "S" {
		t.Logf("frozen init state %q", state)
	}
	if _, err := c.Exec(ctx, "box", "e3", &specs.Process{Args: []string{"true"}}); !errdefs.IsInvalidState(err) {
		t.Errorf("exec while paused = %v, want InvalidState", err)
	}
	if err := c.Resume(ctx, "box"); err != nil {
		t.Fatal(err)
	}
	// Reconnect: a new host connection sees the same container.
	c2 := h.connect()
	if st, err := c2.State(ctx, "box"); err != nil || st.Status != isolation.StatusRunning || st.Pid != initPid {
		t.Errorf("State over a new connection = %+v, %v", st, err)
	}
	if err := c2.Signal(ctx, "box", "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if e, err := c2.Wait(ctx, "box", ""); err != nil || e.Code != 137 {
		t.Errorf("init after kill-all = %+v, %v", e, err)
	}
	for _, id := range []string{"cat", "box"} {
		if _, err := c2.Delete(ctx, id); err != nil {
			t.Errorf("Delete(%s): %v", id, err)
		}
	}
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

func TestTerminalAndResize(t *testing.T) {
	_, c := newHarness(t)
	ctx := ctxT(t)
	s := newSpec(t, "tty", lifecycle.Config{Tty: true, OpenStdin: true}, "sh")
	create(t, c, "tty", s, true)
	pr, pw := io.Pipe()
	defer pw.Close()
	var out syncBuf
	done := make(chan error, 1)
	go func() { done <- c.Attach(ctx, "tty", "", isolation.Streams{Stdin: pr, Stdout: &out}) }()
	if err := c.ResizePTY(ctx, "tty", "", isolation.ConsoleSize{Width: 101, Height: 33}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "tty"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(pw, "stty size; tty\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the init's stty size", func() bool { return strings.Contains(out.String(), "33 101") })
	// An exec with its own terminal, resized while it runs.
	if _, err := c.Exec(ctx, "tty", "t1", &specs.Process{Terminal: true, Args: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
	epr, epw := io.Pipe()
	var eout syncBuf
	edone := make(chan error, 1)
	go func() { edone <- c.Attach(ctx, "tty", "t1", isolation.Streams{Stdin: epr, Stdout: &eout}) }()
	if err := c.ResizePTY(ctx, "tty", "t1", isolation.ConsoleSize{Width: 77, Height: 22}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(epw, "stty size; exit 4\n"); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "tty", "t1"); err != nil || e.Code != 4 {
		t.Errorf("tty exec exit = %+v, %v", e, err)
	}
	if err := <-edone; err != nil {
		t.Errorf("exec attach: %v", err)
	}
	epw.Close()
	if !strings.Contains(eout.String(), "22 77") {
		t.Errorf("exec terminal output %q, want its size 22 77", eout.String())
	}
	if err := c.ResizePTY(ctx, "tty", "t1", isolation.ConsoleSize{Width: 1, Height: 1}); !errdefs.IsInvalidState(err) {
		t.Errorf("resize of an exited exec = %v, want InvalidState", err)
	}
	if !strings.Contains(out.String(), "/dev/pts/") {
		t.Errorf("init's tty output %q, want a /dev/pts name", out.String())
	}
	pw.Close() // ^D ends the shell
	if e, err := c.Wait(ctx, "tty", ""); err != nil || e.Code != 0 {
		t.Errorf("tty init exit = %+v, %v", e, err)
	}
	if err := <-done; err != nil {
		t.Errorf("attach: %v", err)
	}
	if _, err := c.Delete(ctx, "tty"); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	_, c := newHarness(t)
	ctx := ctxT(t)
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// tail of /dev/zero keeps its one endless line in memory; the limit
	// comes from the spec's Linux.Resources, as the VM plugin sends it.
	s := newSpec(t, "oom", lifecycle.Config{}, "tail", "/dev/zero")
	limit := int64(16 << 20)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	create(t, c, "oom", s, false)
	if _, err := c.Start(ctx, "oom"); err != nil {
		t.Fatal(err)
	}
	e, err := c.Wait(ctx, "oom", "")
	if err != nil || e.Signal != syscall.SIGKILL || !e.OOMKilled {
		t.Errorf("Wait = %+v, %v; want SIGKILL with OOMKilled", e, err)
	}
	var kinds []string
	deadline := time.After(30 * time.Second)
	for !(contains(kinds, isolation.EventOOM) && contains(kinds, isolation.EventExit)) {
		select {
		case ev := <-events:
			if ev.ID == "oom" {
				kinds = append(kinds, ev.Kind)
			}
		case <-deadline:
			t.Fatalf("events %v: want oom and exit", kinds)
		}
	}
	if _, err := c.Delete(ctx, "oom"); err != nil {
		t.Fatal(err)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestSystemCallsAndShutdown(t *testing.T) {
	h, c := newHarness(t)
	ctx := ctxT(t)
	info, err := c.Info(ctx)
	if err != nil || info.Version != vmagent.Version || info.KernelRelease == "" || info.PID1 || info.Uptime <= 0 ||
		info.MemTotal == 0 || info.MemAvailable == 0 || info.AgentRSS == 0 {
		t.Errorf("Info = %+v, %v", info, err)
	}
	now := time.Unix(1_800_000_000, 0)
	if err := c.SyncClock(ctx, now); err != nil {
		t.Fatal(err)
	}
	if err := c.AddEntropy(ctx, []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	if err := c.AddEntropy(ctx, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("AddEntropy(nil) = %v, want InvalidArgument", err)
	}
	if err := c.SetHostname(ctx, "guest-1", ""); err != nil {
		t.Fatal(err)
	}
	h.sys.mu.Lock()
	if !h.sys.clock.Equal(now) || string(h.sys.entropy) != "0123456789abcdef" || h.sys.hostname != "guest-1" {
		t.Errorf("system got clock %v entropy %q hostname %q", h.sys.clock, h.sys.entropy, h.sys.hostname)
	}
	h.sys.mu.Unlock()
	// Shutdown kills the containers and powers off.
	create(t, c, "run", newSpec(t, "run", lifecycle.Config{}, "sleep", "600"), false)
	if _, err := c.Start(ctx, "run"); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.sys.poweroff:
	case <-time.After(60 * time.Second):
		t.Fatal("no power off after Shutdown")
	}
	if _, err := c.State(ctx, "run"); !errdefs.IsNotFound(err) {
		t.Errorf("container after shutdown: %v", err)
	}
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "late", Spec: newSpec(t, "late", lifecycle.Config{}, "true"),
		Rootfs: vmagent.Rootfs{Source: rootfs, Type: "bind"}}); !errdefs.IsUnavailable(err) {
		t.Errorf("Create while shutting down = %v, want Unavailable", err)
	}
}
