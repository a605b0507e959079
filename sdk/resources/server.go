package resources

import (
	"context"
	"github.com/berth-dev/berth/sdk/errdefs"

	pb "github.com/berth-dev/berth/sdk/internal/gen/resourcesv1"
)

// server serves a Controller over gRPC, mapping errors to status codes
// itself so kinds survive on any gRPC server, go-plugin's default included.
type server struct {
	pb.UnimplementedResourcesServer
	impl Controller
}

func (s *server) CreateGroup(ctx context.Context, r *pb.CreateGroupRequest) (*pb.CreateGroupResponse, error) {
	p, err := s.impl.CreateGroup(ctx, r.Id, limitsFromPB(r.Limits))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CreateGroupResponse{Placement: placementToPB(p)}, nil
}

func (s *server) Attach(ctx context.Context, r *pb.AttachRequest) (*pb.AttachResponse, error) {
	return &pb.AttachResponse{}, errdefs.ToGRPC(s.impl.Attach(ctx, r.Id, int(r.Pid)))
}

func (s *server) Update(ctx context.Context, r *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	return &pb.UpdateResponse{}, errdefs.ToGRPC(s.impl.Update(ctx, r.Id, limitsFromPB(r.Limits)))
}

func (s *server) SetPaused(ctx context.Context, r *pb.SetPausedRequest) (*pb.SetPausedResponse, error) {
	return &pb.SetPausedResponse{}, errdefs.ToGRPC(s.impl.SetPaused(ctx, r.Id, r.Paused))
}

func (s *server) Usage(ctx context.Context, r *pb.UsageRequest) (*pb.UsageResponse, error) {
	u, err := s.impl.Usage(ctx, r.Id)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.UsageResponse{Usage: usageToPB(u)}, nil
}

func (s *server) List(ctx context.Context, _ *pb.ListRequest) (*pb.ListResponse, error) {
	groups, err := s.impl.List(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	out := &pb.ListResponse{}
	for _, g := range groups {
		out.Groups = append(out.Groups, groupToPB(g))
	}
	return out, nil
}

func (s *server) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	return &pb.DeleteResponse{}, errdefs.ToGRPC(s.impl.Delete(ctx, r.Id))
}

func (s *server) Events(_ *pb.EventsRequest, stream pb.Resources_EventsServer) error {
	events, err := s.impl.Events(stream.Context())
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	for e := range events {
		if err := stream.Send(eventToPB(e)); err != nil {
			return err
		}
	}
	return nil
}
