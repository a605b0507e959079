package lifecycle

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
	"github.com/berth-dev/berth/sdk/isolation"
)

// server serves a Manager over gRPC. Errors are mapped to status codes here
// as well as by the errdefs interceptors, so the adapter keeps error kinds
// on any grpc.Server.
type server struct {
	pb.UnimplementedLifecycleServer
	impl Manager
}

func (s *server) Create(ctx context.Context, r *pb.CreateRequest) (*pb.CreateResponse, error) {
	c, err := s.impl.Create(ctx, r.Name, configFromPB(r.Config))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CreateResponse{Container: containerToPB(c)}, nil
}

func (s *server) Start(ctx context.Context, r *pb.StartRequest) (*pb.StartResponse, error) {
	c, err := s.impl.Start(ctx, r.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.StartResponse{Container: containerToPB(c)}, nil
}

func (s *server) Stop(ctx context.Context, r *pb.StopRequest) (*pb.StopResponse, error) {
	c, err := s.impl.Stop(ctx, r.Ref, time.Duration(r.TimeoutNanos))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.StopResponse{Container: containerToPB(c)}, nil
}

func (s *server) Kill(ctx context.Context, r *pb.KillRequest) (*pb.KillResponse, error) {
	if err := s.impl.Kill(ctx, r.Ref, syscall.Signal(r.Signal)); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.KillResponse{}, nil
}

func (s *server) Pause(ctx context.Context, r *pb.PauseRequest) (*pb.PauseResponse, error) {
	c, err := s.impl.Pause(ctx, r.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.PauseResponse{Container: containerToPB(c)}, nil
}

func (s *server) Resume(ctx context.Context, r *pb.ResumeRequest) (*pb.ResumeResponse, error) {
	c, err := s.impl.Resume(ctx, r.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ResumeResponse{Container: containerToPB(c)}, nil
}

func (s *server) Checkpoint(ctx context.Context, r *pb.CheckpointRequest) (*pb.CheckpointResponse, error) {
	c, err := s.impl.Checkpoint(ctx, r.Ref, r.LeaveRunning)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CheckpointResponse{Container: containerToPB(c)}, nil
}

func (s *server) Restore(ctx context.Context, r *pb.RestoreRequest) (*pb.RestoreResponse, error) {
	c, err := s.impl.Restore(ctx, r.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RestoreResponse{Container: containerToPB(c)}, nil
}

func (s *server) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	if err := s.impl.Delete(ctx, r.Ref, r.Force); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.DeleteResponse{}, nil
}

func (s *server) Get(ctx context.Context, r *pb.GetRequest) (*pb.GetResponse, error) {
	c, err := s.impl.Get(ctx, r.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.GetResponse{Container: containerToPB(c)}, nil
}

func (s *server) List(ctx context.Context, r *pb.ListRequest) (*pb.ListResponse, error) {
	cs, err := s.impl.List(ctx, filterFromPB(r.Filter))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	out := &pb.ListResponse{}
	for _, c := range cs {
		out.Containers = append(out.Containers, containerToPB(c))
	}
	return out, nil
}

func (s *server) Exec(ctx context.Context, r *pb.ExecRequest) (*pb.ExecResponse, error) {
	id, err := s.impl.Exec(ctx, r.Ref, execConfigFromPB(r.Config))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ExecResponse{ExecId: id}, nil
}

func (s *server) Resize(ctx context.Context, r *pb.ResizeRequest) (*pb.ResizeResponse, error) {
	size := isolation.ConsoleSize{Width: uint16(r.Width), Height: uint16(r.Height)}
	if err := s.impl.Resize(ctx, r.Ref, r.ExecId, size); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ResizeResponse{}, nil
}

func (s *server) Wait(ctx context.Context, r *pb.WaitRequest) (*pb.WaitResponse, error) {
	st, err := s.impl.Wait(ctx, r.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.WaitResponse{Status: exitToPB(st)}, nil
}

func (s *server) WaitExec(ctx context.Context, r *pb.WaitExecRequest) (*pb.WaitExecResponse, error) {
	st, err := s.impl.WaitExec(ctx, r.Ref, r.ExecId)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.WaitExecResponse{Status: exitToPB(st)}, nil
}

func (s *server) Rename(ctx context.Context, r *pb.RenameRequest) (*pb.RenameResponse, error) {
	if err := s.impl.Rename(ctx, r.Ref, r.NewName); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RenameResponse{}, nil
}

func (s *server) Update(ctx context.Context, r *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	c, err := s.impl.Update(ctx, r.Ref, limitsFromPB(r.Limits))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.UpdateResponse{Container: containerToPB(c)}, nil
}

func (s *server) Stats(ctx context.Context, r *pb.StatsRequest) (*pb.StatsResponse, error) {
	st, err := s.impl.Stats(ctx, r.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.StatsResponse{Stats: statsToPB(st)}, nil
}

func (s *server) Events(_ *pb.EventsRequest, stream pb.Lifecycle_EventsServer) error {
	events, err := s.impl.Events(stream.Context())
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	// Headers tell the client the subscription stands, so its Events can
	// return the implementation's error rather than a closed channel.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for e := range events {
		if err := stream.Send(eventToPB(e)); err != nil {
			return err
		}
	}
	return nil
}

// errAttachReturned is what stdin still arriving finds once the
// implementation's Attach has returned.
var errAttachReturned = errors.New("attach ended")

// Attach connects the streams the client asked for to the implementation:
// stdin through a pipe fed by the client's messages, stdout and stderr as
// writers that send chunks. The RPC ends when the implementation returns.
func (s *server) Attach(stream pb.Lifecycle_AttachServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return errdefs.ToGRPC(errdefs.InvalidArgument("attach: the first message must name the process and streams"))
	}
	var streams isolation.Streams
	send := &attachSender{stream: stream}
	if start.Stdout {
		streams.Stdout = writerFunc(func(p []byte) (int, error) {
			return send.send(p, func(b []byte) *pb.AttachResponse {
				return &pb.AttachResponse{Msg: &pb.AttachResponse_Stdout{Stdout: b}}
			})
		})
	}
	if start.Stderr {
		streams.Stderr = writerFunc(func(p []byte) (int, error) {
			return send.send(p, func(b []byte) *pb.AttachResponse {
				return &pb.AttachResponse{Msg: &pb.AttachResponse_Stderr{Stderr: b}}
			})
		})
	}
	if start.Stdin {
		pr, pw := io.Pipe()
		defer pr.CloseWithError(errAttachReturned)
		go copyStdin(stream, pw)
		streams.Stdin = pr
	}
	err = s.impl.Attach(stream.Context(), start.Ref, start.ExecId, streams)
	send.close()
	return errdefs.ToGRPC(err)
}

// copyStdin feeds the client's stdin messages into pw until stdin_close,
// the end of the client's send side, or the implementation no longer
// reading.
func copyStdin(stream pb.Lifecycle_AttachServer, pw *io.PipeWriter) {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			_ = pw.Close()
			return
		}
		if err != nil {
			_ = pw.CloseWithError(errdefs.FromGRPC(err))
			return
		}
		switch msg := m.Msg.(type) {
		case *pb.AttachRequest_Stdin:
			if len(msg.Stdin) == 0 {
				continue
			}
			if _, err := pw.Write(msg.Stdin); err != nil {
				return // the implementation returned
			}
		case *pb.AttachRequest_StdinClose:
			_ = pw.Close()
			return
		}
	}
}

// attachSender serialises sends on the attach stream: the implementation
// may write stdout and stderr from different goroutines. Once closed (the
// implementation's Attach returned) writes fail instead of touching the
// finished stream.
type attachSender struct {
	mu     sync.Mutex
	stream pb.Lifecycle_AttachServer
	closed bool
}

func (a *attachSender) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
}

// send sends p in chunks of at most AttachChunkSize, each wrapped by wrap.
// The chunks are copies: the caller may reuse p once send returns.
func (a *attachSender) send(p []byte, wrap func([]byte) *pb.AttachResponse) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return 0, errAttachReturned
	}
	n := 0
	for len(p) > 0 {
		c := min(len(p), AttachChunkSize)
		if err := a.stream.Send(wrap(append([]byte(nil), p[:c]...))); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
