// Command netbench is the measuring tool of the network benchmarks
// (scripts/bench-net.sh, the net-* entries of bench/benchmarks.go). It is
// built static (CGO_ENABLED=0) so the same binary runs on the host and,
// bind-mounted, inside a container of the demo image.
//
//	netbench serve -addr :5001
//	    accept connections forever; read each to EOF, then answer one line
//	    "BYTES PEER-IP\n" (what arrived, and the source address seen) and
//	    close.
//	netbench send -addr IP:PORT -bytes N [-netns PATH] [-want-peer IP]
//	    connect (from inside the network namespace PATH, e.g.
//	    /proc/PID/ns/net, when given), write N zero bytes, half-close, wait
//	    for the server's line and check that all N arrived and, with
//	    -want-peer, that the server saw that source address (which proves
//	    the path: a proxy's connection comes from the gateway, a DNATed one
//	    from the host address). Exits non-zero on any mismatch; prints the
//	    throughput it saw to stderr.
//	netbench cleanup -bridge NAME -subnet CIDR
//	    fallback teardown when a daemon is gone: removes (internal/netdp)
//	    every nft rule of the berth network on that bridge and subnet, the
//	    DNAT rules of containers in the subnet and the bridge, then fails if
//	    any of it is still there.
//
// The runner times the whole send, so a run's wall time is the transfer
// (and a Go process start, paid equally by both sides of a benchmark).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// bufSize is the size of every read and write: large enough that syscall
// count does not bound a loopback transfer.
const bufSize = 1 << 20

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serveCmd(os.Args[2:])
	case "send":
		err = sendCmd(os.Args[2:])
	case "cleanup":
		err = cleanupCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: netbench serve|send|cleanup [flags] (see the package doc)")
	os.Exit(2)
}

func serveCmd(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "", "TCP address to listen on, e.g. :5001 or 127.0.0.1:35101")
	_ = fs.Parse(args)
	if *addr == "" {
		return errors.New("serve: -addr is required")
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: listen %s: %w", *addr, err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return fmt.Errorf("serve: accept on %s: %w", *addr, err)
		}
		go serveConn(c)
	}
}

// serveConn drains c and answers with the byte count and the peer's IP.
func serveConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, bufSize)
	var n int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "netbench serve: read from %s: %v\n", c.RemoteAddr(), err)
			return
		}
	}
	peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	if _, err := fmt.Fprintf(c, "%d %s\n", n, peer); err != nil {
		fmt.Fprintf(os.Stderr, "netbench serve: answer %s: %v\n", c.RemoteAddr(), err)
	}
}

func sendCmd(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	addr := fs.String("addr", "", "server address IP:PORT")
	size := fs.Int64("bytes", 0, "bytes to send")
	nsPath := fs.String("netns", "", "network namespace to connect from (e.g. /proc/PID/ns/net)")
	wantPeer := fs.String("want-peer", "", "source IP the server must have seen")
	_ = fs.Parse(args)
	if *addr == "" || *size <= 0 {
		return errors.New("send: -addr and a positive -bytes are required")
	}
	if *wantPeer != "" {
		if _, err := netip.ParseAddr(*wantPeer); err != nil {
			return fmt.Errorf("send: -want-peer %q: %w", *wantPeer, err)
		}
	}
	if *nsPath != "" {
		if err := enterNetns(*nsPath); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", *addr, 10*time.Second)
	if err != nil {
		return fmt.Errorf("send: connect %s: %w", *addr, err)
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	buf := make([]byte, bufSize)
	for left := *size; left > 0; {
		k := min(left, int64(len(buf)))
		w, err := tc.Write(buf[:k])
		left -= int64(w)
		if err != nil {
			return fmt.Errorf("send: write to %s: %w", *addr, err)
		}
	}
	if err := tc.CloseWrite(); err != nil {
		return fmt.Errorf("send: half-close %s: %w", *addr, err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		return fmt.Errorf("send: no answer from %s after sending %d bytes: %w", *addr, *size, err)
	}
	elapsed := time.Since(start)
	f := strings.Fields(line)
	if len(f) != 2 {
		return fmt.Errorf("send: malformed answer %q from %s", line, *addr)
	}
	got, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || got != *size {
		return fmt.Errorf("send: server at %s received %s bytes, sent %d", *addr, f[0], *size)
	}
	if *wantPeer != "" && f[1] != *wantPeer {
		return fmt.Errorf("send: server at %s saw source %s, want %s (the traffic took another path)", *addr, f[1], *wantPeer)
	}
	fmt.Fprintf(os.Stderr, "%d bytes to %s in %v: %.0f MB/s (server saw %s)\n",
		*size, *addr, elapsed.Round(time.Millisecond), float64(*size)/elapsed.Seconds()/1e6, f[1])
	return nil
}

func cleanupCmd(args []string) error {
	fs := flag.NewFlagSet("cleanup", flag.ExitOnError)
	bridge := fs.String("bridge", "", "bridge of the berth network to remove")
	subnet := fs.String("subnet", "", "its subnet (CIDR)")
	_ = fs.Parse(args)
	pfx, err := netip.ParsePrefix(*subnet)
	if err != nil || *bridge == "" {
		return fmt.Errorf("cleanup: need -bridge and a CIDR -subnet (got %q, %q)", *bridge, *subnet)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return cleanup(ctx, *bridge, pfx.Masked())
}
