package archive

import (
	"errors"
	"io"
)

// readahead reads src in a goroutine of its own, up to a few chunks ahead
// of its reader, so that decompressing and hashing a layer overlaps with
// writing it out. Handing over whole chunks keeps goroutine switches to a
// few per MiB.
type readahead struct {
	filled chan []byte
	free   chan []byte
	stop   chan struct{}
	done   chan struct{}
	err    error // the producer's error, nil for a clean end; read after done

	cur  []byte // unread part of the current chunk
	held []byte // the current chunk, returned to free when used up
}

const (
	chunkSize   = 1 << 20
	chunksAhead = 4
)

func newReadahead(src io.Reader) *readahead {
	r := &readahead{
		filled: make(chan []byte, chunksAhead),
		free:   make(chan []byte, chunksAhead),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range chunksAhead {
		r.free <- make([]byte, chunkSize)
	}
	go r.produce(src)
	return r
}

func (r *readahead) produce(src io.Reader) {
	defer close(r.done)
	defer close(r.filled)
	for {
		var b []byte
		select {
		case b = <-r.free:
		case <-r.stop:
			return
		}
		n, err := io.ReadFull(src, b[:chunkSize])
		if n > 0 {
			select {
			case r.filled <- b[:n]:
			case <-r.stop:
				return
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return
		}
		if err != nil {
			r.err = err
			return
		}
	}
}

// Read implements io.Reader.
func (r *readahead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.held != nil {
			r.free <- r.held[:cap(r.held)]
			r.held = nil
		}
		b, ok := <-r.filled
		if !ok {
			<-r.done
			if r.err != nil {
				return 0, r.err
			}
			return 0, io.EOF
		}
		r.cur, r.held = b, b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the producer and waits for it; src is not read after.
func (r *readahead) Close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// wait waits for the producer to end and returns its error.
func (r *readahead) wait() error {
	<-r.done
	return r.err
}
