// Package usernet is Berth's user-mode network for VMs: a virtual Ethernet
// switch with a gateway implemented in user space (gvisor-tap-vsock's
// switch and gVisor's TCP/IP stack), so VMs get a network without root, TAP
// devices, bridges or nftables — on Linux (rootless qemu) and macOS (vz).
//
// One Network per network object: every VM of the network connects to the
// same switch (frames between VMs are switched by MAC), so VMs of one
// network reach each other. The gateway address of the network is:
//
//   - the next hop: TCP and UDP to any other address leave through host
//     sockets the Network's process opens (outbound NAT);
//   - the DNS server (port 53, UDP and TCP): names set with SetRecords
//     answer from the network's records, the rest is forwarded to
//     Config.Upstreams (none: the host's resolver);
//   - the host: any other port of the gateway reaches the host's loopback
//     (127.0.0.1:port), the user-mode equivalent of host.berth.internal.
//
// Published ports (Publish) listen on the host and forward each connection
// (or UDP flow) to the guest address and port through the user-mode stack.
//
// Guests attach over unix sockets: ServeQemu accepts qemu's stream netdev
// (4-byte big-endian length before each frame; any number of VMs on one
// listener), ListenVfkit takes one vz VM's datagram socket (one frame per
// datagram, vfkit handshake; one socket path per VM). Guests get their
// address statically (the VM agent's ConfigureNetwork from the core's IPAM
// attachment): the Network runs no DHCP server.
package usernet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/containers/gvisor-tap-vsock/pkg/services/dns"
	"github.com/containers/gvisor-tap-vsock/pkg/services/forwarder"
	"github.com/containers/gvisor-tap-vsock/pkg/tap"
	"github.com/containers/gvisor-tap-vsock/pkg/transport"
	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/hashicorp/go-hclog"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// DefaultMTU is the guests' MTU when Config.MTU is 0.
const DefaultMTU = 1500

// GatewayMAC is the MAC address of every Network's gateway.
const GatewayMAC = "5a:94:ef:e4:0c:dd"

// Config describes one user-mode network.
type Config struct {
	// Subnet is the network's IPv4 subnet (the core's IPAM), e.g.
	// 10.89.0.0/24.
	Subnet netip.Prefix
	// Gateway is the gateway address inside Subnet (IPAM's .1).
	Gateway netip.Addr
	// MTU of the guests' interfaces; 0 means DefaultMTU.
	MTU int
	// Upstreams are the DNS servers, "IP" or "IP:PORT", that answer names
	// the network has no record of (berth { dns_upstreams }); empty: the
	// host's resolver.
	Upstreams []string
}

// Port is one published port: connections to HostIP:HostPort on the host
// reach GuestIP:GuestPort.
type Port struct {
	HostIP    string // "" = all addresses (0.0.0.0)
	HostPort  uint16
	GuestIP   netip.Addr
	GuestPort uint16
	Protocol  string // "tcp" (default) or "udp"
}

func (p Port) proto() types.TransportProtocol {
	if p.Protocol == "udp" {
		return types.UDP
	}
	return types.TCP
}

func (p Port) local() string {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(p.HostPort)))
}

func (p Port) String() string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%s->%s/%s", p.local(), net.JoinHostPort(p.GuestIP.String(), strconv.Itoa(int(p.GuestPort))), proto)
}

// Network is one running user-mode network. Its methods are safe for
// concurrent use.
type Network struct {
	cfg   Config
	log   hclog.Logger
	stack *stack.Stack
	sw    *tap.Switch
	fw    *forwarder.PortsForwarder
	res   *resolver

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	ports   map[string]Port         // by Port.String()
	closers []func() error          // listeners, DNS sockets, guest connections
	vfkit   map[string]func() error // ListenVfkit's sockets by path: CloseVfkit
}

// New starts the network's gateway (stack, NAT, DNS). Nothing listens on
// the host until ServeQemu, ListenVfkit or Publish. Bad configuration is
// errdefs.ErrInvalidArgument naming the field.
func New(cfg Config, log hclog.Logger) (*Network, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	res, err := newResolver(cfg.Upstreams)
	if err != nil {
		return nil, err
	}
	gw := cfg.Gateway.String()
	// The gateway answers ARP for its address only; the stack is
	// promiscuous and spoofing, so it takes every other destination too
	// (the forwarders dial them from the host).
	link, err := tap.NewLinkEndpoint(false, uint32(cfg.MTU), GatewayMAC, gw, nil)
	if err != nil {
		return nil, fmt.Errorf("usernet: gateway link: %w", err)
	}
	sw := tap.NewSwitch(false)
	link.Connect(sw)
	sw.Connect(link)

	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	n := &Network{cfg: cfg, log: log, stack: s, sw: sw, res: res, ports: map[string]Port{}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.setup(link); err != nil {
		n.Close()
		return nil, err
	}
	log.Info("user-mode network up", "subnet", cfg.Subnet, "gateway", gw, "mtu", cfg.MTU, "upstreams", cfg.Upstreams)
	return n, nil
}

func (c Config) check() error {
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 30 {
		return errdefs.InvalidArgument("usernet: subnet %q: want an IPv4 prefix of at most /30", c.Subnet)
	}
	if !c.Gateway.Is4() || !c.Subnet.Contains(c.Gateway) || c.Gateway == c.Subnet.Masked().Addr() {
		return errdefs.InvalidArgument("usernet: gateway %q: want a host address inside subnet %s", c.Gateway, c.Subnet)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return errdefs.InvalidArgument("usernet: mtu %d: want 576..65535", c.MTU)
	}
	return nil
}

func (n *Network) setup(link stack.LinkEndpoint) error {
	s := n.stack
	if err := s.CreateNIC(1, link); err != nil {
		return fmt.Errorf("usernet: nic: %s", err)
	}
	gw := tcpip.AddrFrom4(n.cfg.Gateway.As4())
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: gw.WithPrefix()}, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("usernet: gateway address: %s", err)
	}
	s.SetSpoofing(1, true)
	s.SetPromiscuousMode(1, true)
	sub := n.cfg.Subnet.Masked()
	subnet, err := tcpip.NewSubnet(tcpip.AddrFrom4(sub.Addr().As4()), tcpip.MaskFromBytes(net.CIDRMask(sub.Bits(), 32)))
	if err != nil {
		return fmt.Errorf("usernet: subnet: %w", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: 1}})

	// Outbound NAT: the gateway's own address means the host's loopback.
	nat := map[tcpip.Address]tcpip.Address{gw: tcpip.AddrFrom4([4]byte{127, 0, 0, 1})}
	var natMu sync.Mutex
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, forwarder.TCP(s, nat, &natMu, false).HandlePacket)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, forwarder.UDP(s, nat, &natMu, false).HandlePacket)

	// DNS on the gateway, UDP and TCP.
	dnsAddr := tcpip.FullAddress{NIC: 1, Addr: gw, Port: 53}
	udpConn, err := gonet.DialUDP(s, &dnsAddr, nil, ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("usernet: dns socket: %w", err)
	}
	n.closers = append(n.closers, udpConn.Close)
	tcpLn, err := gonet.ListenTCP(s, dnsAddr, ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("usernet: dns listener: %w", err)
	}
	n.closers = append(n.closers, tcpLn.Close)
	srv, err := dns.NewWithUpstreamResolver(udpConn, tcpLn, nil, n.res)
	if err != nil {
		return fmt.Errorf("usernet: dns: %w", err)
	}
	n.goLog("dns udp", srv.Serve)
	n.goLog("dns tcp", srv.ServeTCP)

	n.fw = forwarder.NewPortsForwarder(s)
	return nil
}

// goLog runs f in a goroutine the Network waits for on Close; an error
// while the Network is open is logged.
func (n *Network) goLog(what string, f func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := f(); err != nil && n.ctx.Err() == nil {
			n.log.Warn("usernet: "+what+" ended", "error", err)
		}
	}()
}

// Config returns the network's configuration (MTU filled in).
func (n *Network) Config() Config { return n.cfg }

// ServeQemu accepts guests on ln (qemu's -netdev stream, a 4-byte
// big-endian length before each frame) until Close or until ln fails.
// Each accepted connection is one VM's NIC on the switch. ServeQemu
// returns at once; Close closes ln.
func (n *Network) ServeQemu(ln net.Listener) error {
	if err := n.track(ln.Close); err != nil {
		ln.Close()
		return err
	}
	n.goLog("qemu listener", func() error {
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			n.attach(c, types.QemuProtocol)
		}
	})
	return nil
}

// ListenQemu listens on the unix socket path (replacing a stale socket
// file) and serves it as ServeQemu. Close removes the socket.
func (n *Network) ListenQemu(path string) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("usernet: listen %s: %w", path, err)
	}
	return n.ServeQemu(ln)
}

// ListenVfkit binds a datagram socket at path for ONE vz VM (hypervisor's
// vz adapter: bare frames, one per datagram, after the "VFKT" handshake)
// and attaches the VM that connects first. Give each VM its own path.
// Close removes the socket.
func (n *Network) ListenVfkit(path string) error {
	_ = os.Remove(path)
	conn, err := transport.ListenUnixgram("unixgram://" + path)
	if err != nil {
		return fmt.Errorf("usernet: listen %s: %w", path, err)
	}
	var once sync.Once
	closeSock := func() (err error) {
		once.Do(func() { err = conn.Close(); _ = os.Remove(path) })
		return err
	}
	if err := n.track(closeSock); err != nil {
		conn.Close()
		return err
	}
	n.mu.Lock()
	if n.vfkit == nil {
		n.vfkit = map[string]func() error{}
	}
	n.vfkit[path] = closeSock
	n.mu.Unlock()
	n.goLog("vfkit socket "+path, func() error {
		c, err := transport.AcceptVfkit(conn)
		if err != nil {
			return err
		}
		n.attach(c, types.VfkitProtocol)
		return nil
	})
	return nil
}

// CloseVfkit closes and removes the socket ListenVfkit bound at path (its
// VM loses the link: a container detached from the network). Unknown
// paths are a no-op.
func (n *Network) CloseVfkit(path string) error {
	n.mu.Lock()
	closeSock := n.vfkit[path]
	delete(n.vfkit, path)
	n.mu.Unlock()
	if closeSock == nil {
		return nil
	}
	return closeSock()
}

// AttachQemu attaches one guest connection speaking qemu's stream framing
// (e.g. one end of a socketpair whose other end qemu got as a fd).
func (n *Network) AttachQemu(c net.Conn) error {
	if err := n.track(c.Close); err != nil {
		c.Close()
		return err
	}
	n.attach(c, types.QemuProtocol)
	return nil
}

// AttachDatagram attaches one guest connection carrying one Ethernet
// frame per datagram (a connected unixgram socket, e.g. one end of a
// socketpair whose other end vz got through a
// FileHandleNetworkDeviceAttachment in the same process).
func (n *Network) AttachDatagram(c net.Conn) error {
	if err := n.track(c.Close); err != nil {
		c.Close()
		return err
	}
	n.attach(c, types.VfkitProtocol)
	return nil
}

func (n *Network) attach(c net.Conn, p types.Protocol) {
	if err := n.track(c.Close); err != nil {
		c.Close()
		return
	}
	n.log.Debug("usernet: guest attached", "protocol", p, "remote", c.RemoteAddr())
	n.goLog("guest connection", func() error {
		err := n.sw.Accept(n.ctx, c, p)
		n.log.Debug("usernet: guest detached", "protocol", p, "error", err)
		return nil // a VM going away is not an error of the network
	})
}

func (n *Network) track(closer func() error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("usernet: network closed")
	}
	n.closers = append(n.closers, closer)
	return nil
}

// Publish starts forwarding p: the host listener is bound before Publish
// returns (a port in use fails, naming it). Publishing the same mapping
// twice is a no-op; another mapping of the same host address and port
// fails.
func (n *Network) Publish(p Port) error {
	if p.HostPort == 0 || p.GuestPort == 0 || !p.GuestIP.Is4() || !n.cfg.Subnet.Contains(p.GuestIP) {
		return errdefs.InvalidArgument("usernet: port %s: want host and guest ports and a guest address in %s", p, n.cfg.Subnet)
	}
	if p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp" {
		return errdefs.InvalidArgument("usernet: port %s: protocol %q: want tcp or udp", p, p.Protocol)
	}
	if p.HostIP != "" {
		if _, err := netip.ParseAddr(p.HostIP); err != nil {
			return errdefs.InvalidArgument("usernet: port %s: host address %q: %v", p, p.HostIP, err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("usernet: network closed")
	}
	if _, ok := n.ports[p.String()]; ok {
		return nil
	}
	for _, q := range n.ports {
		if q.local() == p.local() && q.proto() == p.proto() {
			return errdefs.AlreadyExists("usernet: port %s: %s is already published to %s", p, p.local(), q)
		}
	}
	remote := net.JoinHostPort(p.GuestIP.String(), strconv.Itoa(int(p.GuestPort)))
	if err := n.fw.Expose(p.proto(), p.local(), remote); err != nil {
		return fmt.Errorf("usernet: publish %s: %w", p, err)
	}
	n.ports[p.String()] = p
	n.log.Info("usernet: published", "port", p.String())
	return nil
}

// Unpublish stops forwarding p and closes its host listener. Unknown
// mappings are a no-op.
func (n *Network) Unpublish(p Port) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.ports[p.String()]; !ok {
		return nil
	}
	delete(n.ports, p.String())
	if err := n.fw.Unexpose(p.proto(), p.local()); err != nil {
		return fmt.Errorf("usernet: unpublish %s: %w", p, err)
	}
	return nil
}

// Ports lists the published ports, sorted.
func (n *Network) Ports() []Port {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Port, 0, len(n.ports))
	for _, p := range n.ports {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// SetRecords replaces the network's DNS records: name (any case, with or
// without a trailing dot) → addresses.
func (n *Network) SetRecords(records map[string][]netip.Addr) {
	n.res.setRecords(records)
}

// Close stops the network: host listeners, published ports, guest
// connections, DNS and the stack. Safe to repeat.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	closers := n.closers
	n.closers = nil
	ports := n.ports
	n.ports = map[string]Port{}
	n.mu.Unlock()

	n.cancel()
	var errs []error
	for _, p := range ports {
		if err := n.fw.Unexpose(p.proto(), p.local()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range closers {
		if err := c(); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "closed") {
			errs = append(errs, err)
		}
	}
	n.wg.Wait()
	n.stack.Close()
	n.stack.Wait()
	return errors.Join(errs...)
}
