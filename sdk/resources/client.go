package resources

import (
	"context"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/resourcesv1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// Client is a Controller reached over gRPC.
type Client struct {
	plugin.ClientBase
	c pb.ResourcesClient
}

var _ Controller = (*Client)(nil)
var _ plugin.Client = (*Client)(nil)

// NewClient returns a Controller over conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{ClientBase: plugin.NewClientBase(conn), c: pb.NewResourcesClient(conn)}
}

// CreateGroup implements Controller.
func (c *Client) CreateGroup(ctx context.Context, id string, limits Limits) (Placement, error) {
	r, err := c.c.CreateGroup(ctx, &pb.CreateGroupRequest{Id: id, Limits: limitsToPB(limits)})
	if err != nil {
		return Placement{}, errdefs.FromGRPC(err)
	}
	return placementFromPB(r.Placement), nil
}

// Attach implements Controller.
func (c *Client) Attach(ctx context.Context, id string, pid int) error {
	_, err := c.c.Attach(ctx, &pb.AttachRequest{Id: id, Pid: int64(pid)})
	return errdefs.FromGRPC(err)
}

// Update implements Controller.
func (c *Client) Update(ctx context.Context, id string, limits Limits) error {
	_, err := c.c.Update(ctx, &pb.UpdateRequest{Id: id, Limits: limitsToPB(limits)})
	return errdefs.FromGRPC(err)
}

// SetPaused implements Controller.
func (c *Client) SetPaused(ctx context.Context, id string, paused bool) error {
	_, err := c.c.SetPaused(ctx, &pb.SetPausedRequest{Id: id, Paused: paused})
	return errdefs.FromGRPC(err)
}

// Usage implements Controller.
func (c *Client) Usage(ctx context.Context, id string) (Usage, error) {
	r, err := c.c.Usage(ctx, &pb.UsageRequest{Id: id})
	if err != nil {
		return Usage{}, errdefs.FromGRPC(err)
	}
	return usageFromPB(r.Usage), nil
}

// List implements Controller.
func (c *Client) List(ctx context.Context) ([]Group, error) {
	r, err := c.c.List(ctx, &pb.ListRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]Group, 0, len(r.Groups))
	for _, g := range r.Groups {
		out = append(out, groupFromPB(g))
	}
	return out, nil
}

// Delete implements Controller.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.c.Delete(ctx, &pb.DeleteRequest{Id: id})
	return errdefs.FromGRPC(err)
}

// Events implements Controller. The channel closes when ctx is done or the
// stream ends (the plugin went away); the caller resubscribes after a
// restart.
func (c *Client) Events(ctx context.Context) (<-chan LimitEvent, error) {
	stream, err := c.c.Events(ctx, &pb.EventsRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make(chan LimitEvent)
	go func() {
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
