package snapshot

import (
	"context"
	"errors"
	"io"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/snapshotv1"
)

// server serves a Snapshotter over gRPC. Errors are mapped to status codes
// here as well as by the errdefs interceptors, so the adapter keeps error
// kinds on any grpc.Server.
type server struct {
	pb.UnimplementedSnapshotsServer
	impl Snapshotter
}

func (s *server) Stat(ctx context.Context, r *pb.StatRequest) (*pb.StatResponse, error) {
	info, err := s.impl.Stat(ctx, r.Key)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.StatResponse{Info: infoToPB(info)}, nil
}

func (s *server) Update(ctx context.Context, r *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	info, err := s.impl.Update(ctx, infoFromPB(r.Info), r.Fieldpaths...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.UpdateResponse{Info: infoToPB(info)}, nil
}

func (s *server) Usage(ctx context.Context, r *pb.UsageRequest) (*pb.UsageResponse, error) {
	u, err := s.impl.Usage(ctx, r.Key)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.UsageResponse{Usage: &pb.Usage{Size: u.Size, Inodes: u.Inodes}}, nil
}

func (s *server) Mounts(ctx context.Context, r *pb.MountsRequest) (*pb.MountsResponse, error) {
	ms, err := s.impl.Mounts(ctx, r.Key)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.MountsResponse{Mounts: mountsToPB(ms)}, nil
}

func (s *server) Prepare(ctx context.Context, r *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	ms, err := s.impl.Prepare(ctx, r.Key, r.Parent, labelOpts(r.Labels)...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.PrepareResponse{Mounts: mountsToPB(ms)}, nil
}

func (s *server) View(ctx context.Context, r *pb.ViewRequest) (*pb.ViewResponse, error) {
	ms, err := s.impl.View(ctx, r.Key, r.Parent, labelOpts(r.Labels)...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ViewResponse{Mounts: mountsToPB(ms)}, nil
}

func (s *server) Commit(ctx context.Context, r *pb.CommitRequest) (*pb.CommitResponse, error) {
	if err := s.impl.Commit(ctx, r.Name, r.Key, labelOpts(r.Labels)...); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CommitResponse{}, nil
}

func (s *server) Remove(ctx context.Context, r *pb.RemoveRequest) (*pb.RemoveResponse, error) {
	if err := s.impl.Remove(ctx, r.Key); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RemoveResponse{}, nil
}

func (s *server) Cleanup(ctx context.Context, _ *pb.CleanupRequest) (*pb.CleanupResponse, error) {
	if err := s.impl.Cleanup(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CleanupResponse{}, nil
}

// Walk sends each Info as the implementation visits it. When the client
// stops the walk it cancels the stream: Send fails, fn returns that error
// and the implementation stops.
func (s *server) Walk(r *pb.WalkRequest, stream pb.Snapshots_WalkServer) error {
	err := s.impl.Walk(stream.Context(), func(_ context.Context, info Info) error {
		return stream.Send(&pb.WalkResponse{Info: infoToPB(info)})
	}, r.Filters...)
	return errdefs.ToGRPC(err)
}

// errApplyReturned is what a chunk still arriving finds once the
// implementation's Apply has returned.
var errApplyReturned = errors.New("apply returned before the end of the layer")

// Apply feeds the chunks that follow the header to the implementation
// through a pipe. The RPC ends when the implementation returns, even if the
// client is still sending (its Send then fails and it reads the status).
func (s *server) Apply(stream pb.Snapshots_ApplyServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return errdefs.ToGRPC(errdefs.InvalidArgument("apply: the first message must be the header (key and layer)"))
	}
	pr, pw := io.Pipe()
	go func() {
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				_ = pw.Close()
				return
			}
			if err != nil { // the client cancelled or went away
				_ = pw.CloseWithError(errdefs.FromGRPC(err))
				return
			}
			if data := m.GetData(); len(data) > 0 {
				if _, err := pw.Write(data); err != nil {
					return // the implementation returned
				}
			}
		}
	}()
	res, err := s.impl.Apply(stream.Context(), h.Key, layerFromPB(h.Layer), pr)
	_ = pr.CloseWithError(errApplyReturned)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	return stream.SendAndClose(&pb.ApplyResponse{DiffId: res.DiffID, Size: res.Size})
}
