package snapshot

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/snapshotv1"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
)

// ApplyChunkSize is the largest chunk of a layer blob Apply sends in one
// message.
const ApplyChunkSize = 64 << 10

// Client is a Snapshotter reached over gRPC. Opts cross the wire as the
// labels they set.
type Client struct {
	plugin.ClientBase
	c pb.SnapshotsClient
}

var _ Snapshotter = (*Client)(nil)
var _ plugin.Client = (*Client)(nil)

// NewClient returns a Snapshotter over conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{ClientBase: plugin.NewClientBase(conn), c: pb.NewSnapshotsClient(conn)}
}

// Stat implements Snapshotter.
func (c *Client) Stat(ctx context.Context, key string) (Info, error) {
	r, err := c.c.Stat(ctx, &pb.StatRequest{Key: key})
	if err != nil {
		return Info{}, errdefs.FromGRPC(err)
	}
	return infoFromPB(r.Info), nil
}

// Update implements Snapshotter.
func (c *Client) Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error) {
	r, err := c.c.Update(ctx, &pb.UpdateRequest{Info: infoToPB(info), Fieldpaths: fieldpaths})
	if err != nil {
		return Info{}, errdefs.FromGRPC(err)
	}
	return infoFromPB(r.Info), nil
}

// Usage implements Snapshotter.
func (c *Client) Usage(ctx context.Context, key string) (Usage, error) {
	r, err := c.c.Usage(ctx, &pb.UsageRequest{Key: key})
	if err != nil {
		return Usage{}, errdefs.FromGRPC(err)
	}
	return usageFromPB(r.Usage), nil
}

// Mounts implements Snapshotter.
func (c *Client) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	r, err := c.c.Mounts(ctx, &pb.MountsRequest{Key: key})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return mountsFromPB(r.Mounts), nil
}

// Prepare implements Snapshotter.
func (c *Client) Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error) {
	labels, err := labelsOf(opts)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", key, err)
	}
	r, err := c.c.Prepare(ctx, &pb.PrepareRequest{Key: key, Parent: parent, Labels: labels})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return mountsFromPB(r.Mounts), nil
}

// View implements Snapshotter.
func (c *Client) View(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error) {
	labels, err := labelsOf(opts)
	if err != nil {
		return nil, fmt.Errorf("view %s: %w", key, err)
	}
	r, err := c.c.View(ctx, &pb.ViewRequest{Key: key, Parent: parent, Labels: labels})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return mountsFromPB(r.Mounts), nil
}

// Commit implements Snapshotter.
func (c *Client) Commit(ctx context.Context, name, key string, opts ...Opt) error {
	labels, err := labelsOf(opts)
	if err != nil {
		return fmt.Errorf("commit %s: %w", key, err)
	}
	_, err = c.c.Commit(ctx, &pb.CommitRequest{Name: name, Key: key, Labels: labels})
	return errdefs.FromGRPC(err)
}

// Remove implements Snapshotter.
func (c *Client) Remove(ctx context.Context, key string) error {
	_, err := c.c.Remove(ctx, &pb.RemoveRequest{Key: key})
	return errdefs.FromGRPC(err)
}

// Cleanup implements Snapshotter.
func (c *Client) Cleanup(ctx context.Context) error {
	_, err := c.c.Cleanup(ctx, &pb.CleanupRequest{})
	return errdefs.FromGRPC(err)
}

// Walk implements Snapshotter. fn runs on the caller's goroutine, once per
// snapshot received; when it returns an error the stream is cancelled (the
// plugin stops walking) and Walk returns that error unchanged.
func (c *Client) Walk(ctx context.Context, fn WalkFunc, filters ...string) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Walk(sctx, &pb.WalkRequest{Filters: filters})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		if err := fn(ctx, infoFromPB(m.Info)); err != nil {
			return err
		}
	}
}

// Apply implements Snapshotter: it streams r in chunks of at most
// ApplyChunkSize. When r fails the stream is cancelled, so the plugin sees
// an error, and Apply returns r's error. When the plugin fails first, Apply
// stops reading r and returns the plugin's error.
func (c *Client) Apply(ctx context.Context, key string, layer Layer, r io.Reader) (ApplyResult, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Apply(sctx)
	if err != nil {
		return ApplyResult{}, errdefs.FromGRPC(err)
	}
	header := &pb.ApplyRequest{Msg: &pb.ApplyRequest_Header{Header: &pb.ApplyHeader{Key: key, Layer: layerToPB(layer)}}}
	if err := stream.Send(header); err != nil && err != io.EOF {
		return ApplyResult{}, errdefs.FromGRPC(err)
	}
	if err := sendChunks(stream, r); err != nil {
		return ApplyResult{}, fmt.Errorf("apply %s: layer %s: %w", key, layer.Digest, err)
	}
	res, err := stream.CloseAndRecv()
	if err != nil {
		return ApplyResult{}, errdefs.FromGRPC(err)
	}
	return ApplyResult{DiffID: res.DiffId, Size: res.Size}, nil
}

// sendChunks copies r to stream until r ends or the server ends the RPC (Send
// returns io.EOF; the status is then read by CloseAndRecv). It returns only
// r's errors. Each chunk gets its own buffer: gRPC may hold a sent message.
func sendChunks(stream pb.Snapshots_ApplyClient, r io.Reader) error {
	for {
		buf := make([]byte, ApplyChunkSize)
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&pb.ApplyRequest{Msg: &pb.ApplyRequest_Data{Data: buf[:n]}}); err != nil {
				return nil // the server ended the RPC; CloseAndRecv reads why
			}
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return fmt.Errorf("read: %w", rerr)
		}
	}
}
