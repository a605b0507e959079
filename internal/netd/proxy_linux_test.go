package netd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netns"

	"github.com/berth-dev/berth/internal/netdp"
)

// TestProxiesIntoAContainerNetns runs the proxies against servers in a
// network namespace attached to a real berth network (netdp), as the
// helper serves `-p 127.0.0.1:P:C`. Root: it makes a bridge, a veth and a
// netns; traffic stays on loopback and in that netns.
func TestProxiesIntoAContainerNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a bridge, a veth and a network namespace (CI runs as root)")
	}
	ctx := context.Background()
	idb := make([]byte, 32)
	_, _ = rand.Read(idb)
	id := hex.EncodeToString(idb)
	n := netdp.Network{ID: id, Bridge: "bt-" + id[:12], Subnet: netip.MustParsePrefix("10.213.120.0/24"),
		Gateway: netip.MustParseAddr("10.213.120.1")}
	if err := netdp.EnsureNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netdp.RemoveNetwork(ctx, n); err != nil {
			t.Error(err)
		}
	})
	// The "container": a netns held by an fd.
	nsCh := make(chan netns.NsHandle)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		h, err := netns.New()
		if err != nil {
			t.Error(err)
		}
		nsCh <- h
	}()
	ns := <-nsCh
	defer ns.Close()
	if _, err := netdp.AttachNetns(ctx, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns)), netdp.Interface{
		ContainerID: id, Name: "eth0", Bridge: n.Bridge, Addresses: []netip.Prefix{netip.MustParsePrefix("10.213.120.2/24")},
		Gateway: n.Gateway}); err != nil {
		t.Fatal(err)
	}
	defer netdp.DetachNetns(ctx, id)

	// Servers inside: TCP half-close echo and UDP echo.
	var tl net.Listener
	var up net.PacketConn
	inNS := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			inNS <- err
			return
		}
		var err error
		if tl, err = net.Listen("tcp", "10.213.120.2:8080"); err != nil {
			inNS <- err
			return
		}
		up, err = net.ListenPacket("udp", "10.213.120.2:5353")
		inNS <- err
	}()
	if err := <-inNS; err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	defer up.Close()
	go serveHalfClose(tl)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := up.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = up.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()

	pt, pu := freePort(t), freePort(t)
	_, st := runHelper(t, State{Network: "px", DNSAddr: "-", Ports: []Port{
		{HostIP: "127.0.0.1", HostPort: pt, Protocol: "tcp", TargetIP: "10.213.120.2", TargetPort: 8080},
		{HostIP: "127.0.0.1", HostPort: pu, Protocol: "udp", TargetIP: "10.213.120.2", TargetPort: 5353},
	}})
	for _, p := range st.Ports {
		if p.Error != "" {
			t.Fatalf("port %d: %s", p.HostPort, p.Error)
		}
	}
	got, err := roundTrip("127.0.0.1:"+itoa(pt), "through the proxy")
	if err != nil || got != "got:through the proxy" {
		t.Fatalf("tcp: %q %v", got, err)
	}
	// Two UDP clients each get their own replies.
	for i := range 2 {
		c, err := net.Dial("udp", "127.0.0.1:"+itoa(pu))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := fmt.Sprintf("client %d", i)
		var reply string
		for try := 0; try < 20 && reply == ""; try++ {
			_, _ = c.Write([]byte(msg))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 100)
			if n, err := c.Read(buf); err == nil {
				reply = string(buf[:n])
			}
		}
		if reply != "echo:"+msg {
			t.Errorf("udp client %d: reply %q", i, reply)
		}
	}
}

// TestUDPFlowsIdleOut checks a flow ends after its idle timeout.
func TestUDPFlowsIdleOut(t *testing.T) {
	old := udpIdleTimeout
	udpIdleTimeout = 200 * time.Millisecond
	defer func() { udpIdleTimeout = old }()
	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteTo(buf[:n], from)
		}
	}()
	port := portOf(echo.LocalAddr().String())
	u, err := startUDP(Port{HostIP: "127.0.0.1", HostPort: freePort(t), Protocol: "udp", TargetIP: "127.0.0.1", TargetPort: port}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	c, err := net.Dial("udp", u.pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("x"))
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("echo: %q %v", buf[:n], err)
	}
	flows := func() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.flows) }
	if flows() != 1 {
		t.Fatalf("%d flows, want 1", flows())
	}
	deadline := time.Now().Add(30 * time.Second)
	for flows() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if flows() != 0 {
		t.Fatal("the idle flow never ended")
	}
}

// sink accepts connections and discards what it reads.
func sink(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func pushMiB(b *testing.B, addr string, mib int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	for range mib {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTCPThroughput: the same transfer over loopback directly and
// through a TCP proxy on loopback (MB/s side by side).
func BenchmarkTCPThroughput(b *testing.B) {
	target := sink(b)
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(64 << 20)
		for range b.N {
			pushMiB(b, target, 64)
		}
	})
	b.Run("proxied", func(b *testing.B) {
		tp, err := startTCP(Port{HostIP: "127.0.0.1", HostPort: freePort(b), TargetIP: "127.0.0.1", TargetPort: portOf(target)}, hclog.NewNullLogger())
		if err != nil {
			b.Fatal(err)
		}
		defer tp.close()
		b.SetBytes(64 << 20)
		b.ResetTimer()
		for range b.N {
			pushMiB(b, tp.l.Addr().String(), 64)
		}
	})
}
