package vmagent

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// pair returns the two ends of a buffered stream (a unix socket pair), as
// the host's socket and the guest's port are.
func pair(t *testing.T) (host, guest net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

// TestHandshakeSkipsStaleBytes: a session starts clean although the guest
// side holds bytes of an earlier host (even a half hello and a stray
// preface-looking line), the host hello repeats before the guest listens,
// and stale guest output precedes the answer.
func TestHandshakeSkipsStaleBytes(t *testing.T) {
	old := helloInterval
	helloInterval = 20 * time.Millisecond
	t.Cleanup(func() { helloInterval = old })
	host, guest := pair(t)
	if _, err := host.Write([]byte("\x00\x00\x04\x08 stale frame PRI * HTTP/1.1 BERTH-AGENT-HELLO zz\nBERTH-AGENT-HELLO ")); err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Write([]byte("GOAWAY from an old session BERTH-AGENT-READY 00\n")); err != nil {
		t.Fatal(err)
	}
	type res struct {
		c   net.Conn
		err error
	}
	hostDone := make(chan res, 1)
	go func() {
		c, err := Handshake(context.Background(), host)
		hostDone <- res{c, err}
	}()
	time.Sleep(100 * time.Millisecond) // several hellos queue up
	guestDone := make(chan res, 1)
	go func() {
		c, err := AcceptHandshake(guest)
		guestDone <- res{c, err}
	}()
	r := <-hostDone
	if r.err != nil {
		t.Fatal(r.err)
	}
	// An HTTP/2 client speaks first; the guest's session starts at its
	// preface, with every hello before it removed.
	if _, err := r.c.Write([]byte(h2Preface + "client-frames")); err != nil {
		t.Fatal(err)
	}
	g := <-guestDone
	if g.err != nil {
		t.Fatal(g.err)
	}
	if got := readN(t, g.c, len(h2Preface)+len("client-frames")); got != h2Preface+"client-frames" {
		t.Errorf("guest read %q, want the preface and frames with every hello removed", got)
	}
	if _, err := g.c.Write([]byte("server-settings")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, r.c, len("server-settings")); got != "server-settings" {
		t.Errorf("host read %q", got)
	}
}

// TestAcceptHandshakePlainGRPC: a host that sends no hello still gets a
// session starting at its HTTP/2 preface.
func TestAcceptHandshakePlainGRPC(t *testing.T) {
	host, guest := pair(t)
	if _, err := host.Write([]byte("leftover bytes" + h2Preface + "frames")); err != nil {
		t.Fatal(err)
	}
	gc, err := AcceptHandshake(guest)
	if err != nil {
		t.Fatal(err)
	}
	if got := readN(t, gc, len(h2Preface)+6); got != h2Preface+"frames" {
		t.Errorf("guest read %q", got)
	}
}

func TestHandshakeFailures(t *testing.T) {
	host, guest := pair(t)
	// The host goes away before it said anything: the guest's side fails.
	done := make(chan error, 1)
	go func() { _, err := AcceptHandshake(guest); done <- err }()
	host.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("AcceptHandshake succeeded on a closed connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AcceptHandshake did not notice the host leaving")
	}
	// No agent answers: the host's side ends with its context.
	host2, _ := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Handshake(ctx, host2); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "handshake") {
		t.Errorf("Handshake without an agent = %v, want a deadline error", err)
	}
}

// TestClientOnABrokenChannel: calls on a connection whose other end is
// gone fail with ErrUnavailable (the caller dials again).
func TestClientOnABrokenChannel(t *testing.T) {
	host, guest := pair(t)
	guest.Close()
	c, err := NewClient(host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		if _, err := c.Info(ctx); !errdefs.IsUnavailable(err) {
			t.Errorf("Info on a broken channel = %v, want ErrUnavailable", err)
		}
	}
}
