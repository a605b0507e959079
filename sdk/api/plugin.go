package api

import (
	"context"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/apiv1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// NewPlugin returns the go-plugin glue serving impl.
func NewPlugin(impl Frontend) *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Impl: impl, Register: register, NewClient: newClientAny}
}

// ClientPlugin returns the go-plugin glue the host dispenses clients with.
func ClientPlugin() *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Register: register, NewClient: newClientAny}
}

func register(s *grpc.Server, impl plugin.Base) {
	pb.RegisterFrontendServer(s, &frontendServer{impl: impl.(Frontend)})
}

func newClientAny(conn *grpc.ClientConn) any { return NewClient(conn) }

// SystemFromHandles returns the core's System service brokered to this
// plugin.
func SystemFromHandles(h *plugin.Handles) (*SystemClient, error) {
	conn, err := h.Dial(plugin.HandleSystem)
	if err != nil {
		return nil, err
	}
	return NewSystemClient(conn), nil
}

type frontendServer struct {
	pb.UnimplementedFrontendServer
	impl Frontend
}

func (s *frontendServer) Endpoints(ctx context.Context, _ *pb.EndpointsRequest) (*pb.EndpointsResponse, error) {
	es, err := s.impl.Endpoints(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.EndpointsResponse{Endpoints: endpointsToPB(es)}, nil
}

// Client is a Frontend reached over gRPC.
type Client struct {
	plugin.ClientBase
	c pb.FrontendClient
}

var _ Frontend = (*Client)(nil)
var _ plugin.Client = (*Client)(nil)

// NewClient returns a Frontend over conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{ClientBase: plugin.NewClientBase(conn), c: pb.NewFrontendClient(conn)}
}

// Endpoints implements Frontend.
func (c *Client) Endpoints(ctx context.Context) ([]Endpoint, error) {
	r, err := c.c.Endpoints(ctx, &pb.EndpointsRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return endpointsFromPB(r.Endpoints), nil
}
