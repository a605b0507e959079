package images

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/imagesv1"
)

// ChunkSize is the largest piece of an archive or blob sent in one message.
const ChunkSize = 256 << 10

// RegisterServer serves impl as the Images service on s.
func RegisterServer(s *grpc.Server, impl Service) {
	pb.RegisterImagesServer(s, &server{impl: impl})
}

type server struct {
	pb.UnimplementedImagesServer
	impl Service
}

// progressSender sends progress on a stream, one message at a time, and
// stops sending once a send failed (the client went away; its context
// ends the operation).
func progressSender(send func(*pb.ProgressEvent) error) ProgressFunc {
	var mu sync.Mutex
	var failed bool
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if !failed && send(progressToPB(p)) != nil {
			failed = true
		}
	}
}

func (s *server) Pull(req *pb.PullRequest, stream grpc.ServerStreamingServer[pb.ProgressEvent]) error {
	progress := progressSender(stream.Send)
	img, err := s.impl.Pull(stream.Context(), req.Ref, PullOptions{Platform: platformFromPB(req.Platform)}, progress)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	return stream.Send(&pb.ProgressEvent{Event: &pb.ProgressEvent_Image{Image: imageToPB(img)}})
}

func (s *server) Push(req *pb.PushRequest, stream grpc.ServerStreamingServer[pb.ProgressEvent]) error {
	return errdefs.ToGRPC(s.impl.Push(stream.Context(), req.Ref, PushOptions{}, progressSender(stream.Send)))
}

func (s *server) List(ctx context.Context, _ *pb.ListRequest) (*pb.ListResponse, error) {
	is, err := s.impl.List(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ListResponse{Images: imagesToPB(is)}, nil
}

func (s *server) Inspect(ctx context.Context, req *pb.InspectRequest) (*pb.Detail, error) {
	d, err := s.impl.Inspect(ctx, req.Ref)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return detailToPB(d), nil
}

func (s *server) Tag(ctx context.Context, req *pb.TagRequest) (*pb.Image, error) {
	img, err := s.impl.Tag(ctx, req.Source, req.Target)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return imageToPB(img), nil
}

func (s *server) Remove(ctx context.Context, req *pb.RemoveRequest) (*pb.RemoveResult, error) {
	r, err := s.impl.Remove(ctx, req.Ref, RemoveOptions{Force: req.Force})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return removeResultToPB(r), nil
}

func (s *server) Prune(ctx context.Context, _ *pb.PruneRequest) (*pb.RemoveResult, error) {
	r, err := s.impl.Prune(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return removeResultToPB(r), nil
}

func (s *server) Save(req *pb.SaveRequest, stream grpc.ServerStreamingServer[pb.Chunk]) error {
	w := &chunkWriter{send: stream.Send}
	if err := s.impl.Save(stream.Context(), req.Refs, SaveOptions{Format: req.Format}, w); err != nil {
		return errdefs.ToGRPC(err)
	}
	return errdefs.ToGRPC(w.flush())
}

func (s *server) Load(stream grpc.ClientStreamingServer[pb.Chunk, pb.LoadResponse]) error {
	is, err := s.impl.Load(stream.Context(), &chunkReader{recv: stream.Recv})
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	return stream.SendAndClose(&pb.LoadResponse{Images: imagesToPB(is)})
}

func (s *server) Import(ctx context.Context, req *pb.ImportRequest) (*pb.Image, error) {
	img, err := s.impl.Import(ctx, ImportOptions{Dir: req.Dir, Name: req.Name, Config: configFromPB(req.Config), Platform: platformFromPB(req.Platform)})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return imageToPB(img), nil
}

func (s *server) OpenBlob(req *pb.OpenBlobRequest, stream grpc.ServerStreamingServer[pb.Chunk]) error {
	rc, err := s.impl.OpenBlob(stream.Context(), req.Digest)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	defer rc.Close()
	w := &chunkWriter{send: stream.Send}
	if _, err := io.Copy(w, rc); err != nil {
		return errdefs.ToGRPC(err)
	}
	return errdefs.ToGRPC(w.flush())
}

func (s *server) AddLease(ctx context.Context, req *pb.AddLeaseRequest) (*pb.AddLeaseResponse, error) {
	return &pb.AddLeaseResponse{}, errdefs.ToGRPC(s.impl.AddLease(ctx, req.Id, req.Ref))
}

func (s *server) DeleteLease(ctx context.Context, req *pb.DeleteLeaseRequest) (*pb.DeleteLeaseResponse, error) {
	return &pb.DeleteLeaseResponse{}, errdefs.ToGRPC(s.impl.DeleteLease(ctx, req.Id))
}

// chunkWriter buffers writes into messages of ChunkSize bytes.
type chunkWriter struct {
	send func(*pb.Chunk) error
	buf  []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := ChunkSize - len(w.buf)
		take := min(room, len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == ChunkSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(&pb.Chunk{Data: w.buf})
	w.buf = make([]byte, 0, ChunkSize)
	return err
}

// chunkReader reads the data of a stream of chunks.
type chunkReader struct {
	recv func() (*pb.Chunk, error)
	buf  []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		c, err := r.recv()
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			return 0, errdefs.FromGRPC(err)
		}
		r.buf = c.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
