package vmagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/resources"
)

// Client calls one agent. It is safe for concurrent use. Its connection is
// used once: when it breaks, calls fail with errdefs.ErrUnavailable and
// the caller makes a new Client on a new connection (the agent keeps its
// containers across connections).
type Client struct {
	cc  *grpc.ClientConn
	api agentpb.AgentClient
}

// NewClient speaks the agent protocol over conn, which the Client owns
// (Close closes it). It does not block: the first call synchronises the
// session (Handshake, waiting for a guest that is still booting) and shows
// whether the agent answers; bound it with a context.
func NewClient(conn net.Conn) (*Client, error) {
	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(ContextDialer(conn)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// A TCG guest may take long to boot; the caller's context bounds
		// the wait.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: 10 * time.Minute}),
	}, errdefs.DialOptions()...)
	cc, err := grpc.NewClient("passthrough:///berth-vm-agent", opts...)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent client: %w", err)
	}
	return &Client{cc: cc, api: agentpb.NewAgentClient(cc)}, nil
}

// ContextDialer is a gRPC dialer (grpc.WithContextDialer) that yields conn
// once, after the channel handshake; later dials fail (a broken channel
// needs a new connection). Use it to build a gRPC connection to the agent
// by hand (NewClientConn).
func ContextDialer(conn net.Conn) func(context.Context, string) (net.Conn, error) {
	var once sync.Once
	return func(ctx context.Context, _ string) (net.Conn, error) {
		var c net.Conn
		once.Do(func() { c = conn })
		if c == nil {
			return nil, errors.New("the agent connection is closed; make a new client on a new connection")
		}
		hc, err := Handshake(ctx, c)
		if err != nil {
			c.Close()
			return nil, err
		}
		return hc, nil
	}
}

// NewClientConn speaks the agent protocol over an existing gRPC connection
// (a supervisor forwarding the agent's service); the caller owns cc and
// should install errdefs.DialOptions on it, and ContextDialer when cc
// dials the agent's channel itself.
func NewClientConn(cc grpc.ClientConnInterface) *Client {
	return &Client{api: agentpb.NewAgentClient(cc)}
}

// Close closes the connection (NewClient's); containers in the guest keep
// running.
func (c *Client) Close() error {
	if c.cc == nil {
		return nil
	}
	return c.cc.Close()
}

// Info asks the agent who it is; the first call made on a new connection
// shows whether the agent answers.
func (c *Client) Info(ctx context.Context) (Info, error) {
	r, err := c.api.Info(ctx, &agentpb.InfoRequest{})
	if err != nil {
		return Info{}, fmt.Errorf("agent info: %w", err)
	}
	return Info{Version: r.Version, KernelRelease: r.KernelRelease, Uptime: time.Duration(r.UptimeNanos),
		Time: fromNanos(r.TimeUnixNanos), PID1: r.Pid1, CgroupMode: r.CgroupMode, Modules: r.ModulesLoaded,
		MemTotal: r.MemTotalBytes, MemAvailable: r.MemAvailableBytes, AgentRSS: r.AgentRssBytes}, nil
}

// SyncClock sets the guest's wall clock to t.
func (c *Client) SyncClock(ctx context.Context, t time.Time) error {
	if _, err := c.api.SyncClock(ctx, &agentpb.SyncClockRequest{UnixNanos: t.UnixNano()}); err != nil {
		return fmt.Errorf("sync the guest clock: %w", err)
	}
	return nil
}

// AddEntropy credits b to the guest's entropy pool and reseeds its CRNG,
// so a VM restored from a snapshot does not repeat the snapshot's random
// numbers.
func (c *Client) AddEntropy(ctx context.Context, b []byte) error {
	if _, err := c.api.AddEntropy(ctx, &agentpb.AddEntropyRequest{Data: b}); err != nil {
		return fmt.Errorf("add entropy to the guest: %w", err)
	}
	return nil
}

// SetHostname sets the guest's hostname and, when machineID is not empty,
// its /etc/machine-id.
func (c *Client) SetHostname(ctx context.Context, hostname, machineID string) error {
	if _, err := c.api.SetHostname(ctx, &agentpb.SetHostnameRequest{Hostname: hostname, MachineId: machineID}); err != nil {
		return fmt.Errorf("set the guest hostname: %w", err)
	}
	return nil
}

// CreateRequest describes a container to create in the guest.
type CreateRequest struct {
	ID string
	// Spec is the OCI runtime spec; Root.Path is ignored (the rootfs comes
	// from Rootfs). Spec.Process.Terminal gives the init a terminal;
	// Linux.Resources are enforced in the guest's cgroup v2.
	Spec   *specs.Spec
	Rootfs Rootfs
	Shares []Share
	Files  []File
	// OpenStdin gives the init a stdin pipe that attaches feed
	// (isolation.AnnotationOpenStdin); otherwise /dev/null.
	OpenStdin bool
}

// CreateContainer mounts the rootfs and shares in the guest and creates
// the container, whose init waits for Start; it returns the init's pid in
// the guest. The init's output is kept (up to 1 MiB) until a first Attach.
// ErrAlreadyExists when the id is taken; on error nothing is left in the
// guest.
func (c *Client) CreateContainer(ctx context.Context, req CreateRequest) (int, error) {
	spec, err := json.Marshal(req.Spec)
	if err != nil {
		return 0, fmt.Errorf("create container %s: encode the spec: %w", req.ID, err)
	}
	pr := &agentpb.CreateContainerRequest{Id: req.ID, SpecJson: spec, OpenStdin: req.OpenStdin,
		Rootfs: &agentpb.Rootfs{Source: req.Rootfs.Source, Fstype: req.Rootfs.Type, Options: req.Rootfs.Options}}
	for _, s := range req.Shares {
		pr.Shares = append(pr.Shares, &agentpb.Share{Type: s.Type, Source: s.Source, Destination: s.Destination, ReadOnly: s.ReadOnly})
	}
	for _, f := range req.Files {
		pr.Files = append(pr.Files, &agentpb.File{Path: f.Path, Content: f.Content, Mode: f.Mode})
	}
	r, err := c.api.CreateContainer(ctx, pr)
	if err != nil {
		return 0, fmt.Errorf("create container %s in the guest: %w", req.ID, err)
	}
	return int(r.Pid), nil
}

// Start runs a created container's init and returns its pid.
func (c *Client) Start(ctx context.Context, id string) (int, error) {
	r, err := c.api.Start(ctx, &agentpb.StartRequest{Id: id})
	if err != nil {
		return 0, fmt.Errorf("start container %s in the guest: %w", id, err)
	}
	return int(r.Pid), nil
}

// Exec starts process execID in running container id and returns its pid.
// Unset fields of p (env, cwd, user, capabilities, rlimits) come from the
// container's process, as docker exec does. The process always has a
// stdin pipe; its output is kept (up to 1 MiB) until a first Attach.
func (c *Client) Exec(ctx context.Context, id, execID string, p *specs.Process) (int, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return 0, fmt.Errorf("exec %s in %s: encode the process: %w", execID, id, err)
	}
	r, err := c.api.Exec(ctx, &agentpb.ExecRequest{Id: id, ExecId: execID, ProcessJson: b})
	if err != nil {
		return 0, fmt.Errorf("exec %s in container %s: %w", execID, id, err)
	}
	return int(r.Pid), nil
}

// Signal sends sig to process execID ("" = the init) of container id, or
// to every process of the container when all is set. ErrNotFound when the
// process has exited.
func (c *Client) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	if _, err := c.api.Signal(ctx, &agentpb.SignalRequest{Id: id, ExecId: execID, Signal: int32(sig), All: all}); err != nil {
		return fmt.Errorf("signal %d to %s/%q: %w", sig, id, execID, err)
	}
	return nil
}

// Wait blocks until process execID of container id has exited (at once if
// it already has) or ctx ends. For the init, all its output has reached
// the attaches when Wait returns. Exit statuses are kept until Delete.
func (c *Client) Wait(ctx context.Context, id, execID string) (isolation.ExitStatus, error) {
	st, err := c.api.Wait(ctx, &agentpb.WaitRequest{Id: id, ExecId: execID})
	if err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("wait for %s/%q: %w", id, execID, err)
	}
	r, err := st.Recv()
	if err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("wait for %s/%q: %w", id, execID, err)
	}
	return ExitFromPB(r.Exit), nil
}

// Attach connects streams to process execID of container id until its
// output ends (nil) or ctx is done. Output the process wrote while nobody
// was attached (up to 1 MiB) goes to the first attach. When
// streams.Stdin ends, the process's stdin is closed (^D on a terminal).
// Several attaches may be active; each sees output from when it attached.
func (c *Client) Attach(ctx context.Context, id, execID string, streams isolation.Streams) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.api.Attach(ctx)
	if err != nil {
		return fmt.Errorf("attach to %s/%q: %w", id, execID, err)
	}
	if err := st.Send(&agentpb.AttachRequest{Id: id, ExecId: execID}); err != nil {
		return fmt.Errorf("attach to %s/%q: %w", id, execID, err)
	}
	if streams.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := streams.Stdin.Read(buf)
				if n > 0 {
					if st.Send(&agentpb.AttachRequest{Stdin: append([]byte(nil), buf[:n]...)}) != nil {
						return
					}
				}
				if err != nil {
					if errors.Is(err, io.EOF) {
						_ = st.Send(&agentpb.AttachRequest{CloseStdin: true})
					}
					return
				}
			}
		}()
	}
	for {
		r, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("attach to %s/%q: %w", id, execID, errdefs.Unavailable("the agent ended the attach before the output ended"))
			}
			return fmt.Errorf("attach to %s/%q: %w", id, execID, err)
		}
		if len(r.Stdout) > 0 && streams.Stdout != nil {
			if _, err := streams.Stdout.Write(r.Stdout); err != nil {
				return fmt.Errorf("attach to %s/%q: write stdout: %w", id, execID, err)
			}
		}
		if len(r.Stderr) > 0 && streams.Stderr != nil {
			if _, err := streams.Stderr.Write(r.Stderr); err != nil {
				return fmt.Errorf("attach to %s/%q: write stderr: %w", id, execID, err)
			}
		}
		if r.End {
			return nil
		}
	}
}

// ResizePTY sets the terminal size of process execID. ErrInvalidArgument
// when it has no terminal, ErrInvalidState when it has exited.
func (c *Client) ResizePTY(ctx context.Context, id, execID string, size isolation.ConsoleSize) error {
	if _, err := c.api.ResizePTY(ctx, &agentpb.ResizePTYRequest{Id: id, ExecId: execID, Width: uint32(size.Width), Height: uint32(size.Height)}); err != nil {
		return fmt.Errorf("resize the terminal of %s/%q: %w", id, execID, err)
	}
	return nil
}

// Update replaces container id's resource limits (r is the OCI
// Linux.Resources; nil fields mean no limit) in its guest cgroup.
func (c *Client) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("update %s: encode the resources: %w", id, err)
	}
	if _, err := c.api.Update(ctx, &agentpb.UpdateRequest{Id: id, ResourcesJson: b}); err != nil {
		return fmt.Errorf("update %s in the guest: %w", id, err)
	}
	return nil
}

// Pause freezes every process of container id (its guest cgroup's
// cgroup.freeze). Pausing a paused container succeeds.
func (c *Client) Pause(ctx context.Context, id string) error {
	if _, err := c.api.Pause(ctx, &agentpb.ContainerRequest{Id: id}); err != nil {
		return fmt.Errorf("pause %s in the guest: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container.
func (c *Client) Resume(ctx context.Context, id string) error {
	if _, err := c.api.Resume(ctx, &agentpb.ContainerRequest{Id: id}); err != nil {
		return fmt.Errorf("resume %s in the guest: %w", id, err)
	}
	return nil
}

// Stats reports container id's use from its guest cgroup.
func (c *Client) Stats(ctx context.Context, id string) (resources.Usage, error) {
	r, err := c.api.Stats(ctx, &agentpb.ContainerRequest{Id: id})
	if err != nil {
		return resources.Usage{}, fmt.Errorf("stats of %s in the guest: %w", id, err)
	}
	return usageFromPB(r), nil
}

// State reports what the agent knows of container id (a host that
// reconnects uses it to learn what happened meanwhile). ErrNotFound when
// the guest has no such container.
func (c *Client) State(ctx context.Context, id string) (ContainerState, error) {
	r, err := c.api.State(ctx, &agentpb.ContainerRequest{Id: id})
	if err != nil {
		return ContainerState{}, fmt.Errorf("state of %s in the guest: %w", id, err)
	}
	s := ContainerState{Status: isolation.Status(r.Status), Pid: int(r.Pid), CreatedAt: fromNanos(r.CreatedAtUnixNanos)}
	if r.Exit != nil {
		e := ExitFromPB(r.Exit)
		s.Exit = &e
	}
	return s, nil
}

// Events streams exit and OOM events (isolation.EventExit, EventOOM) of
// every container from now on, until ctx is done or the connection
// breaks; then the channel closes.
func (c *Client) Events(ctx context.Context) (<-chan isolation.TaskEvent, error) {
	st, err := c.api.Events(ctx, &agentpb.EventsRequest{})
	if err != nil {
		return nil, fmt.Errorf("agent events: %w", err)
	}
	// The stream is open on the agent once its header arrives: events
	// after Events returned are not missed.
	if _, err := st.Header(); err != nil {
		return nil, fmt.Errorf("agent events: %w", err)
	}
	ch := make(chan isolation.TaskEvent, 16)
	go func() {
		defer close(ch)
		for {
			e, err := st.Recv()
			if err != nil {
				return
			}
			ev := isolation.TaskEvent{Kind: e.Kind, ID: e.Id, ExecID: e.ExecId, Time: fromNanos(e.TimeUnixNanos)}
			if e.Exit != nil {
				x := ExitFromPB(e.Exit)
				ev.Exit = &x
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// Delete removes container id: kills what is left of it (a created init,
// execs), unmounts its rootfs and shares, removes its cgroup, and returns
// the init's exit status. ErrInvalidState while its init runs; deleting a
// missing container succeeds.
func (c *Client) Delete(ctx context.Context, id string) (isolation.ExitStatus, error) {
	r, err := c.api.Delete(ctx, &agentpb.ContainerRequest{Id: id})
	if err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("delete %s in the guest: %w", id, err)
	}
	return ExitFromPB(r.Exit), nil
}

// Shutdown asks the agent to power the guest off cleanly (kill the
// containers, sync, unmount, poweroff); it returns once the agent
// accepted. The VM process then exits.
func (c *Client) Shutdown(ctx context.Context) error {
	if _, err := c.api.Shutdown(ctx, &agentpb.ShutdownRequest{}); err != nil {
		return fmt.Errorf("shut the guest down: %w", err)
	}
	return nil
}
