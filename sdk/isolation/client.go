package isolation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/isolationv1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// Client is a Runtime reached over gRPC.
type Client struct {
	plugin.ClientBase
	c pb.IsolationClient
}

var _ Runtime = (*Client)(nil)
var _ plugin.Client = (*Client)(nil)

// NewClient returns a Runtime over conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{ClientBase: plugin.NewClientBase(conn), c: pb.NewIsolationClient(conn)}
}

// Create implements Runtime.
func (c *Client) Create(ctx context.Context, spec Spec) (TaskInfo, error) {
	ps, err := specToPB(spec)
	if err != nil {
		return TaskInfo{}, fmt.Errorf("create: %w", err)
	}
	r, err := c.c.Create(ctx, &pb.CreateRequest{Spec: ps})
	if err != nil {
		return TaskInfo{}, errdefs.FromGRPC(err)
	}
	return replyTask(r.Task)
}

// Start implements Runtime.
func (c *Client) Start(ctx context.Context, id string) (int, error) {
	r, err := c.c.Start(ctx, &pb.StartRequest{Id: id})
	if err != nil {
		return 0, errdefs.FromGRPC(err)
	}
	return int(r.Pid), nil
}

// Exec implements Runtime.
func (c *Client) Exec(ctx context.Context, id, execID string, process *specs.Process) (int, error) {
	b, err := processToJSON(process)
	if err != nil {
		return 0, fmt.Errorf("exec %s in task %s: %w", execID, id, err)
	}
	r, err := c.c.Exec(ctx, &pb.ExecRequest{Id: id, ExecId: execID, ProcessJson: b})
	if err != nil {
		return 0, errdefs.FromGRPC(err)
	}
	return int(r.Pid), nil
}

// Signal implements Runtime.
func (c *Client) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	_, err := c.c.Signal(ctx, &pb.SignalRequest{Id: id, ExecId: execID, Signal: int64(sig), All: all})
	return errdefs.FromGRPC(err)
}

// Wait implements Runtime.
func (c *Client) Wait(ctx context.Context, id, execID string) (ExitStatus, error) {
	r, err := c.c.Wait(ctx, &pb.WaitRequest{Id: id, ExecId: execID})
	if err != nil {
		return ExitStatus{}, errdefs.FromGRPC(err)
	}
	return exitFromPB(r.Exit), nil
}

// Attach implements Runtime. It returns when the plugin ends the attach
// (nil once the process's output ended, else the runtime's error), when
// ctx is done, or when writing to Stdout or Stderr fails. Stdin is read by
// a goroutine that closes the process's stdin at EOF; an io.Reader cannot
// be interrupted, so that goroutine may outlive Attach until Stdin returns
// (close it to release it). Output is written from the calling goroutine's
// side only, never after Attach returned.
func (c *Client) Attach(ctx context.Context, id, execID string, streams Streams) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Attach(ctx)
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	open := &pb.AttachOpen{
		Id: id, ExecId: execID,
		Stdin: streams.Stdin != nil, Stdout: streams.Stdout != nil, Stderr: streams.Stderr != nil,
	}
	// A failed send means the stream ended; Recv below reports why.
	if err := stream.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: open}}); err == nil {
		if streams.Stdin != nil {
			go sendStdin(stream, streams.Stdin)
		} else {
			_ = stream.CloseSend()
		}
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		var w io.Writer
		switch m.Stream {
		case pb.Stream_STREAM_STDOUT:
			w = streams.Stdout
		case pb.Stream_STREAM_STDERR:
			w = streams.Stderr
		}
		if w == nil || len(m.Data) == 0 {
			continue
		}
		if _, err := w.Write(m.Data); err != nil {
			return fmt.Errorf("attach %s/%s: write %s: %w", id, execID, streamName(m.Stream), err)
		}
	}
}

// sendStdin copies in to the stream in frames of at most maxChunk bytes,
// then, at io.EOF, closes the process's stdin. Any other read error (in a
// chain of attaches: the caller went away, as on a detach) ends the copy
// and leaves the process's stdin open. It is the stream's only sender.
func sendStdin(stream pb.Isolation_AttachClient, in io.Reader) {
	buf := make([]byte, maxChunk)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			// Send encodes the message before it returns, so buf is reusable.
			if sendErr := stream.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Stdin{Stdin: buf[:n]}}); sendErr != nil {
				return // the attach ended
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			_ = stream.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_StdinClose{StdinClose: &pb.StdinClose{}}})
			_ = stream.CloseSend()
			return
		}
	}
}

func streamName(s pb.Stream) string {
	switch s {
	case pb.Stream_STREAM_STDOUT:
		return "stdout"
	case pb.Stream_STREAM_STDERR:
		return "stderr"
	}
	return s.String()
}

// ResizePTY implements Runtime.
func (c *Client) ResizePTY(ctx context.Context, id, execID string, size ConsoleSize) error {
	_, err := c.c.ResizePTY(ctx, &pb.ResizePTYRequest{Id: id, ExecId: execID, Width: uint32(size.Width), Height: uint32(size.Height)})
	return errdefs.FromGRPC(err)
}

// Pause implements Runtime.
func (c *Client) Pause(ctx context.Context, id string) error {
	_, err := c.c.Pause(ctx, &pb.PauseRequest{Id: id})
	return errdefs.FromGRPC(err)
}

// ConnectNetwork implements NetworkConnector.
func (c *Client) ConnectNetwork(ctx context.Context, id string, a NetworkAttachment) error {
	_, err := c.c.ConnectNetwork(ctx, &pb.ConnectNetworkRequest{Id: id, Network: networkToPB(&a)})
	return errdefs.FromGRPC(err)
}

// DisconnectNetwork implements NetworkConnector.
func (c *Client) DisconnectNetwork(ctx context.Context, id, bridge string) error {
	_, err := c.c.DisconnectNetwork(ctx, &pb.DisconnectNetworkRequest{Id: id, Bridge: bridge})
	return errdefs.FromGRPC(err)
}

// Resume implements Runtime.
func (c *Client) Resume(ctx context.Context, id string) error {
	_, err := c.c.Resume(ctx, &pb.ResumeRequest{Id: id})
	return errdefs.FromGRPC(err)
}

// Checkpoint implements Runtime.
func (c *Client) Checkpoint(ctx context.Context, id string, opts CheckpointOptions) error {
	_, err := c.c.Checkpoint(ctx, &pb.CheckpointRequest{Id: id, Dir: opts.Dir, LeaveRunning: opts.LeaveRunning})
	return errdefs.FromGRPC(err)
}

// Restore implements Runtime.
func (c *Client) Restore(ctx context.Context, spec Spec, dir string) (TaskInfo, error) {
	ps, err := specToPB(spec)
	if err != nil {
		return TaskInfo{}, fmt.Errorf("restore: %w", err)
	}
	r, err := c.c.Restore(ctx, &pb.RestoreRequest{Spec: ps, Dir: dir})
	if err != nil {
		return TaskInfo{}, errdefs.FromGRPC(err)
	}
	return replyTask(r.Task)
}

// Stats implements Runtime.
func (c *Client) Stats(ctx context.Context, id string) (Stats, error) {
	r, err := c.c.Stats(ctx, &pb.StatsRequest{Id: id})
	if err != nil {
		return Stats{}, errdefs.FromGRPC(err)
	}
	return statsFromPB(r.Stats), nil
}

// Delete implements Runtime.
func (c *Client) Delete(ctx context.Context, id string) (ExitStatus, error) {
	r, err := c.c.Delete(ctx, &pb.DeleteRequest{Id: id})
	if err != nil {
		return ExitStatus{}, errdefs.FromGRPC(err)
	}
	return exitFromPB(r.Exit), nil
}

// List implements Runtime.
func (c *Client) List(ctx context.Context) ([]TaskInfo, error) {
	r, err := c.c.List(ctx, &pb.ListRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return replyTasks(r.Tasks)
}

// Recover implements Runtime.
func (c *Client) Recover(ctx context.Context) ([]TaskInfo, error) {
	r, err := c.c.Recover(ctx, &pb.RecoverRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return replyTasks(r.Tasks)
}

// Events implements Runtime. A failure to subscribe is returned here; after
// that the channel closes when ctx is done or the stream ends (the plugin
// went away), and the caller resubscribes after a restart.
func (c *Client) Events(ctx context.Context) (<-chan TaskEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.c.Events(ctx, &pb.EventsRequest{})
	if err != nil {
		cancel()
		return nil, errdefs.FromGRPC(err)
	}
	// The server sends headers once subscribed; no headers means the RPC
	// ended first, and Recv reports why.
	if md, _ := stream.Header(); md == nil {
		_, err := stream.Recv()
		cancel()
		if errors.Is(err, io.EOF) {
			err = errdefs.Unavailable("events: the plugin ended the stream at once")
		}
		return nil, errdefs.FromGRPC(err)
	}
	out := make(chan TaskEvent)
	go func() {
		defer cancel()
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

// replyTask decodes a task the plugin sent.
func replyTask(t *pb.TaskInfo) (TaskInfo, error) {
	ti, err := taskFromPB(t)
	if err != nil {
		return TaskInfo{}, fmt.Errorf("plugin sent an unreadable task: %w", err)
	}
	return ti, nil
}

func replyTasks(ts []*pb.TaskInfo) ([]TaskInfo, error) {
	out, err := tasksFromPB(ts)
	if err != nil {
		return nil, fmt.Errorf("plugin sent an unreadable task: %w", err)
	}
	return out, nil
}
