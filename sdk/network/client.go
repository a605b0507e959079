package network

import (
	"context"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/networkv1"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
)

// Client is a Service reached over gRPC.
type Client struct {
	c pb.NetworkClient
}

var _ Service = (*Client)(nil)

// NewClient returns a Service over conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{c: pb.NewNetworkClient(conn)}
}

// FromHandles returns the core's network service brokered to this plugin
// (plugin.HandleNetwork).
func FromHandles(h *plugin.Handles) (*Client, error) {
	conn, err := h.Dial(plugin.HandleNetwork)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// Create implements Service.
func (c *Client) Create(ctx context.Context, spec CreateSpec) (Network, error) {
	n, err := c.c.Create(ctx, &pb.CreateRequest{Name: spec.Name, Subnet: spec.Subnet, Internal: spec.Internal, Labels: spec.Labels})
	if err != nil {
		return Network{}, errdefs.FromGRPC(err)
	}
	return networkFromPB(n), nil
}

// List implements Service.
func (c *Client) List(ctx context.Context) ([]Network, error) {
	r, err := c.c.List(ctx, &pb.ListRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]Network, 0, len(r.GetNetworks()))
	for _, n := range r.GetNetworks() {
		out = append(out, networkFromPB(n))
	}
	return out, nil
}

// Inspect implements Service.
func (c *Client) Inspect(ctx context.Context, ref string) (Network, error) {
	n, err := c.c.Inspect(ctx, &pb.InspectRequest{Ref: ref})
	if err != nil {
		return Network{}, errdefs.FromGRPC(err)
	}
	return networkFromPB(n), nil
}

// Remove implements Service.
func (c *Client) Remove(ctx context.Context, ref string) error {
	_, err := c.c.Remove(ctx, &pb.RemoveRequest{Ref: ref})
	return errdefs.FromGRPC(err)
}

// Prune implements Service.
func (c *Client) Prune(ctx context.Context) ([]string, error) {
	r, err := c.c.Prune(ctx, &pb.PruneRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return r.GetRemoved(), nil
}

// Attach implements Service.
func (c *Client) Attach(ctx context.Context, req AttachRequest) (isolation.NetworkAttachment, error) {
	a, err := c.c.Attach(ctx, attachRequestToPB(req))
	if err != nil {
		return isolation.NetworkAttachment{}, errdefs.FromGRPC(err)
	}
	return attachmentFromPB(a), nil
}

// Detach implements Service.
func (c *Client) Detach(ctx context.Context, containerID string) error {
	_, err := c.c.Detach(ctx, &pb.DetachRequest{ContainerId: containerID})
	return errdefs.FromGRPC(err)
}

// Connect implements Service.
func (c *Client) Connect(ctx context.Context, req AttachRequest) (isolation.NetworkAttachment, error) {
	a, err := c.c.Connect(ctx, attachRequestToPB(req))
	if err != nil {
		return isolation.NetworkAttachment{}, errdefs.FromGRPC(err)
	}
	return attachmentFromPB(a), nil
}

// Disconnect implements Service.
func (c *Client) Disconnect(ctx context.Context, containerID, ref string) error {
	_, err := c.c.Disconnect(ctx, &pb.DisconnectRequest{ContainerId: containerID, Network: ref})
	return errdefs.FromGRPC(err)
}

// Rename implements Service.
func (c *Client) Rename(ctx context.Context, containerID, name string) error {
	_, err := c.c.Rename(ctx, &pb.RenameRequest{ContainerId: containerID, Name: name})
	return errdefs.FromGRPC(err)
}

// Endpoints implements Service.
func (c *Client) Endpoints(ctx context.Context, ref string) ([]Endpoint, error) {
	r, err := c.c.Endpoints(ctx, &pb.EndpointsRequest{Network: ref})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]Endpoint, 0, len(r.GetEndpoints()))
	for _, e := range r.GetEndpoints() {
		out = append(out, endpointFromPB(e))
	}
	return out, nil
}
