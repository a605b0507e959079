package usernet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	mdns "github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/berth-dev/berth/sdk/errdefs"
)

var (
	testSubnet  = netip.MustParsePrefix("10.0.9.0/24")
	testGateway = netip.MustParseAddr("10.0.9.1")
	guestA      = netip.MustParseAddr("10.0.9.15")
	guestB      = netip.MustParseAddr("10.0.9.16")
)

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "usernet", Output: testWriter{t}, Level: hclog.Debug})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// fakeUpstream is a DNS server on 127.0.0.1 standing in for the host's
// resolvers: it answers name → ip and NXDOMAIN otherwise.
func fakeUpstream(t *testing.T, name, ip string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		if q.Question[0].Name == mdns.Fqdn(name) && q.Question[0].Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR(mdns.Fqdn(name) + " 60 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// hostServer is a TCP server on the host's 127.0.0.1 that greets each
// client with greeting.
func hostServer(t *testing.T, greeting string) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, greeting)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

func lookupA(ctx context.Context, g *testGuest, name string) ([]string, int, error) {
	c, err := g.dialUDP(netip.AddrPortFrom(testGateway, 53))
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	dc := &mdns.Conn{Conn: c}
	if err := dc.WriteMsg(q); err != nil {
		return nil, 0, err
	}
	r, err := dc.ReadMsg()
	if err != nil {
		return nil, 0, err
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out, r.Rcode, nil
}

// TestNetwork runs two guests (gVisor stacks standing in for guest
// kernels; no root, no VM) on one user-mode network, one attached through
// the qemu stream socket, one with vz's datagram framing, and checks what
// a VM needs: the host's loopback through the gateway (NAT), DNS answers
// from the network's records and from the upstream the test runs on
// 127.0.0.1, guest to guest over the switch, and published ports.
func TestNetwork(t *testing.T) {
	up := fakeUpstream(t, "fwd.example.test", "192.0.2.7")
	n, err := New(Config{Subnet: testSubnet, Gateway: testGateway, Upstreams: []string{up}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	dir := t.TempDir()
	sock := filepath.Join(dir, "qemu.sock")
	if err := n.ListenQemu(sock); err != nil {
		t.Fatal(err)
	}
	a := newTestGuest(t, guestA, "02:be:0a:00:09:0f", testGateway)
	a.attachQemu(t, sock)
	b := newTestGuest(t, guestB, "02:be:0a:00:09:10", testGateway)
	b.attachDatagram(t, n)
	n.SetRecords(map[string][]netip.Addr{"Web": {guestB}, "web.": {guestB}, "db": {guestA}})

	t.Run("host loopback through the gateway", func(t *testing.T) {
		ln := hostServer(t, "hello from the host")
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		for _, g := range []*testGuest{a, b} {
			retry(t, "guest "+g.ip.String()+" dials the gateway", func(ctx context.Context) error {
				c, err := g.dial(ctx, netip.AddrPortFrom(testGateway, port))
				if err != nil {
					return err
				}
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return err
				}
				if line != "hello from the host\n" {
					return fmt.Errorf("got %q", line)
				}
				return nil
			})
		}
	})

	t.Run("host loopback through the gateway, udp", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, 1500)
			for {
				k, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(strings.ToUpper(string(buf[:k]))), from)
			}
		}()
		port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
		retry(t, "udp to the host's loopback", func(ctx context.Context) error {
			c, err := a.dialUDP(netip.AddrPortFrom(testGateway, port))
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("hi")); err != nil {
				return err
			}
			buf := make([]byte, 16)
			k, err := c.Read(buf)
			if err != nil {
				return err
			}
			if string(buf[:k]) != "HI" {
				return fmt.Errorf("got %q", buf[:k])
			}
			return nil
		})
	})

	t.Run("dns", func(t *testing.T) {
		for name, want := range map[string]string{"web": guestB.String(), "DB.": guestA.String(), "fwd.example.test": "192.0.2.7"} {
			retry(t, "lookup "+name, func(ctx context.Context) error {
				got, rcode, err := lookupA(ctx, a, name)
				if err != nil {
					return err
				}
				if rcode != mdns.RcodeSuccess || len(got) != 1 || got[0] != want {
					return fmt.Errorf("got %v rcode %d, want %s", got, rcode, want)
				}
				return nil
			})
		}
		retry(t, "lookup of an unknown name", func(ctx context.Context) error {
			got, rcode, err := lookupA(ctx, b, "nope.example.test")
			if err != nil {
				return err
			}
			if rcode != mdns.RcodeNameError || len(got) != 0 {
				return fmt.Errorf("got %v rcode %d, want NXDOMAIN", got, rcode)
			}
			return nil
		})
		n.SetRecords(map[string][]netip.Addr{"db": {guestA}}) // web removed
		retry(t, "lookup of a removed record", func(ctx context.Context) error {
			_, rcode, err := lookupA(ctx, a, "web")
			if err != nil {
				return err
			}
			if rcode != mdns.RcodeNameError {
				return fmt.Errorf("rcode %d, want NXDOMAIN", rcode)
			}
			return nil
		})
	})

	t.Run("guest to guest", func(t *testing.T) {
		ln := b.listen(t, 7000)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, "hello from b")
				c.Close()
			}
		}()
		retry(t, "a dials b", func(ctx context.Context) error {
			c, err := a.dial(ctx, netip.AddrPortFrom(guestB, 7000))
			if err != nil {
				return err
			}
			defer c.Close()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "hello from b\n" {
				return fmt.Errorf("got %q, %v", line, err)
			}
			return nil
		})
	})

	t.Run("published port", func(t *testing.T) {
		ln := a.listen(t, 80)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "hello from a")
		})}
		go srv.Serve(ln)
		defer srv.Close()
		hp := freePort(t)
		p := Port{HostIP: "127.0.0.1", HostPort: hp, GuestIP: guestA, GuestPort: 80}
		if err := n.Publish(p); err != nil {
			t.Fatal(err)
		}
		if err := n.Publish(p); err != nil {
			t.Fatalf("publishing the same mapping again: %v", err)
		}
		other := p
		other.GuestIP = guestB
		if err := n.Publish(other); !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Fatalf("a second mapping of the host port: %v", err)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/", hp)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		retry(t, "GET the published port", func(ctx context.Context) error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "hello from a" {
				return fmt.Errorf("body %q", body)
			}
			return nil
		})
		if got := n.Ports(); len(got) != 1 || got[0] != p {
			t.Fatalf("Ports() = %v", got)
		}
		if err := n.Unpublish(p); err != nil {
			t.Fatal(err)
		}
		if err := n.Unpublish(p); err != nil {
			t.Fatalf("second unpublish: %v", err)
		}
		// The host port is free again.
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", hp))
		if err != nil {
			t.Fatalf("host port still held after Unpublish: %v", err)
		}
		l.Close()
	})

	t.Run("published udp port", func(t *testing.T) {
		pc, err := gonet.DialUDP(a.stack, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(guestA.As4()), Port: 5353}, nil, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() { // echo, upper-cased
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(strings.ToUpper(string(buf[:n]))), from)
			}
		}()
		hp := freeUDPPort(t)
		p := Port{HostIP: "127.0.0.1", HostPort: hp, GuestIP: guestA, GuestPort: 5353, Protocol: "udp"}
		if err := n.Publish(p); err != nil {
			t.Fatal(err)
		}
		defer n.Unpublish(p)
		retry(t, "udp round trip through the published port", func(ctx context.Context) error {
			c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", hp))
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			buf := make([]byte, 16)
			k, err := c.Read(buf)
			if err != nil {
				return err
			}
			if string(buf[:k]) != "PING" {
				return fmt.Errorf("got %q", buf[:k])
			}
			return nil
		})
	})

	t.Run("port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		busy := uint16(l.Addr().(*net.TCPAddr).Port)
		err = n.Publish(Port{HostIP: "127.0.0.1", HostPort: busy, GuestIP: guestA, GuestPort: 80})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(busy)) {
			t.Fatalf("publishing a busy port: %v", err)
		}
		if len(n.Ports()) != 0 {
			t.Fatalf("a failed publish left %v", n.Ports())
		}
	})

	// Close frees everything: the published port, the socket.
	hp := freePort(t)
	if err := n.Publish(Port{HostIP: "127.0.0.1", HostPort: hp, GuestIP: guestA, GuestPort: 80}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("qemu socket left after Close: %v", err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", hp))
	if err != nil {
		t.Fatalf("published port held after Close: %v", err)
	}
	l.Close()
	if err := n.Publish(Port{HostIP: "127.0.0.1", HostPort: hp, GuestIP: guestA, GuestPort: 80}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no subnet":       {Config{Gateway: testGateway}, "subnet"},
		"ipv6 subnet":     {Config{Subnet: netip.MustParsePrefix("fd00::/64"), Gateway: testGateway}, "subnet"},
		"tiny subnet":     {Config{Subnet: netip.MustParsePrefix("10.0.9.0/31"), Gateway: testGateway}, "subnet"},
		"gateway outside": {Config{Subnet: testSubnet, Gateway: netip.MustParseAddr("10.0.8.1")}, "gateway \"10.0.8.1\""},
		"gateway is net":  {Config{Subnet: testSubnet, Gateway: netip.MustParseAddr("10.0.9.0")}, "gateway"},
		"mtu":             {Config{Subnet: testSubnet, Gateway: testGateway, MTU: 100}, "mtu 100"},
		"bad upstream":    {Config{Subnet: testSubnet, Gateway: testGateway, Upstreams: []string{"dns.example"}}, "upstream \"dns.example\""},
		"upstream port 0": {Config{Subnet: testSubnet, Gateway: testGateway, Upstreams: []string{"127.0.0.1:0"}}, "upstream"},
	} {
		_, err := New(tc.cfg, nil)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want InvalidArgument naming %q", name, err, tc.want)
		}
	}
	n, err := New(Config{Subnet: testSubnet, Gateway: testGateway}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for name, p := range map[string]Port{
		"no host port":     {GuestIP: guestA, GuestPort: 80},
		"guest outside":    {HostPort: 1, GuestIP: netip.MustParseAddr("10.1.0.2"), GuestPort: 80},
		"bad protocol":     {HostPort: 1, GuestIP: guestA, GuestPort: 80, Protocol: "sctp"},
		"bad host address": {HostIP: "localhost", HostPort: 1, GuestIP: guestA, GuestPort: 80},
	} {
		if err := n.Publish(p); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}
