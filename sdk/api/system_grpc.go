package api

import (
	"context"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/apiv1"
)

// RegisterSystemServer serves impl as the System service on s.
func RegisterSystemServer(s *grpc.Server, impl System) {
	pb.RegisterSystemServer(s, &systemServer{impl: impl})
}

type systemServer struct {
	pb.UnimplementedSystemServer
	impl System
}

func (s *systemServer) Version(ctx context.Context, _ *pb.VersionRequest) (*pb.VersionInfo, error) {
	v, err := s.impl.Version(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return versionToPB(v), nil
}

func (s *systemServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.SystemStatus, error) {
	st, err := s.impl.Status(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return statusToPB(st), nil
}

func (s *systemServer) Plugins(ctx context.Context, _ *pb.PluginsRequest) (*pb.PluginsResponse, error) {
	ps, err := s.impl.Plugins(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.PluginsResponse{Plugins: pluginsToPB(ps)}, nil
}

func (s *systemServer) Shutdown(ctx context.Context, _ *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	return &pb.ShutdownResponse{}, errdefs.ToGRPC(s.impl.Shutdown(ctx))
}

// SystemClient is a System reached over gRPC.
type SystemClient struct {
	c pb.SystemClient
}

var _ System = (*SystemClient)(nil)

// NewSystemClient returns a System over conn.
func NewSystemClient(conn grpc.ClientConnInterface) *SystemClient {
	return &SystemClient{c: pb.NewSystemClient(conn)}
}

// Version implements System.
func (c *SystemClient) Version(ctx context.Context) (VersionInfo, error) {
	v, err := c.c.Version(ctx, &pb.VersionRequest{})
	if err != nil {
		return VersionInfo{}, errdefs.FromGRPC(err)
	}
	return versionFromPB(v), nil
}

// Status implements System.
func (c *SystemClient) Status(ctx context.Context) (Status, error) {
	s, err := c.c.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return Status{}, errdefs.FromGRPC(err)
	}
	return statusFromPB(s), nil
}

// Plugins implements System.
func (c *SystemClient) Plugins(ctx context.Context) ([]PluginStatus, error) {
	r, err := c.c.Plugins(ctx, &pb.PluginsRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return pluginsFromPB(r.Plugins), nil
}

// Shutdown implements System.
func (c *SystemClient) Shutdown(ctx context.Context) error {
	_, err := c.c.Shutdown(ctx, &pb.ShutdownRequest{})
	return errdefs.FromGRPC(err)
}
