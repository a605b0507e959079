package lifecycle

import (
	"context"
	"io"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
)

// This file carries the tar streams of CopyFrom, CopyTo and Export over
// gRPC, in chunks of at most AttachChunkSize.

// CopyFrom implements Manager.
func (c *Client) CopyFrom(ctx context.Context, ref, path string, w io.Writer) error {
	stream, err := c.c.CopyFrom(ctx, &pb.CopyFromRequest{Ref: ref, Path: path})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	return recvArchive(stream, w)
}

// Export implements Manager.
func (c *Client) Export(ctx context.Context, ref string, w io.Writer) error {
	stream, err := c.c.Export(ctx, &pb.ExportRequest{Ref: ref})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	return recvArchive(stream, w)
}

// recvArchive writes the chunks of stream to w until the stream ends.
func recvArchive(stream interface{ Recv() (*pb.ArchiveChunk, error) }, w io.Writer) error {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		if _, err := w.Write(m.Data); err != nil {
			return err
		}
	}
}

// CopyTo implements Manager. When the plugin refuses the archive before
// it has all of it, the plugin's error is returned.
func (c *Client) CopyTo(ctx context.Context, ref, dir string, r io.Reader) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.CopyTo(sctx)
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	start := &pb.CopyToRequest{Msg: &pb.CopyToRequest_Start{Start: &pb.CopyToStart{Ref: ref, Path: dir}}}
	if err := stream.Send(start); err == nil {
		buf := make([]byte, AttachChunkSize)
		for {
			n, rerr := r.Read(buf)
			if n > 0 {
				// A failed Send means the RPC ended; CloseAndRecv says why.
				if err := stream.Send(&pb.CopyToRequest{Msg: &pb.CopyToRequest_Data{Data: append([]byte(nil), buf[:n]...)}}); err != nil {
					break
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				cancel()
				return rerr
			}
		}
	}
	_, err = stream.CloseAndRecv()
	return errdefs.FromGRPC(err)
}

// chunkWriter sends what is written to it as ArchiveChunks.
type chunkWriter struct {
	send func(*pb.ArchiveChunk) error
}

func (w chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), AttachChunkSize)
		if err := w.send(&pb.ArchiveChunk{Data: append([]byte(nil), p[:c]...)}); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

func (s *server) CopyFrom(r *pb.CopyFromRequest, stream pb.Lifecycle_CopyFromServer) error {
	return errdefs.ToGRPC(s.impl.CopyFrom(stream.Context(), r.Ref, r.Path, chunkWriter{send: stream.Send}))
}

func (s *server) Export(r *pb.ExportRequest, stream pb.Lifecycle_ExportServer) error {
	return errdefs.ToGRPC(s.impl.Export(stream.Context(), r.Ref, chunkWriter{send: stream.Send}))
}

// CopyTo feeds the client's chunks to the implementation through a pipe;
// the RPC ends when the implementation returns.
func (s *server) CopyTo(stream pb.Lifecycle_CopyToServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return errdefs.ToGRPC(errdefs.InvalidArgument("copy to a container: the first message must name the container and directory"))
	}
	pr, pw := io.Pipe()
	go func() {
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				_ = pw.Close()
				return
			}
			if err != nil {
				_ = pw.CloseWithError(errdefs.FromGRPC(err))
				return
			}
			if _, err := pw.Write(m.GetData()); err != nil {
				return // the implementation returned
			}
		}
	}()
	err = s.impl.CopyTo(stream.Context(), start.Ref, start.Path, pr)
	_ = pr.CloseWithError(errAttachReturned)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	return stream.SendAndClose(&pb.CopyToResponse{})
}
