package isolation

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/isolationv1"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// These tests cross the real gRPC boundary of go-plugin inside one process:
// a Client dispensed by go-plugin talks to the server adapter, which calls
// a fake Runtime. They test the adapters, not a runtime.

// fake is a Runtime that records the arguments of its last call and returns
// canned values, or err when set.
type fake struct {
	mu   sync.Mutex
	err  error
	call string
	args []any

	task   TaskInfo
	tasks  []TaskInfo
	exit   ExitStatus
	stats  Stats
	events []TaskEvent

	// stderr is what the "echo" attach writes to stderr while it echoes
	// stdin to stdout.
	stderr []byte
	// attached is told about every attach when it starts; attachEnded
	// gets the attach's ctx error (or nil) when it returns.
	attached    chan Streams
	attachEnded chan error
	// maxStdinRead is the largest single read from stdin the echo attach
	// saw.
	maxStdinRead int
	// eventsEnded is closed when the Events producer saw its ctx done.
	eventsEnded chan struct{}
}

var _ Runtime = (*fake)(nil)

func newFake() *fake {
	return &fake{attached: make(chan Streams, 16), attachEnded: make(chan error, 16), eventsEnded: make(chan struct{})}
}

func (f *fake) record(call string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call, f.args = call, args
	return f.err
}

func (f *fake) last() (string, []any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.call, f.args
}

func (f *fake) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerIsolation, "fake", "0.0.1", CapExec, CapTTY), nil
}
func (f *fake) ConfigSchema(context.Context) (*schema.Spec, error)       { return nil, nil }
func (f *fake) Configure(context.Context, plugin.ConfigureRequest) error { return nil }

func (f *fake) Create(_ context.Context, spec Spec) (TaskInfo, error) {
	if err := f.record("Create", spec); err != nil {
		return TaskInfo{}, err
	}
	return f.task, nil
}

func (f *fake) Start(_ context.Context, id string) (int, error) {
	if err := f.record("Start", id); err != nil {
		return 0, err
	}
	return 4242, nil
}

func (f *fake) Exec(_ context.Context, id, execID string, process *specs.Process) (int, error) {
	if err := f.record("Exec", id, execID, process); err != nil {
		return 0, err
	}
	return 4343, nil
}

func (f *fake) Signal(_ context.Context, id, execID string, sig syscall.Signal, all bool) error {
	return f.record("Signal", id, execID, sig, all)
}

func (f *fake) Wait(ctx context.Context, id, execID string) (ExitStatus, error) {
	if err := f.record("Wait", id, execID); err != nil {
		return ExitStatus{}, err
	}
	if id == "block" {
		<-ctx.Done()
		return ExitStatus{}, ctx.Err()
	}
	return f.exit, nil
}

func (f *fake) Attach(ctx context.Context, id, execID string, streams Streams) (err error) {
	if err := f.record("Attach", id, execID); err != nil {
		return err
	}
	f.attached <- streams
	defer func() { f.attachEnded <- ctx.Err() }()
	switch id {
	case "echo": // stdin to stdout, f.stderr to stderr at the same time
		errc := make(chan error, 1)
		go func() {
			_, err := streams.Stderr.Write(f.stderr)
			errc <- err
		}()
		buf := make([]byte, 1<<20)
		maxRead := 0
		for {
			n, rerr := streams.Stdin.Read(buf)
			maxRead = max(maxRead, n)
			if _, err := streams.Stdout.Write(buf[:n]); err != nil {
				return err
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		f.mu.Lock()
		f.maxStdinRead = maxRead
		f.mu.Unlock()
		return <-errc
	case "hello":
		_, err := io.WriteString(streams.Stdout, "hello\n")
		return err
	case "block":
		<-ctx.Done()
		return ctx.Err()
	}
	return errdefs.NotFound("task %s not found", id)
}

func (f *fake) ResizePTY(_ context.Context, id, execID string, size ConsoleSize) error {
	return f.record("ResizePTY", id, execID, size)
}
func (f *fake) Pause(_ context.Context, id string) error  { return f.record("Pause", id) }
func (f *fake) Resume(_ context.Context, id string) error { return f.record("Resume", id) }
func (f *fake) Checkpoint(_ context.Context, id string, opts CheckpointOptions) error {
	return f.record("Checkpoint", id, opts)
}

func (f *fake) Restore(_ context.Context, spec Spec, dir string) (TaskInfo, error) {
	if err := f.record("Restore", spec, dir); err != nil {
		return TaskInfo{}, err
	}
	return f.task, nil
}

func (f *fake) Stats(_ context.Context, id string) (Stats, error) {
	if err := f.record("Stats", id); err != nil {
		return Stats{}, err
	}
	return f.stats, nil
}

func (f *fake) Delete(_ context.Context, id string) (ExitStatus, error) {
	if err := f.record("Delete", id); err != nil {
		return ExitStatus{}, err
	}
	return f.exit, nil
}

func (f *fake) List(context.Context) ([]TaskInfo, error) {
	if err := f.record("List"); err != nil {
		return nil, err
	}
	return f.tasks, nil
}

func (f *fake) Recover(context.Context) ([]TaskInfo, error) {
	if err := f.record("Recover"); err != nil {
		return nil, err
	}
	return f.tasks, nil
}

// Events sends f.events, then holds the stream open until ctx is done.
func (f *fake) Events(ctx context.Context) (<-chan TaskEvent, error) {
	if err := f.record("Events"); err != nil {
		return nil, err
	}
	ch := make(chan TaskEvent)
	go func() {
		defer close(f.eventsEnded)
		defer close(ch)
		for _, e := range f.events {
			select {
			case ch <- e:
			case <-ctx.Done():
				return
			}
		}
		<-ctx.Done()
	}()
	return ch, nil
}

// dial serves f through go-plugin and returns the dispensed client.
func dial(t *testing.T, f *fake) *Client {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{"isolation": NewPlugin(f)})
	t.Cleanup(func() {
		// Stop first: Close asks the server to stop itself, which races
		// with a second Stop inside go-plugin.
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense("isolation")
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		t.Fatalf("dispensed %T, want *isolation.Client", raw)
	}
	return c
}

func at(sec int64) time.Time { return time.Unix(sec, 123456789) }

func testSpec() Spec {
	mem := int64(512 << 20)
	return Spec{
		ID: "c1",
		OCI: &specs.Spec{
			Version: specs.Version,
			Process: &specs.Process{
				Terminal: true,
				User:     specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}},
				Args:     []string{"/bin/sh", "-c", "echo hi"},
				Env:      []string{"PATH=/usr/bin:/bin"},
				Cwd:      "/",
				Capabilities: &specs.LinuxCapabilities{
					Bounding: []string{"CAP_CHOWN"}, Effective: []string{"CAP_CHOWN"},
				},
				Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			},
			Root:     &specs.Root{Path: "ignored", Readonly: true},
			Hostname: "web",
			Mounts:   []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid"}}},
			Linux: &specs.Linux{
				Namespaces:  []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/c1"}},
				CgroupsPath: "/berth/c1",
				Resources:   &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}},
				MaskedPaths: []string{"/proc/kcore"},
			},
			Annotations: map[string]string{"org.example": "yes"},
		},
		Rootfs: []mount.Mount{
			{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"}},
			{Type: "bind", Source: "/host/data", Target: "/data", Options: []string{"rbind", "ro"}},
		},
		Placement: resources.Placement{CgroupPath: "/berth/c1", Wrapper: []string{"berth-limit", "--"}, Annotations: map[string]string{"k": "v"}},
		Network: &NetworkAttachment{
			Mode: "bridge",
			Interfaces: []Interface{{
				Name: "eth0", Bridge: "berth0", MAC: "02:42:ac:11:00:02",
				Addresses: []string{"10.88.0.5/16", "fd00::5/64"}, Gateway: "10.88.0.1", MTU: 1500,
			}},
			DNS:      DNS{Servers: []string{"10.88.0.1"}, Search: []string{"local"}, Options: []string{"ndots:1"}},
			Hosts:    []HostEntry{{Name: "db", IP: "10.88.0.6"}},
			Ports:    []PortMapping{{HostIP: "127.0.0.1", HostPort: 65535, ContainerPort: 80, Protocol: "tcp"}},
			Hostname: "web",
		},
		VM:          &VMSizing{CPUs: 2, MemoryBytes: 1 << 30, Kernel: "/k", Initrd: "/i", KernelArgs: []string{"console=hvc0"}},
		LogPath:     "/var/log/berth/c1.json",
		Annotations: map[string]string{"berth.vm/share": "virtiofs"},
	}
}

func TestRoundTrip(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	ctx := t.Context()

	spec := testSpec()
	bare := Spec{ID: "bare"} // nil OCI, network, VM: must stay nil
	exit := ExitStatus{Code: 137, Signal: syscall.SIGKILL, ExitedAt: at(1_700_000_100), OOMKilled: true}
	f.task = TaskInfo{ID: "c1", Pid: 4242, Status: StatusStopped, Exit: &exit, Spec: &spec, CreatedAt: at(1_700_000_000)}
	f.tasks = []TaskInfo{f.task, {ID: "c2", Status: StatusCreated, Spec: &bare}}
	f.exit = exit
	f.stats = Stats{
		Time: at(1_700_000_200), CPUUsageNanos: 1, CPUThrottledPeriods: 2, CPUThrottledNanos: 3, MemoryBytes: 4,
		MemoryPeakBytes: 5, SwapBytes: 6, IOReadBytes: 7, IOWriteBytes: 8, Pids: 9,
	}
	proc := &specs.Process{User: specs.User{UID: 0}, Args: []string{"ps", "aux"}, Cwd: "/tmp", Env: []string{"A=1"}}

	cases := []struct {
		name     string
		call     func() (any, error)
		want     any
		wantArgs []any
	}{
		{"Create", func() (any, error) { return c.Create(ctx, spec) }, f.task, []any{spec}},
		{"Create", func() (any, error) { return c.Create(ctx, bare) }, f.task, []any{bare}},
		{"Start", func() (any, error) { return c.Start(ctx, "c1") }, 4242, []any{"c1"}},
		{"Exec", func() (any, error) { return c.Exec(ctx, "c1", "e1", proc) }, 4343, []any{"c1", "e1", proc}},
		{"Exec", func() (any, error) { return c.Exec(ctx, "c1", "e2", nil) }, 4343, []any{"c1", "e2", (*specs.Process)(nil)}},
		{"Signal", func() (any, error) { return nil, c.Signal(ctx, "c1", "e1", syscall.SIGTERM, true) }, nil, []any{"c1", "e1", syscall.SIGTERM, true}},
		{"Wait", func() (any, error) { return c.Wait(ctx, "c1", "") }, exit, []any{"c1", ""}},
		{"ResizePTY", func() (any, error) { return nil, c.ResizePTY(ctx, "c1", "e1", ConsoleSize{Width: 120, Height: 40}) }, nil, []any{"c1", "e1", ConsoleSize{Width: 120, Height: 40}}},
		{"Pause", func() (any, error) { return nil, c.Pause(ctx, "c1") }, nil, []any{"c1"}},
		{"Resume", func() (any, error) { return nil, c.Resume(ctx, "c1") }, nil, []any{"c1"}},
		{"Checkpoint", func() (any, error) {
			return nil, c.Checkpoint(ctx, "c1", CheckpointOptions{Dir: "/cp", LeaveRunning: true})
		}, nil, []any{"c1", CheckpointOptions{Dir: "/cp", LeaveRunning: true}}},
		{"Restore", func() (any, error) { return c.Restore(ctx, spec, "/cp") }, f.task, []any{spec, "/cp"}},
		{"Stats", func() (any, error) { return c.Stats(ctx, "c1") }, f.stats, []any{"c1"}},
		{"Delete", func() (any, error) { return c.Delete(ctx, "c1") }, exit, []any{"c1"}},
		{"List", func() (any, error) { return c.List(ctx) }, f.tasks, nil},
		{"Recover", func() (any, error) { return c.Recover(ctx) }, f.tasks, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s returned\n %#v\nwant\n %#v", tc.name, got, tc.want)
			}
			call, args := f.last()
			if call != tc.name || !reflect.DeepEqual(args, tc.wantArgs) {
				t.Errorf("runtime got %s%#v\nwant %s%#v", call, args, tc.name, tc.wantArgs)
			}
		})
	}

	info, err := c.Info(ctx)
	if err != nil || info.Layer != plugin.LayerIsolation || !info.HasCapability(CapTTY) {
		t.Errorf("Info = %+v, %v", info, err)
	}
}

func TestTypedErrors(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	ctx := t.Context()

	calls := map[string]func() error{
		"Create":     func() error { _, err := c.Create(ctx, Spec{ID: "x"}); return err },
		"Start":      func() error { _, err := c.Start(ctx, "x"); return err },
		"Exec":       func() error { _, err := c.Exec(ctx, "x", "e", nil); return err },
		"Signal":     func() error { return c.Signal(ctx, "x", "", syscall.SIGTERM, false) },
		"Wait":       func() error { _, err := c.Wait(ctx, "x", ""); return err },
		"Attach":     func() error { return c.Attach(ctx, "x", "", Streams{Stdout: io.Discard}) },
		"ResizePTY":  func() error { return c.ResizePTY(ctx, "x", "", ConsoleSize{}) },
		"Pause":      func() error { return c.Pause(ctx, "x") },
		"Resume":     func() error { return c.Resume(ctx, "x") },
		"Checkpoint": func() error { return c.Checkpoint(ctx, "x", CheckpointOptions{}) },
		"Restore":    func() error { _, err := c.Restore(ctx, Spec{ID: "x"}, "/cp"); return err },
		"Stats":      func() error { _, err := c.Stats(ctx, "x"); return err },
		"Delete":     func() error { _, err := c.Delete(ctx, "x"); return err },
		"List":       func() error { _, err := c.List(ctx); return err },
		"Recover":    func() error { _, err := c.Recover(ctx); return err },
		"Events":     func() error { _, err := c.Events(ctx); return err },
	}
	kinds := []struct {
		kind error
		make func(string, ...any) error
	}{
		{errdefs.ErrNotFound, errdefs.NotFound},
		{errdefs.ErrAlreadyExists, errdefs.AlreadyExists},
		{errdefs.ErrInvalidState, errdefs.InvalidState},
		{errdefs.ErrNotImplemented, errdefs.NotImplemented},
		{errdefs.ErrUnavailable, errdefs.Unavailable},
		{errdefs.ErrInvalidArgument, errdefs.InvalidArgument},
	}
	for _, k := range kinds {
		f.err = k.make("task x is %s", "busy")
		for name, call := range calls {
			err := call()
			if !errors.Is(err, k.kind) || err.Error() != "task x is busy" {
				t.Errorf("%s with runtime error of kind %q: got %v (%T)", name, k.kind, err, err)
			}
		}
	}

	// An untyped error keeps its message and matches no kind.
	f.err = errors.New("disk on fire")
	if err := c.Pause(ctx, "x"); err == nil || err.Error() != "disk on fire" || errdefs.Kind(err) != nil {
		t.Errorf("untyped error: got %v (kind %v)", err, errdefs.Kind(err))
	}
}

// countingWriter records the largest single write it saw.
type countingWriter struct {
	bytes.Buffer
	maxWrite int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.maxWrite = max(w.maxWrite, len(p))
	return w.Buffer.Write(p)
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAttachCopiesStreams(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	in := randomBytes(t, 1<<20)
	f.stderr = randomBytes(t, 1<<20+17)

	var stdout, stderr countingWriter
	err := c.Attach(t.Context(), "echo", "e1", Streams{Stdin: bytes.NewReader(in), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !bytes.Equal(stdout.Bytes(), in) {
		t.Errorf("stdout: got %d bytes, want the %d bytes of stdin back", stdout.Len(), len(in))
	}
	if !bytes.Equal(stderr.Bytes(), f.stderr) {
		t.Errorf("stderr: got %d bytes, want %d", stderr.Len(), len(f.stderr))
	}
	if stdout.maxWrite > maxChunk || stderr.maxWrite > maxChunk {
		t.Errorf("output frames up to %d/%d bytes, want at most %d", stdout.maxWrite, stderr.maxWrite, maxChunk)
	}
	if f.maxStdinRead > maxChunk {
		t.Errorf("stdin frames up to %d bytes, want at most %d", f.maxStdinRead, maxChunk)
	}
}

func TestAttachOnlyWantedStreams(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	var stdout bytes.Buffer
	if err := c.Attach(t.Context(), "hello", "", Streams{Stdout: &stdout}); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if stdout.String() != "hello\n" {
		t.Errorf("stdout = %q", stdout.String())
	}
	s := <-f.attached
	if s.Stdin != nil || s.Stdout == nil || s.Stderr != nil {
		t.Errorf("runtime got stdin %v, stdout %v, stderr %v; want only stdout", s.Stdin != nil, s.Stdout != nil, s.Stderr != nil)
	}
}

func TestAttachStdinCloseIsEOF(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	f.stderr = []byte("bye\n")
	pr, pw := io.Pipe()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- c.Attach(t.Context(), "echo", "", Streams{Stdin: pr, Stdout: &stdout, Stderr: &stderr})
	}()
	<-f.attached
	if _, err := io.WriteString(pw, "line one\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("attach returned before stdin was closed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	_ = pw.Close() // the runtime must see EOF and end the attach
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not end after stdin was closed")
	}
	if stdout.String() != "line one\n" || stderr.String() != "bye\n" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

// A stdin that fails (in a chain of attaches: the caller's attach was
// canceled, as on a Ctrl-P Ctrl-Q detach) must not close the process's
// stdin: a shell on a terminal would read ^D and exit.
func TestAttachStdinErrorLeavesStdinOpen(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- c.Attach(ctx, "echo", "", Streams{Stdin: pr, Stdout: &stdout, Stderr: io.Discard}) }()
	<-f.attached
	_ = pw.CloseWithError(context.Canceled)
	select {
	case err := <-done:
		t.Fatalf("the runtime saw stdin end after a stdin read error (attach returned %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not return after cancel")
	}
}

func TestAttachCancel(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	// Stdin that never ends: Attach must return on cancel all the same.
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pw.Close() })
	done := make(chan error, 1)
	go func() { done <- c.Attach(ctx, "block", "", Streams{Stdin: pr, Stdout: io.Discard}) }()
	<-f.attached
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("attach after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not return after cancel")
	}
	select {
	case err := <-f.attachEnded:
		if err == nil {
			t.Error("the runtime's attach ended with its ctx still live")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runtime's attach did not see the cancel")
	}
}

func TestWaitBlocksUntilCancel(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Wait(ctx, "block", "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait: %v, want context.DeadlineExceeded", err)
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Errorf("wait returned after %v, before its deadline", time.Since(start))
	}
}

func TestEvents(t *testing.T) {
	f := newFake()
	c := dial(t, f)
	f.events = []TaskEvent{
		{Kind: EventOOM, ID: "c1", Time: at(1_700_000_001)},
		{Kind: EventExit, ID: "c1", ExecID: "e1", Exit: &ExitStatus{Code: 137, Signal: syscall.SIGKILL, ExitedAt: at(1_700_000_002), OOMKilled: true}, Time: at(1_700_000_002)},
		{Kind: EventExit, ID: "c2", Exit: &ExitStatus{Code: 0, ExitedAt: at(1_700_000_003)}, Time: at(1_700_000_003)},
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := c.Events(ctx)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	for i, want := range f.events {
		select {
		case got := <-ch:
			if !reflect.DeepEqual(got, want) {
				t.Errorf("event %d = %#v, want %#v", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not arrive", i)
		}
	}
	cancel()
	timeout := time.After(10 * time.Second)
	for closed := false; !closed; {
		select {
		case e, ok := <-ch:
			if ok {
				t.Errorf("unexpected event after cancel: %#v", e)
			}
			closed = !ok
		case <-timeout:
			t.Fatal("events channel not closed after cancel")
		}
	}
	select {
	case <-f.eventsEnded:
	case <-timeout:
		t.Fatal("the runtime's event stream did not see the cancel")
	}
}

// TestServerRejectsMalformed speaks the wire directly, as a client in
// another language might.
func TestServerRejectsMalformed(t *testing.T) {
	f := newFake()
	raw := pb.NewIsolationClient(dial(t, f).Conn())
	ctx := t.Context()

	_, err := raw.Create(ctx, &pb.CreateRequest{Spec: &pb.Spec{Id: "c1", OciJson: []byte("{not json")}})
	if err = errdefs.FromGRPC(err); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("create with a malformed OCI spec: %v, want ErrInvalidArgument", err)
	}
	_, err = raw.Exec(ctx, &pb.ExecRequest{Id: "c1", ExecId: "e1", ProcessJson: []byte("[]")})
	if err = errdefs.FromGRPC(err); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("exec with a malformed OCI process: %v, want ErrInvalidArgument", err)
	}

	stream, err := raw.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Stdin{Stdin: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err = stream.Recv(); !errors.Is(errdefs.FromGRPC(err), errdefs.ErrInvalidArgument) {
		t.Errorf("attach without open: %v, want ErrInvalidArgument", err)
	}
	if call, _ := f.last(); call != "" {
		t.Errorf("runtime was called (%s) for a malformed request", call)
	}
}
