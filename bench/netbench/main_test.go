package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// serveOnLoopback runs the serve loop's per-connection handler on a
// loopback listener and returns its address.
func serveOnLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveConn(c)
		}
	}()
	return l.Addr().String()
}

func TestSendChecksBytesAndPeer(t *testing.T) {
	addr := serveOnLoopback(t)
	size := strconv.Itoa(3<<20 + 17) // not a multiple of the buffer
	if err := sendCmd([]string{"-addr", addr, "-bytes", size, "-want-peer", "127.0.0.1"}); err != nil {
		t.Fatalf("send over loopback: %v", err)
	}
	err := sendCmd([]string{"-addr", addr, "-bytes", "1000", "-want-peer", "127.0.0.2"})
	if err == nil || !strings.Contains(err.Error(), "saw source 127.0.0.1, want 127.0.0.2") {
		t.Fatalf("send with the wrong -want-peer: got %v, want an error naming both sources", err)
	}
}

func TestSendFailsWhenTheServerCountsOtherwise(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		_, _ = c.Write([]byte("12 127.0.0.1\n")) // a short count
	}()
	err = sendCmd([]string{"-addr", l.Addr().String(), "-bytes", "100000"})
	if err == nil || !strings.Contains(err.Error(), "received 12 bytes, sent 100000") {
		t.Fatalf("got %v, want a byte-count mismatch", err)
	}
}

func TestSendRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-bytes", "10"}, {"-addr", "127.0.0.1:1"}, {"-addr", "127.0.0.1:1", "-bytes", "10", "-want-peer", "nope"}} {
		if err := sendCmd(args); err == nil {
			t.Errorf("send %v: no error", args)
		}
	}
}
