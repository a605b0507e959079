//go:build linux

package boot

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// FindPort returns the /dev node of the virtio-serial port called name
// (/sys/class/virtio-ports/vportNpM/name), waiting up to timeout for the
// driver to create it.
func FindPort(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %q after %v (ports: %v)", name, timeout, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PortListener is a net.Listener over one virtio-serial port: Accept
// yields the port as a connection while the host is connected; once that
// connection is closed (gRPC closes it when a read returns EOF, the host
// having gone), the next Accept waits until the host is back (poll stops
// reporting POLLHUP) and yields the port again. It never fails on its own.
type PortListener struct {
	log  hclog.Logger
	path string
	f    *os.File

	mu     sync.Mutex
	active *portConn
	free   chan struct{} // receives when the active conn closed
	closed chan struct{}
	once   sync.Once
}

// ListenPort opens the port at path (non-blocking, so reads and writes go
// through Go's poller and honour deadlines).
func ListenPort(log hclog.Logger, path string) (*PortListener, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	l := &PortListener{log: log, path: path, f: os.NewFile(uintptr(fd), path),
		free: make(chan struct{}, 1), closed: make(chan struct{})}
	l.free <- struct{}{}
	return l, nil
}

// Accept waits until no connection is active and the host is connected.
func (l *PortListener) Accept() (net.Conn, error) {
	select {
	case <-l.free:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	waited := false
	for {
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
		}
		connected, err := l.hostConnected()
		if err != nil {
			l.free <- struct{}{}
			return nil, err
		}
		if connected {
			break
		}
		if !waited {
			l.log.Info("waiting for the host to connect", "port", l.path)
			waited = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = l.f.SetDeadline(time.Time{})
	c := &portConn{l: l, done: make(chan struct{})}
	l.mu.Lock()
	l.active = c
	l.mu.Unlock()
	l.log.Info("host connected", "port", l.path)
	return c, nil
}

// hostConnected polls the port: POLLHUP means no host holds the other end.
func (l *PortListener) hostConnected() (bool, error) {
	fds := []unix.PollFd{{Fd: int32(l.f.Fd()), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll %s: %w", l.path, err)
		}
		return fds[0].Revents&unix.POLLHUP == 0, nil
	}
}

// Close stops Accept and closes the port.
func (l *PortListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	l.mu.Lock()
	c := l.active
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
	return l.f.Close()
}

// Addr names the port.
func (l *PortListener) Addr() net.Addr { return portAddr(l.path) }

type portAddr string

func (a portAddr) Network() string { return "virtio-serial" }
func (a portAddr) String() string  { return string(a) }

// portConn is one host session on the port.
type portConn struct {
	l    *PortListener
	once sync.Once
	done chan struct{}
	// readErr is the first read error of the session (EOF: the host went
	// away), logged when it ends.
	errMu    sync.Mutex
	readErr  error
	read     int64
	writeErr error
	written  int64
}

func (c *portConn) Read(b []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	n, err := c.l.f.Read(b)
	c.errMu.Lock()
	c.read += int64(n)
	if err != nil && c.readErr == nil {
		c.readErr = err
	}
	c.errMu.Unlock()
	if err != nil {
		select {
		case <-c.done:
			return n, net.ErrClosed
		default:
		}
	}
	return n, err
}

func (c *portConn) Write(b []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	n, err := c.l.f.Write(b)
	c.errMu.Lock()
	c.written += int64(n)
	if err != nil && c.writeErr == nil {
		c.writeErr = err
	}
	c.errMu.Unlock()
	return n, err
}

// Close ends this session: blocked reads and writes return (a past
// deadline wakes them), and the listener may yield the port again.
func (c *portConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		_ = c.l.f.SetDeadline(time.Unix(1, 0))
		c.l.mu.Lock()
		if c.l.active == c {
			c.l.active = nil
		}
		c.l.mu.Unlock()
		c.errMu.Lock()
		rerr, read, werr, written := c.readErr, c.read, c.writeErr, c.written
		c.errMu.Unlock()
		c.l.log.Info("host session ended", "port", c.l.path, "read_bytes", read, "read_error", rerr,
			"written_bytes", written, "write_error", werr)
		c.l.free <- struct{}{}
	})
	return nil
}

func (c *portConn) LocalAddr() net.Addr  { return c.l.Addr() }
func (c *portConn) RemoteAddr() net.Addr { return portAddr("host") }

// Deadlines of a session apply to the port while the session lasts.
func (c *portConn) SetDeadline(t time.Time) error      { return c.l.f.SetDeadline(t) }
func (c *portConn) SetReadDeadline(t time.Time) error  { return c.l.f.SetReadDeadline(t) }
func (c *portConn) SetWriteDeadline(t time.Time) error { return c.l.f.SetWriteDeadline(t) }

// ListenVsock listens on AF_VSOCK port (any CID): the vz transport.
func ListenVsock(port uint32) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind vsock port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on vsock port %d: %w", port, err)
	}
	return &vsockListener{f: os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d", port)), port: port}, nil
}

type vsockListener struct {
	f    *os.File
	port uint32
}

func (l *vsockListener) Accept() (net.Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return !errors.Is(aerr, unix.EAGAIN)
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, fmt.Errorf("accept on vsock port %d: %w", l.port, aerr)
	}
	return &fileConn{File: os.NewFile(uintptr(nfd), "vsock-conn"), local: l.Addr()}, nil
}

func (l *vsockListener) Close() error   { return l.f.Close() }
func (l *vsockListener) Addr() net.Addr { return portAddr(fmt.Sprintf("vsock:%d", l.port)) }

// fileConn is a connected socket as a net.Conn.
type fileConn struct {
	*os.File
	local net.Addr
}

func (c *fileConn) LocalAddr() net.Addr  { return c.local }
func (c *fileConn) RemoteAddr() net.Addr { return portAddr("host") }
