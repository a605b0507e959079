package vmagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"time"
)

// The channel handshake. A virtio-serial port is one byte stream for the
// guest's whole life: bytes a host wrote and the guest had not read when
// that host went away are still there for the next session, and after a
// VM restore the guest may not have noticed the old host leave before the
// new one starts writing. gRPC cannot recover from a stream that starts
// mid-message, so each session starts by synchronising:
//
//	host:  "BERTH-AGENT-HELLO <nonce>\n"   (repeated every second until answered)
//	guest: "BERTH-AGENT-READY <nonce>\n"   (once, to the first hello it finds)
//
// Each side discards whatever precedes what it waits for; the guest also
// discards repeated hellos until the host's HTTP/2 preface. A host that
// sends no hello (plain gRPC) still works: the guest starts the session at
// the first HTTP/2 client preface it finds.
const (
	helloMagic = "BERTH-AGENT-HELLO "
	readyMagic = "BERTH-AGENT-READY "
	h2Preface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// maxNonce bounds a hello's nonce; longer lines are noise.
	maxNonce = 64
)

// helloInterval is how often the host repeats its hello while waiting.
var helloInterval = time.Second

// Handshake synchronises a new connection to the agent (the host's side)
// and returns the connection to run gRPC on. It waits until the agent
// answers or ctx ends (a guest still booting answers once it serves), so
// bound ctx. On error the caller closes conn and dials again.
func Handshake(ctx context.Context, conn net.Conn) (net.Conn, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	nonce := hex.EncodeToString(raw[:])
	hello := []byte(helloMagic + nonce + "\n")
	want := []byte(readyMagic + nonce + "\n")

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, err := conn.Write(hello); err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-time.After(helloInterval):
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	var buf []byte
	tmp := make([]byte, 4096)
	var rest []byte
	var err error
	for {
		var n int
		n, err = conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, want); i >= 0 {
			rest, err = append([]byte(nil), buf[i+len(want):]...), nil
			break
		}
		if len(buf) > len(want) {
			buf = append(buf[:0], buf[len(buf)-len(want)+1:]...)
		}
		if err != nil {
			break
		}
	}
	close(done)
	wg.Wait()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("agent handshake: %w", err)
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &prefixConn{Conn: conn, prefix: rest}, nil
}

// AcceptHandshake synchronises a session on the agent's side: it reads
// conn until the host's hello (answered once) and then its HTTP/2
// preface, or a preface alone, discarding everything else, and returns the
// connection positioned at the preface. It fails when conn does (the host
// went away); the caller then waits for the next host.
func AcceptHandshake(conn net.Conn) (net.Conn, error) {
	var buf []byte
	tmp := make([]byte, 4096)
	answered := false
	keep := max(len(helloMagic), len(h2Preface)) - 1
	for {
		// Consume every complete hello and look for the preface.
		for {
			hi := bytes.Index(buf, []byte(helloMagic))
			pi := bytes.Index(buf, []byte(h2Preface))
			if pi >= 0 && (hi < 0 || pi < hi) {
				return &prefixConn{Conn: conn, prefix: append([]byte(nil), buf[pi:]...)}, nil
			}
			if hi < 0 {
				if len(buf) > keep {
					buf = append(buf[:0], buf[len(buf)-keep:]...)
				}
				break
			}
			line := buf[hi+len(helloMagic):]
			nl := bytes.IndexByte(line, '\n')
			if nl < 0 && len(line) <= maxNonce {
				buf = append(buf[:0], buf[hi:]...) // wait for the rest of the line
				break
			}
			if nl < 0 || nl > maxNonce || !validNonce(line[:nl]) {
				buf = append(buf[:0], buf[hi+1:]...) // noise that looked like a hello
				continue
			}
			if !answered {
				if _, err := conn.Write([]byte(readyMagic + string(line[:nl]) + "\n")); err != nil {
					return nil, fmt.Errorf("answer the host's hello: %w", err)
				}
				answered = true
			}
			buf = append(buf[:0], line[nl+1:]...)
		}
		n, err := conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil && n == 0 {
			return nil, fmt.Errorf("wait for the host's hello: %w", err)
		}
	}
}

func validNonce(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// prefixConn replays prefix before reading from Conn.
type prefixConn struct {
	net.Conn
	mu     sync.Mutex
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(b)
}

// SyncListener runs AcceptHandshake on every connection l yields, so the
// gRPC server only ever sees synchronised sessions; a connection whose
// handshake fails is closed and the next one awaited.
func SyncListener(l net.Listener) net.Listener { return &syncListener{Listener: l} }

type syncListener struct {
	net.Listener
	mu      sync.Mutex
	pending net.Conn
	closed  bool
}

func (l *syncListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		l.pending = c
		l.mu.Unlock()
		sc, err := AcceptHandshake(c)
		l.mu.Lock()
		l.pending = nil
		closed := l.closed
		l.mu.Unlock()
		if err == nil && !closed {
			return sc, nil
		}
		c.Close()
		if closed {
			return nil, net.ErrClosed
		}
	}
}

// Close also ends a handshake in progress.
func (l *syncListener) Close() error {
	l.mu.Lock()
	l.closed = true
	p := l.pending
	l.mu.Unlock()
	if p != nil {
		p.Close()
	}
	return l.Listener.Close()
}
