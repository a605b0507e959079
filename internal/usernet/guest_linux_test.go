package usernet

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// testGuest is a guest for the unit tests without a VM: a gVisor stack of
// its own (as a guest kernel's) on one end of a datagram socketpair; the
// other end is the "NIC" the test plugs into the network — directly
// (AttachDatagram, vz's framing) or through a pump that speaks qemu's
// stream framing to the network's qemu socket, as qemu does.
type testGuest struct {
	ip    netip.Addr
	stack *stack.Stack
	nic   *os.File // the host end of the socketpair
}

func newTestGuest(t *testing.T, ip netip.Addr, mac string, gw netip.Addr) *testGuest {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC(mac)
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fds[0]}, MTU: 1500, EthernetHeader: true, Address: tcpip.LinkAddress(hw)})
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if e := s.CreateNIC(1, ep); e != nil {
		t.Fatal(e)
	}
	if e := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(ip.As4()), PrefixLen: 24}}, stack.AddressProperties{}); e != nil {
		t.Fatal(e)
	}
	onLink := netip.PrefixFrom(ip, 24).Masked()
	sub, err := tcpip.NewSubnet(tcpip.AddrFrom4(onLink.Addr().As4()), tcpip.MaskFromBytes(net.CIDRMask(24, 32)))
	if err != nil {
		t.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: sub, NIC: 1}, {Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(gw.As4()), NIC: 1}})
	// Non-blocking, so the os.File uses the poller and Close ends a Read.
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	g := &testGuest{ip: ip, stack: s, nic: os.NewFile(uintptr(fds[1]), "guest-nic")}
	t.Cleanup(func() {
		s.Close()
		g.nic.Close()
		unix.Close(fds[0])
		s.Wait()
	})
	return g
}

// attachQemu plugs the guest into the network's qemu socket at path,
// pumping frames as qemu's -netdev stream does (4-byte big-endian length,
// then the frame).
func (g *testGuest) attachQemu(t *testing.T, path string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // guest → network
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := g.nic.Read(buf)
			if err != nil {
				c.Close()
				return
			}
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			if _, err := c.Write(append(hdr[:], buf[:n]...)); err != nil {
				return
			}
		}
	}()
	go func() { // network → guest
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if _, err := io.ReadFull(c, buf[:n]); err != nil {
				return
			}
			if _, err := g.nic.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close(); g.nic.Close(); wg.Wait() })
}

// attachDatagram plugs the guest in with vz's framing (one frame per
// datagram) through AttachDatagram.
func (g *testGuest) attachDatagram(t *testing.T, n *Network) {
	t.Helper()
	c, err := net.FileConn(g.nic)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.AttachDatagram(c); err != nil {
		t.Fatal(err)
	}
}

func (g *testGuest) dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	return gonet.DialContextTCP(ctx, g.stack, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(to.Addr().As4()), Port: to.Port()}, ipv4.ProtocolNumber)
}

func (g *testGuest) listen(t *testing.T, port uint16) net.Listener {
	t.Helper()
	ln, err := gonet.ListenTCP(g.stack, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.ip.As4()), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialUDP is a UDP socket of the guest connected to to.
func (g *testGuest) dialUDP(to netip.AddrPort) (net.Conn, error) {
	return gonet.DialUDP(g.stack, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(to.Addr().As4()), Port: to.Port()}, ipv4.ProtocolNumber)
}

// retry runs f until it succeeds or a generous deadline passes (the first
// packets wait for ARP; the test machine is loaded).
func retry(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}
