package network

import (
	"context"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/networkv1"
)

// RegisterServer serves impl as the Network service on s.
func RegisterServer(s *grpc.Server, impl Service) {
	pb.RegisterNetworkServer(s, &server{impl: impl})
}

type server struct {
	pb.UnimplementedNetworkServer
	impl Service
}

func (s *server) Create(ctx context.Context, req *pb.CreateRequest) (*pb.NetworkInfo, error) {
	n, err := s.impl.Create(ctx, CreateSpec{Name: req.GetName(), Subnet: req.GetSubnet(), Internal: req.GetInternal(), Labels: req.GetLabels()})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return networkToPB(n), nil
}

func (s *server) List(ctx context.Context, _ *pb.ListRequest) (*pb.ListResponse, error) {
	ns, err := s.impl.List(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := &pb.ListResponse{}
	for _, n := range ns {
		r.Networks = append(r.Networks, networkToPB(n))
	}
	return r, nil
}

func (s *server) Inspect(ctx context.Context, req *pb.InspectRequest) (*pb.NetworkInfo, error) {
	n, err := s.impl.Inspect(ctx, req.GetRef())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return networkToPB(n), nil
}

func (s *server) Remove(ctx context.Context, req *pb.RemoveRequest) (*pb.RemoveResponse, error) {
	if err := s.impl.Remove(ctx, req.GetRef()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RemoveResponse{}, nil
}

func (s *server) Prune(ctx context.Context, _ *pb.PruneRequest) (*pb.PruneResponse, error) {
	removed, err := s.impl.Prune(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.PruneResponse{Removed: removed}, nil
}

func (s *server) Attach(ctx context.Context, req *pb.AttachRequest) (*pb.Attachment, error) {
	a, err := s.impl.Attach(ctx, attachRequestFromPB(req))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return attachmentToPB(a), nil
}

func (s *server) Detach(ctx context.Context, req *pb.DetachRequest) (*pb.DetachResponse, error) {
	if err := s.impl.Detach(ctx, req.GetContainerId()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.DetachResponse{}, nil
}

func (s *server) Connect(ctx context.Context, req *pb.AttachRequest) (*pb.Attachment, error) {
	a, err := s.impl.Connect(ctx, attachRequestFromPB(req))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return attachmentToPB(a), nil
}

func (s *server) Disconnect(ctx context.Context, req *pb.DisconnectRequest) (*pb.DisconnectResponse, error) {
	if err := s.impl.Disconnect(ctx, req.GetContainerId(), req.GetNetwork()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.DisconnectResponse{}, nil
}

func (s *server) Rename(ctx context.Context, req *pb.RenameRequest) (*pb.RenameResponse, error) {
	if err := s.impl.Rename(ctx, req.GetContainerId(), req.GetName()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RenameResponse{}, nil
}

func (s *server) Endpoints(ctx context.Context, req *pb.EndpointsRequest) (*pb.EndpointsResponse, error) {
	es, err := s.impl.Endpoints(ctx, req.GetNetwork())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := &pb.EndpointsResponse{}
	for _, e := range es {
		r.Endpoints = append(r.Endpoints, endpointToPB(e))
	}
	return r, nil
}
