package lifecycle

import (
	"bufio"
	"context"
	"io"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
)

// This file carries the tar streams of CopyFrom, CopyTo and Export over
// gRPC, in chunks of at most ArchiveChunkSize.

// ArchiveChunkSize is the largest piece of a tar stream one message
// carries: writes are gathered up to it, so a stream of small writes (tar
// headers, 32 KiB file reads) is not a stream of small messages.
const ArchiveChunkSize = 256 << 10

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

// chunkReceiver is the receiving side of a CopyFrom or Export stream.
type chunkReceiver interface {
	Recv() (*pb.ArchiveChunk, error)
}

// recvArchive writes the chunks of stream to w until the stream ends.
func recvArchive(stream chunkReceiver, w io.Writer) error {
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
		buf := make([]byte, ArchiveChunkSize)
		for {
			n, rerr := io.ReadFull(r, buf)
			if rerr == io.ErrUnexpectedEOF {
				rerr = io.EOF
			}
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
		c := min(len(p), ArchiveChunkSize)
		if err := w.send(&pb.ArchiveChunk{Data: append([]byte(nil), p[:c]...)}); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

func (s *server) CopyFrom(r *pb.CopyFromRequest, stream pb.Lifecycle_CopyFromServer) error {
	w := bufio.NewWriterSize(chunkWriter{send: stream.Send}, ArchiveChunkSize)
	if err := s.impl.CopyFrom(stream.Context(), r.Ref, r.Path, w); err != nil {
		return errdefs.ToGRPC(err)
	}
	return w.Flush()
}

func (s *server) Export(r *pb.ExportRequest, stream pb.Lifecycle_ExportServer) error {
	w := bufio.NewWriterSize(chunkWriter{send: stream.Send}, ArchiveChunkSize)
	if err := s.impl.Export(stream.Context(), r.Ref, w); err != nil {
		return errdefs.ToGRPC(err)
	}
	return w.Flush()
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
