package netd

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Limits of the proxies.
const (
	// maxTCPConns bounds the connections one TCP listener proxies at
	// once; more are closed on accept.
	maxTCPConns = 1024
	// dialTimeout bounds connecting to a container.
	dialTimeout = 10 * time.Second
	// maxUDPFlows bounds the clients one UDP listener tracks; a datagram
	// from a new client beyond it is dropped.
	maxUDPFlows = 1024
	// udpBuf is the datagram buffer (the largest UDP payload).
	udpBuf = 64 << 10
)

// udpIdleTimeout ends a UDP flow with no traffic either way for this long
// (a variable for tests).
var udpIdleTimeout = 60 * time.Second

// proxy is one published port's listener.
type proxy interface {
	close()
}

func startProxy(p Port, log hclog.Logger) (proxy, error) {
	if p.proto() == "udp" {
		return startUDP(p, log)
	}
	return startTCP(p, log)
}

// tcpProxy accepts on the host and splices each connection to the target,
// keeping half-closes (a client's shutdown(SHUT_WR) reaches the container
// and the other way round).
type tcpProxy struct {
	l      net.Listener
	target string
	log    hclog.Logger
	sem    chan struct{}

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startTCP(p Port, log hclog.Logger) (*tcpProxy, error) {
	l, err := net.Listen("tcp", p.listenAddr())
	if err != nil {
		return nil, err
	}
	t := &tcpProxy{l: l, target: p.target(), log: log, sem: make(chan struct{}, maxTCPConns), conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

func (t *tcpProxy) accept() {
	defer t.wg.Done()
	for {
		c, err := t.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		select {
		case t.sem <- struct{}{}:
		default:
			t.log.Warn("too many connections; refusing one", "limit", maxTCPConns, "client", c.RemoteAddr())
			c.Close()
			continue
		}
		if !t.track(c) {
			<-t.sem
			c.Close()
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer func() { <-t.sem }()
			defer t.untrack(c)
			t.serve(c)
		}()
	}
}

func (t *tcpProxy) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tcpProxy) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *tcpProxy) serve(client net.Conn) {
	defer client.Close()
	backend, err := net.DialTimeout("tcp", t.target, dialTimeout)
	if err != nil {
		t.log.Debug("dial target failed", "target", t.target, "error", err)
		return
	}
	if !t.track(backend) {
		backend.Close()
		return
	}
	defer t.untrack(backend)
	defer backend.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // TCPConn to TCPConn: splice(2)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(backend, client)
	go pipe(client, backend)
	<-done
	<-done
}

func (t *tcpProxy) close() {
	t.mu.Lock()
	t.closed = true
	_ = t.l.Close()
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// udpProxy relays datagrams: each client address gets its own socket to
// the target (a flow), so replies find their way back; a flow idle for
// udpIdleTimeout ends.
type udpProxy struct {
	pc     net.PacketConn
	target *net.UDPAddr
	log    hclog.Logger

	mu     sync.Mutex
	flows  map[string]*udpFlow
	closed bool
	wg     sync.WaitGroup
}

type udpFlow struct {
	conn *net.UDPConn
	mu   sync.Mutex
	last time.Time
}

func (f *udpFlow) touch() {
	f.mu.Lock()
	f.last = time.Now()
	f.mu.Unlock()
}

func (f *udpFlow) idleFor() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Since(f.last)
}

func startUDP(p Port, log hclog.Logger) (*udpProxy, error) {
	target, err := net.ResolveUDPAddr("udp", p.target())
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", p.listenAddr())
	if err != nil {
		return nil, err
	}
	u := &udpProxy{pc: pc, target: target, log: log, flows: map[string]*udpFlow{}}
	u.wg.Add(1)
	go u.read()
	return u, nil
}

func (u *udpProxy) read() {
	defer u.wg.Done()
	buf := make([]byte, udpBuf)
	for {
		n, from, err := u.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		f := u.flow(from)
		if f == nil {
			continue
		}
		f.touch()
		if _, err := f.conn.Write(buf[:n]); err != nil {
			u.log.Debug("udp to target failed", "target", u.target, "error", err)
		}
	}
}

// flow returns from's flow, making it (and its reply pump) when new; nil
// when the proxy is closed, at its flow limit, or the dial fails.
func (u *udpProxy) flow(from net.Addr) *udpFlow {
	key := from.String()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	if f, ok := u.flows[key]; ok {
		return f
	}
	if len(u.flows) >= maxUDPFlows {
		u.log.Warn("too many udp flows; dropping a datagram", "limit", maxUDPFlows, "client", key)
		return nil
	}
	c, err := net.DialUDP("udp", nil, u.target)
	if err != nil {
		u.log.Debug("udp dial failed", "target", u.target, "error", err)
		return nil
	}
	f := &udpFlow{conn: c, last: time.Now()}
	u.flows[key] = f
	u.wg.Add(1)
	go u.replies(key, from, f)
	return f
}

// replies pumps the target's answers of one flow back to its client until
// the flow idles out or the proxy closes.
func (u *udpProxy) replies(key string, client net.Addr, f *udpFlow) {
	defer u.wg.Done()
	defer func() {
		u.mu.Lock()
		if u.flows[key] == f {
			delete(u.flows, key)
		}
		u.mu.Unlock()
		f.conn.Close()
	}()
	buf := make([]byte, udpBuf)
	for {
		_ = f.conn.SetReadDeadline(time.Now().Add(udpIdleTimeout))
		n, err := f.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if f.idleFor() < udpIdleTimeout {
					continue // the client spoke meanwhile
				}
				return
			}
			// ECONNREFUSED after an ICMP port unreachable (nothing
			// listens yet): the flow stays until it idles out.
			if f.idleFor() >= udpIdleTimeout {
				return
			}
			continue
		}
		f.touch()
		if _, err := u.pc.WriteTo(buf[:n], client); err != nil {
			u.log.Debug("udp to client failed", "client", client, "error", err)
		}
	}
}

func (u *udpProxy) close() {
	u.mu.Lock()
	u.closed = true
	_ = u.pc.Close()
	for _, f := range u.flows {
		_ = f.conn.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}
