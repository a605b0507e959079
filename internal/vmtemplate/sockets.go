package vmtemplate

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
)

// placeholderSockets are the unix stream sockets a socket-NIC template's
// build listens on, one per placeholder NIC: the hypervisor connects to
// them as to a user-mode network (qemu -netdev stream; the driver's probe
// dial connects and closes first). Every connection is accepted and
// drained until Close, so the guest's NIC has a live link while it boots
// and nothing it sends blocks it. The guest learns nothing from them: no
// frame is ever sent to it.
type placeholderSockets struct {
	dir    string
	lns    []net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// listenPlaceholders listens on n sockets nic<i>.sock in dir.
func listenPlaceholders(dir string, n int) (_ *placeholderSockets, err error) {
	s := &placeholderSockets{dir: dir}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for i := range n {
		ln, err := net.Listen("unix", s.Path(i))
		if err != nil {
			return nil, fmt.Errorf("placeholder NIC %d socket: %w", i, err)
		}
		s.lns = append(s.lns, ln)
		s.wg.Add(1)
		go s.serve(ln)
	}
	return s, nil
}

// Path is the socket of placeholder NIC i.
func (s *placeholderSockets) Path(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("nic%d.sock", i))
}

func (s *placeholderSockets) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// Close stops listening, closes every connection, removes the sockets and
// waits for its goroutines.
func (s *placeholderSockets) Close() {
	for _, ln := range s.lns {
		_ = ln.Close() // removes the socket file
	}
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
