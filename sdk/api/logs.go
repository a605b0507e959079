package api

import (
	"context"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/apiv1"
)

// LogEntry is one entry of a container's output log.
type LogEntry struct {
	// Stream is "stdout" or "stderr".
	Stream string
	Data   []byte
	Time   time.Time
}

// LogsOptions select what Logs sends.
type LogsOptions struct {
	// Follow keeps sending new entries until the container stops.
	Follow bool
	// Tail is how many of the last entries to send first; negative is all.
	Tail int
	// Boot sends the container's boot log (the guest console of a mode that
	// boots a kernel) instead of its output: one entry per line, Stream
	// StreamConsole, no time. A container without one is an error.
	Boot bool
}

// StreamConsole is the Stream of a boot log's entries.
const StreamConsole = "console"

// Logs is the public service that reads container logs.
type Logs interface {
	// Logs calls send with each entry, oldest first, until the log ends
	// (with Follow: until the container stopped and its last output was
	// sent) or ctx is done. An error of send ends it.
	Logs(ctx context.Context, ref string, opts LogsOptions, send func(LogEntry) error) error
}

// RegisterLogsServer serves impl as the Logs service on s.
func RegisterLogsServer(s *grpc.Server, impl Logs) {
	pb.RegisterLogsServer(s, &logsServer{impl: impl})
}

type logsServer struct {
	pb.UnimplementedLogsServer
	impl Logs
}

func (s *logsServer) Logs(r *pb.LogsRequest, stream pb.Logs_LogsServer) error {
	opts := LogsOptions{Follow: r.Follow, Tail: -1, Boot: r.Boot}
	if r.Tail != nil && *r.Tail >= 0 {
		opts.Tail = int(*r.Tail)
	}
	err := s.impl.Logs(stream.Context(), r.Ref, opts, func(e LogEntry) error {
		return stream.Send(&pb.LogEntry{Stream: e.Stream, Data: e.Data, TimeUnixNano: unixNano(e.Time)})
	})
	return errdefs.ToGRPC(err)
}

// LogsClient is a Logs service reached over gRPC.
type LogsClient struct {
	c pb.LogsClient
}

var _ Logs = (*LogsClient)(nil)

// NewLogsClient returns a Logs service over conn.
func NewLogsClient(conn grpc.ClientConnInterface) *LogsClient {
	return &LogsClient{c: pb.NewLogsClient(conn)}
}

// Logs implements Logs.
func (c *LogsClient) Logs(ctx context.Context, ref string, opts LogsOptions, send func(LogEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &pb.LogsRequest{Ref: ref, Follow: opts.Follow, Boot: opts.Boot}
	if opts.Tail >= 0 {
		tail := int64(opts.Tail)
		req.Tail = &tail
	}
	stream, err := c.c.Logs(ctx, req)
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		e, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		if err := send(LogEntry{Stream: e.Stream, Data: e.Data, Time: fromUnixNano(e.TimeUnixNano)}); err != nil {
			return err
		}
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
