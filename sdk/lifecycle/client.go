package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
)

// AttachChunkSize is the largest chunk of stdin, stdout or stderr Attach
// sends in one message.
const AttachChunkSize = 64 << 10

// Client is a Manager reached over gRPC.
type Client struct {
	plugin.ClientBase
	c pb.LifecycleClient
}

var _ Manager = (*Client)(nil)
var _ plugin.Client = (*Client)(nil)

// NewClient returns a Manager over conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{ClientBase: plugin.NewClientBase(conn), c: pb.NewLifecycleClient(conn)}
}

// Create implements Manager.
func (c *Client) Create(ctx context.Context, name string, cfg Config) (Container, error) {
	r, err := c.c.Create(ctx, &pb.CreateRequest{Name: name, Config: configToPB(cfg)})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Start implements Manager.
func (c *Client) Start(ctx context.Context, ref string) (Container, error) {
	r, err := c.c.Start(ctx, &pb.StartRequest{Ref: ref})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Stop implements Manager.
func (c *Client) Stop(ctx context.Context, ref string, timeout time.Duration) (Container, error) {
	r, err := c.c.Stop(ctx, &pb.StopRequest{Ref: ref, TimeoutNanos: int64(timeout)})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Kill implements Manager.
func (c *Client) Kill(ctx context.Context, ref string, sig syscall.Signal) error {
	_, err := c.c.Kill(ctx, &pb.KillRequest{Ref: ref, Signal: int32(sig)})
	return errdefs.FromGRPC(err)
}

// Pause implements Manager.
func (c *Client) Pause(ctx context.Context, ref string) (Container, error) {
	r, err := c.c.Pause(ctx, &pb.PauseRequest{Ref: ref})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Resume implements Manager.
func (c *Client) Resume(ctx context.Context, ref string) (Container, error) {
	r, err := c.c.Resume(ctx, &pb.ResumeRequest{Ref: ref})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Checkpoint implements Manager.
func (c *Client) Checkpoint(ctx context.Context, ref string, leaveRunning bool) (Container, error) {
	r, err := c.c.Checkpoint(ctx, &pb.CheckpointRequest{Ref: ref, LeaveRunning: leaveRunning})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Restore implements Manager.
func (c *Client) Restore(ctx context.Context, ref string) (Container, error) {
	r, err := c.c.Restore(ctx, &pb.RestoreRequest{Ref: ref})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Delete implements Manager.
func (c *Client) Delete(ctx context.Context, ref string, force bool) error {
	_, err := c.c.Delete(ctx, &pb.DeleteRequest{Ref: ref, Force: force})
	return errdefs.FromGRPC(err)
}

// Get implements Manager.
func (c *Client) Get(ctx context.Context, ref string) (Container, error) {
	r, err := c.c.Get(ctx, &pb.GetRequest{Ref: ref})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// List implements Manager.
func (c *Client) List(ctx context.Context, filter Filter) ([]Container, error) {
	r, err := c.c.List(ctx, &pb.ListRequest{Filter: filterToPB(filter)})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]Container, 0, len(r.Containers))
	for _, ct := range r.Containers {
		out = append(out, containerFromPB(ct))
	}
	return out, nil
}

// Exec implements Manager.
func (c *Client) Exec(ctx context.Context, ref string, cfg ExecConfig) (string, error) {
	r, err := c.c.Exec(ctx, &pb.ExecRequest{Ref: ref, Config: execConfigToPB(cfg)})
	if err != nil {
		return "", errdefs.FromGRPC(err)
	}
	return r.ExecId, nil
}

// Resize implements Manager.
func (c *Client) Resize(ctx context.Context, ref, execID string, size isolation.ConsoleSize) error {
	_, err := c.c.Resize(ctx, &pb.ResizeRequest{Ref: ref, ExecId: execID, Width: uint32(size.Width), Height: uint32(size.Height)})
	return errdefs.FromGRPC(err)
}

// Wait implements Manager.
func (c *Client) Wait(ctx context.Context, ref string) (isolation.ExitStatus, error) {
	r, err := c.c.Wait(ctx, &pb.WaitRequest{Ref: ref})
	if err != nil {
		return isolation.ExitStatus{}, errdefs.FromGRPC(err)
	}
	return exitFromPB(r.Status), nil
}

// WaitExec implements Manager.
func (c *Client) WaitExec(ctx context.Context, ref, execID string) (isolation.ExitStatus, error) {
	r, err := c.c.WaitExec(ctx, &pb.WaitExecRequest{Ref: ref, ExecId: execID})
	if err != nil {
		return isolation.ExitStatus{}, errdefs.FromGRPC(err)
	}
	return exitFromPB(r.Status), nil
}

// Rename implements Manager.
func (c *Client) Rename(ctx context.Context, ref, newName string) error {
	_, err := c.c.Rename(ctx, &pb.RenameRequest{Ref: ref, NewName: newName})
	return errdefs.FromGRPC(err)
}

// Update implements Manager.
func (c *Client) Update(ctx context.Context, ref string, limits resources.Limits) (Container, error) {
	r, err := c.c.Update(ctx, &pb.UpdateRequest{Ref: ref, Limits: limitsToPB(limits)})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Stats implements Manager.
func (c *Client) Stats(ctx context.Context, ref string) (isolation.Stats, error) {
	r, err := c.c.Stats(ctx, &pb.StatsRequest{Ref: ref})
	if err != nil {
		return isolation.Stats{}, errdefs.FromGRPC(err)
	}
	return statsFromPB(r.Stats), nil
}

// Events implements Manager. It returns once the plugin has subscribed, with
// the plugin's error if it could not. The channel closes when ctx is done or
// the stream ends (the plugin went away); the caller resubscribes after a
// restart.
func (c *Client) Events(ctx context.Context) (<-chan Event, error) {
	stream, err := c.c.Events(ctx, &pb.EventsRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	md, err := stream.Header()
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	if md == nil { // the stream ended before the subscription stood
		if _, err := stream.Recv(); err != io.EOF {
			return nil, errdefs.FromGRPC(err)
		}
	}
	out := make(chan Event)
	go func() {
		defer close(out)
		for {
			e, err := stream.Recv()
			if err != nil { // io.EOF, ctx done, or the plugin went away
				return
			}
			select {
			case out <- eventFromPB(e):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Attach implements Manager. Only the non-nil streams are attached. Output
// is written to streams.Stdout and streams.Stderr from the calling
// goroutine; Attach returns when the plugin's Attach does (nil when the
// output ended) or when ctx is done. A goroutine copying streams.Stdin may
// outlive Attach until its pending Read returns; it then stops.
func (c *Client) Attach(ctx context.Context, ref, execID string, streams isolation.Streams) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Attach(sctx)
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	start := &pb.AttachStart{
		Ref: ref, ExecId: execID,
		Stdin: streams.Stdin != nil, Stdout: streams.Stdout != nil, Stderr: streams.Stderr != nil,
	}
	// A failed Send (io.EOF) means the RPC already ended; Recv reports why.
	if err := stream.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Start{Start: start}}); err == nil {
		if streams.Stdin != nil {
			go sendStdin(stream, streams.Stdin)
		} else {
			_ = stream.CloseSend()
		}
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		switch msg := m.Msg.(type) {
		case *pb.AttachResponse_Stdout:
			if streams.Stdout != nil {
				if _, err := streams.Stdout.Write(msg.Stdout); err != nil {
					return fmt.Errorf("attach %s: write stdout: %w", ref, err)
				}
			}
		case *pb.AttachResponse_Stderr:
			if streams.Stderr != nil {
				if _, err := streams.Stderr.Write(msg.Stderr); err != nil {
					return fmt.Errorf("attach %s: write stderr: %w", ref, err)
				}
			}
		}
	}
}

// sendStdin sends stdin in chunks until it ends (io.EOF), then stdin_close
// and the end of the send side. It stops when a Send fails (the RPC ended).
// Any other read error leaves the process's stdin open: in a chain of
// attaches it means the caller went away (a detach), and a shell reading a
// terminal must not see ^D for that.
func sendStdin(stream pb.Lifecycle_AttachClient, stdin io.Reader) {
	for {
		buf := make([]byte, AttachChunkSize)
		n, rerr := stdin.Read(buf)
		if n > 0 {
			if err := stream.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Stdin{Stdin: buf[:n]}}); err != nil {
				return
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				return
			}
			if err := stream.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_StdinClose{StdinClose: true}}); err != nil {
				return
			}
			_ = stream.CloseSend()
			return
		}
	}
}
