package lifecycle

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// These tests cross the real gRPC boundary (go-plugin's in-process test
// connection) with a scripted fake: they are about the adapter seam, not
// about the state machine.

var testTime = time.Unix(1700000000, 987654321)

// testConfig sets every field, so a field the converters forget shows up.
var testConfig = Config{
	Image: "alpine:3.20", Isolation: "vm",
	Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"}, Env: []string{"A=1", "B=2"},
	User: "1000:1000", WorkingDir: "/srv", Hostname: "web", Labels: map[string]string{"app": "web"},
	Tty: true, OpenStdin: true, StopSignal: "SIGQUIT", StopTimeout: 7*time.Second + 3,
	Mounts: []Mount{
		{Type: "bind", Source: "/data", Destination: "/data", ReadOnly: true, Options: []string{"rbind"}},
		{Type: "tmpfs", Destination: "/tmp", Options: []string{"size=64m"}},
	},
	Limits: resources.Limits{
		CPUShares: 512, CPUs: 1.5, CPUSetCPUs: "0-1", CPUSetMems: "0", MemoryBytes: 1 << 30,
		MemorySoftBytes: 1 << 29, SwapBytes: -1, IOReadBPS: 10, IOWriteBPS: 20, IODevice: "/var",
		Pids: 100, Devices: []resources.DeviceRule{{Allow: true, Type: "c", Major: 1, Minor: -1, Access: "rwm"}},
	},
	Restart: RestartPolicy{Name: "on-failure", MaxRetries: 3},
	Network: NetworkOptions{
		Network: "bridge", IP: "10.88.0.5",
		Ports:      []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		DNS:        []string{"1.1.1.1"},
		DNSSearch:  []string{"example.com"},
		ExtraHosts: []isolation.HostEntry{{Name: "db", IP: "10.0.0.2"}},
	},
	VM:             &isolation.VMSizing{CPUs: 2, MemoryBytes: 2 << 30, Kernel: "/k", Initrd: "/i", KernelArgs: []string{"quiet"}},
	ReadOnlyRootfs: true, Privileged: true, CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"MKNOD"},
	Ulimits:     []Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "core", Soft: -1, Hard: -1}},
	Devices:     []DeviceMapping{{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", Permissions: "rw"}},
	SecurityOpt: []string{"no-new-privileges", `seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`},
	Init:        true,
	OOMScoreAdj: -17,
}

func testContainer(ref string, state State) Container {
	return Container{
		ID: "c0ffee" + ref, Name: ref, ImageDigest: "sha256:abc", Config: testConfig,
		Isolation: "vm", SnapshotKey: "snap-" + ref, State: state, Pid: 4242, ExitCode: 137,
		OOMKilled: true, Checkpoint: "/ckpt", RestartCount: 2, Restarting: true,
		CreatedAt: testTime, StartedAt: testTime.Add(time.Second), // FinishedAt stays zero
	}
}

// fake records what reached it and answers what the test scripted.
type fake struct {
	mu    sync.Mutex
	calls []string
	// err, when set, is returned by every method.
	err error

	created Config
	filter  Filter
	exec    ExecConfig
	size    isolation.ConsoleSize
	stop    time.Duration
	sig     syscall.Signal
	limits  resources.Limits

	// attach is the implementation's Attach; nil records and returns err.
	attach func(ctx context.Context, ref, execID string, s isolation.Streams) error
	// events are sent by Events, which then blocks until ctx is done and
	// closes eventsDone.
	events     []Event
	eventsDone chan struct{}
}

func (f *fake) record(call string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s%v", call, args))
	return f.err
}

func (f *fake) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerLifecycle, "fake", "v0.0.1", CapEvents), nil
}
func (f *fake) ConfigSchema(context.Context) (*schema.Spec, error)       { return &schema.Spec{}, nil }
func (f *fake) Configure(context.Context, plugin.ConfigureRequest) error { return nil }

func (f *fake) container(call, ref string, state State, args ...any) (Container, error) {
	if err := f.record(call, append([]any{ref}, args...)...); err != nil {
		return Container{}, err
	}
	return testContainer(ref, state), nil
}

func (f *fake) Create(_ context.Context, name string, cfg Config) (Container, error) {
	f.mu.Lock()
	f.created = cfg
	f.mu.Unlock()
	return f.container("Create", name, StateCreated)
}
func (f *fake) Start(_ context.Context, ref string) (Container, error) {
	return f.container("Start", ref, StateRunning)
}
func (f *fake) Stop(_ context.Context, ref string, timeout time.Duration) (Container, error) {
	f.mu.Lock()
	f.stop = timeout
	f.mu.Unlock()
	return f.container("Stop", ref, StateStopped)
}
func (f *fake) Kill(_ context.Context, ref string, sig syscall.Signal) error {
	f.mu.Lock()
	f.sig = sig
	f.mu.Unlock()
	return f.record("Kill", ref)
}
func (f *fake) Pause(_ context.Context, ref string) (Container, error) {
	return f.container("Pause", ref, StatePaused)
}
func (f *fake) Resume(_ context.Context, ref string) (Container, error) {
	return f.container("Resume", ref, StateRunning)
}
func (f *fake) Checkpoint(_ context.Context, ref string, leaveRunning bool) (Container, error) {
	return f.container("Checkpoint", ref, StateCheckpointed, leaveRunning)
}
func (f *fake) Restore(_ context.Context, ref string) (Container, error) {
	return f.container("Restore", ref, StateRunning)
}
func (f *fake) Delete(_ context.Context, ref string, force bool) error {
	return f.record("Delete", ref, force)
}
func (f *fake) Get(_ context.Context, ref string) (Container, error) {
	return f.container("Get", ref, StateRunning)
}
func (f *fake) List(_ context.Context, filter Filter) ([]Container, error) {
	f.mu.Lock()
	f.filter = filter
	f.mu.Unlock()
	if err := f.record("List"); err != nil {
		return nil, err
	}
	return []Container{testContainer("a", StateRunning), testContainer("b", StateStopped)}, nil
}
func (f *fake) Exec(_ context.Context, ref string, cfg ExecConfig) (string, error) {
	f.mu.Lock()
	f.exec = cfg
	f.mu.Unlock()
	if err := f.record("Exec", ref); err != nil {
		return "", err
	}
	return "exec-1", nil
}
func (f *fake) Attach(ctx context.Context, ref, execID string, s isolation.Streams) error {
	if f.attach != nil {
		return f.attach(ctx, ref, execID, s)
	}
	return f.record("Attach", ref, execID)
}
func (f *fake) Resize(_ context.Context, ref, execID string, size isolation.ConsoleSize) error {
	f.mu.Lock()
	f.size = size
	f.mu.Unlock()
	return f.record("Resize", ref, execID)
}
func (f *fake) Wait(_ context.Context, ref string) (isolation.ExitStatus, error) {
	if err := f.record("Wait", ref); err != nil {
		return isolation.ExitStatus{}, err
	}
	return isolation.ExitStatus{Code: 137, Signal: syscall.SIGKILL, ExitedAt: testTime, OOMKilled: true}, nil
}
func (f *fake) WaitExec(_ context.Context, ref, execID string) (isolation.ExitStatus, error) {
	if err := f.record("WaitExec", ref, execID); err != nil {
		return isolation.ExitStatus{}, err
	}
	return isolation.ExitStatus{Code: 3, ExitedAt: testTime}, nil
}
func (f *fake) Rename(_ context.Context, ref, newName string) error {
	return f.record("Rename", ref, newName)
}
func (f *fake) Update(_ context.Context, ref string, limits resources.Limits) (Container, error) {
	f.mu.Lock()
	f.limits = limits
	f.mu.Unlock()
	return f.container("Update", ref, StateRunning)
}
func (f *fake) Stats(_ context.Context, ref string) (isolation.Stats, error) {
	if err := f.record("Stats", ref); err != nil {
		return isolation.Stats{}, err
	}
	return testStats, nil
}
func (f *fake) Events(ctx context.Context) (<-chan Event, error) {
	if err := f.record("Events"); err != nil {
		return nil, err
	}
	ch := make(chan Event)
	go func() {
		defer close(ch)
		if f.eventsDone != nil {
			defer close(f.eventsDone)
		}
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

var testStats = isolation.Stats{
	Time: testTime, CPUUsageNanos: 1, CPUThrottledPeriods: 2, CPUThrottledNanos: 3, MemoryBytes: 4,
	MemoryPeakBytes: 5, SwapBytes: 6, IOReadBytes: 7, IOWriteBytes: 8, Pids: 9,
}

// dial serves f over an in-process gRPC connection and returns the client.
func dial(t *testing.T, f *fake) *Client {
	t.Helper()
	client, _ := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{"lifecycle": NewPlugin(f)})
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense("lifecycle")
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		t.Fatalf("dispensed %T, want *Client", raw)
	}
	return c
}

// containerEqual compares containers with time.Time.Equal (the wire drops
// the monotonic clock and location).
func containerEqual(a, b Container) bool {
	ta := []time.Time{a.CreatedAt, a.StartedAt, a.FinishedAt}
	tb := []time.Time{b.CreatedAt, b.StartedAt, b.FinishedAt}
	for i := range ta {
		if !ta[i].Equal(tb[i]) || ta[i].IsZero() != tb[i].IsZero() {
			return false
		}
	}
	a.CreatedAt, a.StartedAt, a.FinishedAt = time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.StartedAt, b.FinishedAt = time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func TestRoundTrip(t *testing.T) {
	f := &fake{}
	c := dial(t, f)
	ctx := context.Background()

	check := func(call string, got Container, err error, want Container) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", call, err)
			return
		}
		if !containerEqual(got, want) {
			t.Errorf("%s =\n %+v\nwant\n %+v", call, got, want)
		}
	}
	got, err := c.Create(ctx, "web", testConfig)
	check("Create", got, err, testContainer("web", StateCreated))
	if !reflect.DeepEqual(f.created, testConfig) {
		t.Errorf("plugin got config\n %+v\nwant\n %+v", f.created, testConfig)
	}
	got, err = c.Start(ctx, "web")
	check("Start", got, err, testContainer("web", StateRunning))
	got, err = c.Stop(ctx, "web", -1)
	check("Stop", got, err, testContainer("web", StateStopped))
	if f.stop != -1 {
		t.Errorf("Stop timeout = %v, want -1ns", f.stop)
	}
	got, err = c.Stop(ctx, "web", 1500*time.Millisecond)
	check("Stop", got, err, testContainer("web", StateStopped))
	if f.stop != 1500*time.Millisecond {
		t.Errorf("Stop timeout = %v, want 1.5s", f.stop)
	}
	if err := c.Kill(ctx, "web", syscall.SIGUSR2); err != nil || f.sig != syscall.SIGUSR2 {
		t.Errorf("Kill: %v; plugin got signal %v", err, f.sig)
	}
	got, err = c.Pause(ctx, "web")
	check("Pause", got, err, testContainer("web", StatePaused))
	got, err = c.Resume(ctx, "web")
	check("Resume", got, err, testContainer("web", StateRunning))
	got, err = c.Checkpoint(ctx, "web", true)
	check("Checkpoint", got, err, testContainer("web", StateCheckpointed))
	got, err = c.Restore(ctx, "web")
	check("Restore", got, err, testContainer("web", StateRunning))
	got, err = c.Get(ctx, "web")
	check("Get", got, err, testContainer("web", StateRunning))
	if err := c.Delete(ctx, "web", true); err != nil {
		t.Errorf("Delete: %v", err)
	}

	filter := Filter{All: true, States: []State{StateRunning, StatePaused}, Labels: map[string]string{"app": "web"}, Name: "we"}
	list, err := c.List(ctx, filter)
	if err != nil || len(list) != 2 || !containerEqual(list[1], testContainer("b", StateStopped)) {
		t.Errorf("List = %+v, %v", list, err)
	}
	if !reflect.DeepEqual(f.filter, filter) {
		t.Errorf("plugin got filter %+v, want %+v", f.filter, filter)
	}

	ec := ExecConfig{Cmd: []string{"sh"}, Env: []string{"X=1"}, User: "root", WorkingDir: "/", Tty: true, OpenStdin: true, ConsoleSize: &isolation.ConsoleSize{Width: 132, Height: 43}}
	id, err := c.Exec(ctx, "web", ec)
	if err != nil || id != "exec-1" || !reflect.DeepEqual(f.exec, ec) {
		t.Errorf("Exec = %q, %v; plugin got %+v", id, err, f.exec)
	}
	if err := c.Resize(ctx, "web", "exec-1", isolation.ConsoleSize{Width: 120, Height: 40}); err != nil || f.size != (isolation.ConsoleSize{Width: 120, Height: 40}) {
		t.Errorf("Resize: %v; plugin got %+v", err, f.size)
	}
	st, err := c.Wait(ctx, "web")
	if err != nil || st.Code != 137 || st.Signal != syscall.SIGKILL || !st.ExitedAt.Equal(testTime) || !st.OOMKilled {
		t.Errorf("Wait = %+v, %v", st, err)
	}
	st, err = c.WaitExec(ctx, "web", "exec-1")
	if err != nil || st.Code != 3 || st.Signal != 0 || !st.ExitedAt.Equal(testTime) || st.OOMKilled {
		t.Errorf("WaitExec = %+v, %v", st, err)
	}
	if err := c.Rename(ctx, "web", "api"); err != nil {
		t.Errorf("Rename: %v", err)
	}
	got, err = c.Update(ctx, "web", testConfig.Limits)
	check("Update", got, err, testContainer("web", StateRunning))
	if !reflect.DeepEqual(f.limits, testConfig.Limits) {
		t.Errorf("plugin got limits\n %+v\nwant\n %+v", f.limits, testConfig.Limits)
	}
	stats, err := c.Stats(ctx, "web")
	if err != nil || !stats.Time.Equal(testStats.Time) {
		t.Errorf("Stats = %+v, %v", stats, err)
	}
	stats.Time = testStats.Time
	if stats != testStats {
		t.Errorf("Stats = %+v, want %+v", stats, testStats)
	}

	wantCalls := []string{"Create[web]", "Start[web]", "Stop[web]", "Stop[web]", "Kill[web]", "Pause[web]", "Resume[web]",
		"Checkpoint[web true]", "Restore[web]", "Get[web]", "Delete[web true]", "List[]", "Exec[web]", "Resize[web exec-1]", "Wait[web]",
		"WaitExec[web exec-1]", "Rename[web api]", "Update[web]", "Stats[web]"}
	if !reflect.DeepEqual(f.calls, wantCalls) {
		t.Errorf("calls = %v\nwant    %v", f.calls, wantCalls)
	}
}

func TestZeroValuesRoundTrip(t *testing.T) {
	// No VM sizing stays nil; zero times stay zero.
	got := containerFromPB(containerToPB(Container{ID: "x"}))
	if got.Config.VM != nil || !got.CreatedAt.IsZero() || !got.FinishedAt.IsZero() {
		t.Errorf("zero container came back as %+v", got)
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	kinds := []struct {
		kind error
		err  error
	}{
		{errdefs.ErrNotFound, errdefs.NotFound("no container web")},
		{errdefs.ErrAlreadyExists, errdefs.AlreadyExists("name web is taken")},
		{errdefs.ErrInvalidState, errdefs.InvalidState("container web is stopped; only a running container can be paused")},
		{errdefs.ErrNotImplemented, errdefs.NotImplemented("checkpoint")},
		{errdefs.ErrUnavailable, errdefs.Unavailable("isolation plugin vm is restarting")},
		{errdefs.ErrInvalidArgument, errdefs.InvalidArgument("bad signal")},
	}
	ctx := context.Background()
	calls := map[string]func(c *Client) error{
		"Create":     func(c *Client) error { _, err := c.Create(ctx, "web", Config{}); return err },
		"Start":      func(c *Client) error { _, err := c.Start(ctx, "web"); return err },
		"Stop":       func(c *Client) error { _, err := c.Stop(ctx, "web", 0); return err },
		"Kill":       func(c *Client) error { return c.Kill(ctx, "web", syscall.SIGTERM) },
		"Pause":      func(c *Client) error { _, err := c.Pause(ctx, "web"); return err },
		"Resume":     func(c *Client) error { _, err := c.Resume(ctx, "web"); return err },
		"Checkpoint": func(c *Client) error { _, err := c.Checkpoint(ctx, "web", false); return err },
		"Restore":    func(c *Client) error { _, err := c.Restore(ctx, "web"); return err },
		"Delete":     func(c *Client) error { return c.Delete(ctx, "web", false) },
		"Get":        func(c *Client) error { _, err := c.Get(ctx, "web"); return err },
		"List":       func(c *Client) error { _, err := c.List(ctx, Filter{}); return err },
		"Exec":       func(c *Client) error { _, err := c.Exec(ctx, "web", ExecConfig{}); return err },
		"Attach": func(c *Client) error {
			return c.Attach(ctx, "web", "", isolation.Streams{Stdin: bytes.NewReader([]byte("x")), Stdout: io.Discard})
		},
		"Resize": func(c *Client) error { return c.Resize(ctx, "web", "", isolation.ConsoleSize{}) },
		"Wait":   func(c *Client) error { _, err := c.Wait(ctx, "web"); return err },
		"Stats":  func(c *Client) error { _, err := c.Stats(ctx, "web"); return err },
		"Events": func(c *Client) error { _, err := c.Events(ctx); return err },
	}
	for _, k := range kinds {
		f := &fake{err: k.err}
		c := dial(t, f)
		for name, call := range calls {
			err := call(c)
			if !errors.Is(err, k.kind) {
				t.Errorf("%s with %v: got %v, want kind %v", name, k.kind, err, k.kind)
				continue
			}
			if err.Error() != k.err.Error() {
				t.Errorf("%s: message %q, want %q", name, err.Error(), k.err.Error())
			}
		}
	}
}

func TestAttach(t *testing.T) {
	stdin := make([]byte, 300<<10+7) // several chunks
	if _, err := rand.Read(stdin); err != nil {
		t.Fatal(err)
	}
	stderrData := bytes.Repeat([]byte("warning: something\n"), 10000) // ~190 KiB
	var gotRef, gotExec string
	f := &fake{attach: func(_ context.Context, ref, execID string, s isolation.Streams) error {
		gotRef, gotExec = ref, execID
		// Echo stdin to stdout while writing stderr from another goroutine,
		// as a real process would.
		errc := make(chan error, 1)
		go func() {
			for p := stderrData; len(p) > 0; {
				n := min(len(p), 5000)
				if _, err := s.Stderr.Write(p[:n]); err != nil {
					errc <- err
					return
				}
				p = p[n:]
			}
			errc <- nil
		}()
		if _, err := io.Copy(s.Stdout, s.Stdin); err != nil {
			return err
		}
		return <-errc
	}}
	c := dial(t, f)
	var stdout, stderr bytes.Buffer
	err := c.Attach(context.Background(), "web", "exec-1", isolation.Streams{Stdin: bytes.NewReader(stdin), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if gotRef != "web" || gotExec != "exec-1" {
		t.Errorf("plugin attached to %q/%q", gotRef, gotExec)
	}
	if !bytes.Equal(stdout.Bytes(), stdin) {
		t.Errorf("stdout: got %d bytes, want the %d bytes of stdin echoed", stdout.Len(), len(stdin))
	}
	if !bytes.Equal(stderr.Bytes(), stderrData) {
		t.Errorf("stderr: got %d bytes, want %d", stderr.Len(), len(stderrData))
	}
}

func TestAttachOnlyWantedStreams(t *testing.T) {
	var got isolation.Streams
	f := &fake{attach: func(_ context.Context, _, _ string, s isolation.Streams) error {
		got = s
		if s.Stdout != nil {
			_, _ = s.Stdout.Write([]byte("hello"))
		}
		return nil
	}}
	c := dial(t, f)
	var stdout bytes.Buffer
	if err := c.Attach(context.Background(), "web", "", isolation.Streams{Stdout: &stdout}); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if got.Stdin != nil || got.Stderr != nil || got.Stdout == nil {
		t.Errorf("plugin got streams %+v; want only stdout", got)
	}
	if stdout.String() != "hello" {
		t.Errorf("stdout = %q", stdout.String())
	}
}

// blockingReader blocks until closed, like a terminal nobody types into.
type blockingReader struct{ done chan struct{} }

func (r blockingReader) Read([]byte) (int, error) { <-r.done; return 0, io.EOF }

func TestAttachEndsWhenPluginReturns(t *testing.T) {
	// The process exits while the client's stdin is still open: Attach
	// returns without waiting for stdin.
	f := &fake{attach: func(_ context.Context, _, _ string, s isolation.Streams) error {
		_, err := s.Stdout.Write([]byte("bye\n"))
		return err
	}}
	c := dial(t, f)
	in := blockingReader{done: make(chan struct{})}
	defer close(in.done)
	var stdout bytes.Buffer
	errc := make(chan error, 1)
	go func() {
		errc <- c.Attach(context.Background(), "web", "", isolation.Streams{Stdin: in, Stdout: &stdout})
	}()
	select {
	case err := <-errc:
		if err != nil || stdout.String() != "bye\n" {
			t.Errorf("Attach = %v, stdout %q", err, stdout.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Attach did not return when the plugin's Attach did")
	}
}

func TestAttachCancel(t *testing.T) {
	f := &fake{attach: func(ctx context.Context, _, _ string, _ isolation.Streams) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	c := dial(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Attach(ctx, "web", "", isolation.Streams{Stdout: io.Discard}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Attach after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Attach did not return after cancel")
	}
}

func TestEvents(t *testing.T) {
	events := []Event{
		{Kind: EventCreate, ContainerID: "c1", Name: "web", Time: testTime, Attributes: map[string]string{"image": "alpine"}},
		{Kind: EventStart, ContainerID: "c1", Name: "web", Time: testTime.Add(time.Second)},
		{Kind: EventExit, ContainerID: "c1", Name: "web", ExitCode: 3, Time: testTime.Add(2 * time.Second)},
	}
	f := &fake{events: events, eventsDone: make(chan struct{})}
	c := dial(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	for i, want := range events {
		select {
		case got := <-ch:
			if !got.Time.Equal(want.Time) {
				t.Errorf("event %d time %v, want %v", i, got.Time, want.Time)
			}
			got.Time = want.Time
			if !reflect.DeepEqual(got, want) {
				t.Errorf("event %d = %+v, want %+v", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not arrive", i)
		}
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("got an event after cancel")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the events channel did not close after cancel")
	}
	select {
	case <-f.eventsDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin's event stream was not cancelled")
	}
}
