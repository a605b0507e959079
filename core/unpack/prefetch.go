package unpack

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/berth-dev/berth/sdk/archive"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// Unpack decompresses blobs itself, in a goroutine per layer running up to
// one layer ahead of the snapshotter, and hands the snapshotter the plain
// tar: on two cores the next layer inflates while this one is written.
// The snapshotter verifies the diff ID; the stream verifies the blob digest
// and ends in an error instead of EOF when it does not match, so a corrupt
// blob is never committed.
const (
	streamChunk = 1 << 20
	// streamAhead bounds the memory one stream holds: chunks decompressed
	// but not yet applied (they are reused).
	streamAhead = 4
	// layersAhead is how many layers past the one being applied are
	// decompressed at the same time.
	layersAhead = 1
)

// tarMediaType is what the snapshotter is told it receives.
const tarMediaType = "application/vnd.oci.image.layer.v1.tar"

// stream is one layer's blob being opened, verified and decompressed.
type stream struct {
	chunks chan []byte
	free   chan []byte
	stop   chan struct{}
	done   chan struct{}
	err    error // set before chunks is closed
	cur    []byte
	held   []byte // the chunk cur is part of, returned to free when used up
}

// startStream opens l and decompresses it ahead of its reader; read is
// called with the blob bytes read so far, from the stream's goroutine.
func startStream(l Layer, read func(n int64)) *stream {
	s := &stream{chunks: make(chan []byte, streamAhead), free: make(chan []byte, streamAhead+1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.chunks)
		s.err = s.produce(l, read)
	}()
	return s
}

func (s *stream) produce(l Layer, read func(int64)) error {
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("open blob: %w", err)
	}
	defer rc.Close()
	blob := &countReader{r: rc, read: read}
	var src io.Reader = blob
	var h hash.Hash
	if l.Digest != "" {
		algo, _, _ := strings.Cut(l.Digest, ":")
		switch algo {
		case "sha256":
			h = sha256.New()
		case "sha512":
			h = sha512.New()
		default:
			return errdefs.InvalidArgument("blob digest %q: unsupported algorithm", l.Digest)
		}
		src = io.TeeReader(blob, h)
	}
	tarStream, err := archive.Decompress(l.MediaType, src)
	if err != nil {
		return err
	}
	defer tarStream.Close()
	for {
		var b []byte
		select {
		case b = <-s.free:
		default:
			b = make([]byte, streamChunk)
		}
		n, err := io.ReadFull(tarStream, b[:streamChunk])
		if n > 0 {
			select {
			case s.chunks <- b[:n]:
			case <-s.stop:
				return errors.New("stopped")
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return errdefs.InvalidArgument("decompress blob: %v", err)
		}
	}
	if h != nil {
		if _, err := io.Copy(io.Discard, src); err != nil {
			return fmt.Errorf("read blob: %w", err)
		}
		algo, _, _ := strings.Cut(l.Digest, ":")
		if got := algo + ":" + hex.EncodeToString(h.Sum(nil)); got != l.Digest {
			return errdefs.InvalidArgument("blob digest mismatch: expected %s, the blob is %s", l.Digest, got)
		}
	}
	read(blob.n)
	return nil
}

// Read implements io.Reader.
func (s *stream) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.held != nil {
			select {
			case s.free <- s.held[:cap(s.held)]:
			default: // the producer has ended and free is full: let it go
			}
			s.held = nil
		}
		b, ok := <-s.chunks
		if !ok {
			<-s.done
			if s.err != nil {
				return 0, s.err
			}
			return 0, io.EOF
		}
		s.cur, s.held = b, b
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

// Close stops the stream and waits for its goroutine (which closes the blob).
func (s *stream) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

type countReader struct {
	r    io.Reader
	n    int64
	last int64
	read func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 1<<20 {
		c.last = c.n
		c.read(c.n)
	}
	return n, err
}
