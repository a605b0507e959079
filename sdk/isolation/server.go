package isolation

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/isolationv1"
)

// maxChunk bounds the payload of one Attach frame, in either direction, so
// a large write never becomes one huge message and HTTP/2 flow control
// paces output against a slow reader.
const maxChunk = 32 << 10

// server serves a Runtime over gRPC. Every Berth gRPC server maps errors
// with the errdefs interceptors; server maps them itself as well (ToGRPC
// passes a status through), so typed errors survive on a server built
// without them.
type server struct {
	pb.UnimplementedIsolationServer
	impl Runtime
}

func (s *server) Create(ctx context.Context, r *pb.CreateRequest) (*pb.CreateResponse, error) {
	spec, err := specFromPB(r.Spec)
	if err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("create: %v", err))
	}
	t, err := s.impl.Create(ctx, spec)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	pt, err := taskToPB(t)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CreateResponse{Task: pt}, nil
}

func (s *server) Start(ctx context.Context, r *pb.StartRequest) (*pb.StartResponse, error) {
	pid, err := s.impl.Start(ctx, r.Id)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.StartResponse{Pid: int64(pid)}, nil
}

func (s *server) Exec(ctx context.Context, r *pb.ExecRequest) (*pb.ExecResponse, error) {
	proc, err := processFromJSON(r.ProcessJson)
	if err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("exec %s in task %s: %v", r.ExecId, r.Id, err))
	}
	pid, err := s.impl.Exec(ctx, r.Id, r.ExecId, proc)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ExecResponse{Pid: int64(pid)}, nil
}

func (s *server) Signal(ctx context.Context, r *pb.SignalRequest) (*pb.SignalResponse, error) {
	err := s.impl.Signal(ctx, r.Id, r.ExecId, syscall.Signal(r.Signal), r.All)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.SignalResponse{}, nil
}

func (s *server) Wait(ctx context.Context, r *pb.WaitRequest) (*pb.WaitResponse, error) {
	e, err := s.impl.Wait(ctx, r.Id, r.ExecId)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.WaitResponse{Exit: exitToPB(e)}, nil
}

// Attach bridges the stream to Streams: stdin frames feed a pipe the
// runtime reads, and the runtime's writes to Stdout/Stderr become frames.
// The RPC ends, with the runtime's error as its status, when the runtime's
// Attach returns.
func (s *server) Attach(stream pb.Isolation_AttachServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return errdefs.ToGRPC(errdefs.InvalidArgument("attach: the first message must name the process (open)"))
	}
	out := &frameSender{stream: stream}
	var streams Streams
	if open.Stdout {
		streams.Stdout = &frameWriter{s: out, stream: pb.Stream_STREAM_STDOUT}
	}
	if open.Stderr {
		streams.Stderr = &frameWriter{s: out, stream: pb.Stream_STREAM_STDERR}
	}
	var stdin *io.PipeReader
	if open.Stdin {
		var w *io.PipeWriter
		stdin, w = io.Pipe()
		streams.Stdin = stdin
		go feedStdin(stream, w)
	}

	err = s.impl.Attach(stream.Context(), open.Id, open.ExecId, streams)

	// Writes after this point would race with the end of the RPC, and a
	// pending stdin write would block feedStdin forever.
	out.close()
	if stdin != nil {
		_ = stdin.CloseWithError(errAttachEnded)
	}
	return errdefs.ToGRPC(err)
}

var errAttachEnded = errors.New("attach ended")

// feedStdin copies stdin frames into w until the client closes stdin or the
// RPC ends. Frames the runtime no longer reads are received and dropped,
// so the client is never stuck on flow control.
func feedStdin(stream pb.Isolation_AttachServer, w *io.PipeWriter) {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) { // the client half-closed: stdin ends
			_ = w.Close()
			return
		}
		if err != nil {
			_ = w.CloseWithError(err)
			return
		}
		switch m := m.Msg.(type) {
		case *pb.AttachRequest_Stdin:
			if len(m.Stdin) > 0 {
				_, _ = w.Write(m.Stdin) // fails only once the reader is gone
			}
		case *pb.AttachRequest_StdinClose:
			_ = w.Close()
		}
	}
}

// frameSender serialises sends: a runtime may write stdout and stderr from
// different goroutines, and a gRPC stream takes one sender at a time.
type frameSender struct {
	mu     sync.Mutex
	stream pb.Isolation_AttachServer
	done   bool
}

func (f *frameSender) send(m *pb.AttachResponse) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return io.ErrClosedPipe
	}
	return f.stream.Send(m)
}

func (f *frameSender) close() {
	f.mu.Lock()
	f.done = true
	f.mu.Unlock()
}

// frameWriter is one output stream of an attach, as an io.Writer.
type frameWriter struct {
	s      *frameSender
	stream pb.Stream
}

func (w *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxChunk)]
		// Send encodes the message before it returns, so p is not retained.
		if err := w.s.send(&pb.AttachResponse{Stream: w.stream, Data: chunk}); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

func (s *server) ResizePTY(ctx context.Context, r *pb.ResizePTYRequest) (*pb.ResizePTYResponse, error) {
	size := ConsoleSize{Width: uint16(r.Width), Height: uint16(r.Height)}
	if err := s.impl.ResizePTY(ctx, r.Id, r.ExecId, size); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ResizePTYResponse{}, nil
}

func (s *server) Pause(ctx context.Context, r *pb.PauseRequest) (*pb.PauseResponse, error) {
	if err := s.impl.Pause(ctx, r.Id); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.PauseResponse{}, nil
}

func (s *server) ConnectNetwork(ctx context.Context, r *pb.ConnectNetworkRequest) (*pb.ConnectNetworkResponse, error) {
	nc, ok := s.impl.(NetworkConnector)
	if !ok {
		return nil, errdefs.ToGRPC(errdefs.NotImplemented("this isolation plugin cannot connect a running task to a network (no capability %q)", CapNetworkConnect))
	}
	a := networkFromPB(r.Network)
	if a == nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("connect network: no attachment"))
	}
	if err := nc.ConnectNetwork(ctx, r.Id, *a); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ConnectNetworkResponse{}, nil
}

func (s *server) DisconnectNetwork(ctx context.Context, r *pb.DisconnectNetworkRequest) (*pb.DisconnectNetworkResponse, error) {
	nc, ok := s.impl.(NetworkConnector)
	if !ok {
		return nil, errdefs.ToGRPC(errdefs.NotImplemented("this isolation plugin cannot disconnect a running task from a network (no capability %q)", CapNetworkConnect))
	}
	if err := nc.DisconnectNetwork(ctx, r.Id, r.Bridge); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.DisconnectNetworkResponse{}, nil
}

func (s *server) Resume(ctx context.Context, r *pb.ResumeRequest) (*pb.ResumeResponse, error) {
	if err := s.impl.Resume(ctx, r.Id); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ResumeResponse{}, nil
}

func (s *server) Checkpoint(ctx context.Context, r *pb.CheckpointRequest) (*pb.CheckpointResponse, error) {
	opts := CheckpointOptions{Dir: r.Dir, LeaveRunning: r.LeaveRunning}
	if err := s.impl.Checkpoint(ctx, r.Id, opts); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CheckpointResponse{}, nil
}

func (s *server) Restore(ctx context.Context, r *pb.RestoreRequest) (*pb.RestoreResponse, error) {
	spec, err := specFromPB(r.Spec)
	if err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("restore: %v", err))
	}
	t, err := s.impl.Restore(ctx, spec, r.Dir)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	pt, err := taskToPB(t)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RestoreResponse{Task: pt}, nil
}

func (s *server) Stats(ctx context.Context, r *pb.StatsRequest) (*pb.StatsResponse, error) {
	st, err := s.impl.Stats(ctx, r.Id)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.StatsResponse{Stats: statsToPB(st)}, nil
}

func (s *server) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	e, err := s.impl.Delete(ctx, r.Id)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.DeleteResponse{Exit: exitToPB(e)}, nil
}

func (s *server) List(ctx context.Context, _ *pb.ListRequest) (*pb.ListResponse, error) {
	ts, err := s.impl.List(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	pts, err := tasksToPB(ts)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ListResponse{Tasks: pts}, nil
}

func (s *server) Recover(ctx context.Context, _ *pb.RecoverRequest) (*pb.RecoverResponse, error) {
	ts, err := s.impl.Recover(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	pts, err := tasksToPB(ts)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RecoverResponse{Tasks: pts}, nil
}

// Events sends its headers once subscribed, so the client can tell a
// failed subscription from a quiet one before the first event.
func (s *server) Events(_ *pb.EventsRequest, stream pb.Isolation_EventsServer) error {
	events, err := s.impl.Events(stream.Context())
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for e := range events {
		if err := stream.Send(eventToPB(e)); err != nil {
			return err
		}
	}
	return nil
}
