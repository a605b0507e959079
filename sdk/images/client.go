package images

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/imagesv1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// Client is a Service reached over gRPC.
type Client struct {
	c pb.ImagesClient
}

var _ Service = (*Client)(nil)

// NewClient returns a Service over conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{c: pb.NewImagesClient(conn)}
}

// FromHandles returns the core's image service brokered to this plugin
// (plugin.HandleImages).
func FromHandles(h *plugin.Handles) (*Client, error) {
	conn, err := h.Dial(plugin.HandleImages)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// receiveProgress reads a Pull or Push stream to its end, passing progress
// on and returning the image event, if any.
func receiveProgress(stream grpc.ServerStreamingClient[pb.ProgressEvent], progress ProgressFunc) (*pb.Image, error) {
	var img *pb.Image
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return img, nil
		}
		if err != nil {
			return nil, errdefs.FromGRPC(err)
		}
		switch e := ev.Event.(type) {
		case *pb.ProgressEvent_Progress:
			if progress != nil {
				progress(progressFromPB(e.Progress))
			}
		case *pb.ProgressEvent_Image:
			img = e.Image
		}
	}
}

// Pull implements Service.
func (c *Client) Pull(ctx context.Context, ref string, opts PullOptions, progress ProgressFunc) (Image, error) {
	stream, err := c.c.Pull(ctx, &pb.PullRequest{Ref: ref, Platform: platformToPB(opts.Platform)})
	if err != nil {
		return Image{}, errdefs.FromGRPC(err)
	}
	img, err := receiveProgress(stream, progress)
	if err != nil {
		return Image{}, err
	}
	if img == nil {
		return Image{}, errdefs.Unavailable("pull %s: the image service ended the stream without a result", ref)
	}
	return imageFromPB(img), nil
}

// Push implements Service.
func (c *Client) Push(ctx context.Context, ref string, _ PushOptions, progress ProgressFunc) error {
	stream, err := c.c.Push(ctx, &pb.PushRequest{Ref: ref})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	_, err = receiveProgress(stream, progress)
	return err
}

// List implements Service.
func (c *Client) List(ctx context.Context) ([]Image, error) {
	r, err := c.c.List(ctx, &pb.ListRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return imagesFromPB(r.Images), nil
}

// Inspect implements Service.
func (c *Client) Inspect(ctx context.Context, ref string) (Detail, error) {
	d, err := c.c.Inspect(ctx, &pb.InspectRequest{Ref: ref})
	if err != nil {
		return Detail{}, errdefs.FromGRPC(err)
	}
	return detailFromPB(d), nil
}

// Tag implements Service.
func (c *Client) Tag(ctx context.Context, source, target string) (Image, error) {
	img, err := c.c.Tag(ctx, &pb.TagRequest{Source: source, Target: target})
	if err != nil {
		return Image{}, errdefs.FromGRPC(err)
	}
	return imageFromPB(img), nil
}

// Remove implements Service.
func (c *Client) Remove(ctx context.Context, ref string, opts RemoveOptions) (RemoveResult, error) {
	r, err := c.c.Remove(ctx, &pb.RemoveRequest{Ref: ref, Force: opts.Force})
	if err != nil {
		return RemoveResult{}, errdefs.FromGRPC(err)
	}
	return removeResultFromPB(r), nil
}

// Prune implements Service.
func (c *Client) Prune(ctx context.Context) (RemoveResult, error) {
	r, err := c.c.Prune(ctx, &pb.PruneRequest{})
	if err != nil {
		return RemoveResult{}, errdefs.FromGRPC(err)
	}
	return removeResultFromPB(r), nil
}

// Save implements Service.
func (c *Client) Save(ctx context.Context, refs []string, opts SaveOptions, w io.Writer) error {
	stream, err := c.c.Save(ctx, &pb.SaveRequest{Refs: refs, Format: opts.Format})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		if _, err := w.Write(ch.Data); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
}

// Load implements Service. When r fails, the stream is cancelled and Load
// returns r's error.
func (c *Client) Load(ctx context.Context, r io.Reader) ([]Image, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Load(sctx)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	buf := make([]byte, ChunkSize)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&pb.Chunk{Data: buf[:n]}); err != nil {
				break // the server ended the call; CloseAndRecv says why
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			cancel()
			return nil, fmt.Errorf("load: reading the archive: %w", rerr)
		}
	}
	res, err := stream.CloseAndRecv()
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return imagesFromPB(res.Images), nil
}

// Import implements Service.
func (c *Client) Import(ctx context.Context, opts ImportOptions) (Image, error) {
	img, err := c.c.Import(ctx, &pb.ImportRequest{Dir: opts.Dir, Name: opts.Name, Config: configToPB(opts.Config), Platform: platformToPB(opts.Platform)})
	if err != nil {
		return Image{}, errdefs.FromGRPC(err)
	}
	return imageFromPB(img), nil
}

// OpenBlob implements Service: the blob streams as it is read; Close ends
// the stream.
func (c *Client) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	sctx, cancel := context.WithCancel(ctx)
	stream, err := c.c.OpenBlob(sctx, &pb.OpenBlobRequest{Digest: digest})
	if err != nil {
		cancel()
		return nil, errdefs.FromGRPC(err)
	}
	// The first message tells a missing blob from a present one.
	first, err := stream.Recv()
	if err != nil && err != io.EOF {
		cancel()
		return nil, errdefs.FromGRPC(err)
	}
	r := &chunkReader{recv: stream.Recv}
	if first != nil {
		r.buf = first.Data
	} else {
		r.recv = func() (*pb.Chunk, error) { return nil, io.EOF }
	}
	return &blobReader{Reader: r, cancel: cancel}, nil
}

type blobReader struct {
	io.Reader
	cancel context.CancelFunc
}

func (b *blobReader) Close() error { b.cancel(); return nil }

// AddLease implements Service.
func (c *Client) AddLease(ctx context.Context, id, ref string) error {
	_, err := c.c.AddLease(ctx, &pb.AddLeaseRequest{Id: id, Ref: ref})
	return errdefs.FromGRPC(err)
}

// DeleteLease implements Service.
func (c *Client) DeleteLease(ctx context.Context, id string) error {
	_, err := c.c.DeleteLease(ctx, &pb.DeleteLeaseRequest{Id: id})
	return errdefs.FromGRPC(err)
}
