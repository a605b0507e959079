package netd

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// Limits of the resolver.
const (
	// maxInflight bounds queries handled at once; more are refused.
	maxInflight = 256
	// maxTCPClients bounds open DNS-over-TCP connections; more wait in
	// the kernel's backlog.
	maxTCPClients = 64
)

// upstreamTimeout bounds one exchange with one upstream (a variable for
// tests).
var upstreamTimeout = 2 * time.Second

// zone is one load of the resolver's data; swapped whole on reload.
type zone struct {
	names     map[string][]netip.Addr // lower-case, no trailing dot
	domains   []string                // lower-case, no dots at either end
	gateway   netip.Addr
	upstreams []string
	// clients maps a container's address to its own upstreams (--dns).
	clients map[netip.Addr][]string
}

func newZone(s State) *zone {
	z := &zone{names: map[string][]netip.Addr{}}
	z.gateway, _ = netip.ParseAddr(s.Gateway)
	for _, r := range s.Records {
		n := canon(r.Name)
		for _, ip := range r.IPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				z.names[n] = append(z.names[n], a)
			}
		}
	}
	for _, d := range s.Domains {
		if d = canon(d); d != "" {
			z.domains = append(z.domains, d)
		}
	}
	for _, u := range s.Upstreams {
		if a, err := upstreamAddr(u); err == nil {
			z.upstreams = append(z.upstreams, a)
		}
	}
	if len(s.Upstreams) == 0 {
		z.upstreams = hostResolvers()
	}
	for _, c := range s.Clients {
		a, err := netip.ParseAddr(c.IP)
		if err != nil {
			continue
		}
		if z.clients == nil {
			z.clients = map[netip.Addr][]string{}
		}
		for _, u := range c.Upstreams {
			if ua, err := upstreamAddr(u); err == nil {
				z.clients[a] = append(z.clients[a], ua)
			}
		}
	}
	return z
}

func canon(name string) string { return strings.Trim(strings.ToLower(name), ".") }

// lookup answers a name of the network: ok says the name is in the
// network's zone (single label, under one of its domains, or under
// berth.internal); addrs are its addresses (nil: no such name).
func (z *zone) lookup(qname string) (addrs []netip.Addr, ok bool) {
	n := canon(qname)
	if n == HostName {
		if z.gateway.IsValid() {
			return []netip.Addr{z.gateway}, true
		}
		return nil, true
	}
	if a, found := z.names[n]; found {
		return a, true
	}
	for _, d := range z.domains {
		if short, cut := strings.CutSuffix(n, "."+d); cut {
			return z.names[short], true
		}
		if n == d {
			return nil, true
		}
	}
	if strings.HasSuffix(n, ".berth.internal") || n == "berth.internal" {
		return nil, true
	}
	if n != "" && !strings.Contains(n, ".") {
		return nil, true
	}
	return nil, false
}

// resolver is the network's DNS handler.
type resolver struct {
	log      hclog.Logger
	z        atomic.Pointer[zone]
	inflight chan struct{}
}

func newResolver(log hclog.Logger) *resolver {
	return &resolver{log: log, inflight: make(chan struct{}, maxInflight)}
}

// ServeDNS implements dns.Handler.
func (r *resolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	select {
	case r.inflight <- struct{}{}:
		defer func() { <-r.inflight }()
	default:
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeRefused)
		_ = w.WriteMsg(m)
		return
	}
	z := r.z.Load()
	if z == nil || len(q.Question) != 1 || q.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
		return
	}
	question := q.Question[0]
	if question.Qclass == dns.ClassINET {
		if addrs, ok := z.lookup(question.Name); ok {
			m := new(dns.Msg)
			m.SetReply(q)
			m.Authoritative = true
			m.RecursionAvailable = true
			switch {
			case addrs == nil:
				m.Rcode = dns.RcodeNameError
			case question.Qtype == dns.TypeA || question.Qtype == dns.TypeANY:
				for _, a := range addrs {
					m.Answer = append(m.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
						A:   net.IP(a.AsSlice())})
				}
			}
			// Other types of a known name: NOERROR without answers.
			m.Compress = true
			_ = w.WriteMsg(m)
			return
		}
	}
	r.forward(w, q, z.upstreamsFor(w.RemoteAddr()))
}

// upstreamsFor picks the resolvers for a query from remote: the client's
// own (--dns) when it has some, else the network's.
func (z *zone) upstreamsFor(remote net.Addr) []string {
	var ip net.IP
	switch a := remote.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	if addr, ok := netip.AddrFromSlice(ip); ok {
		if u, found := z.clients[addr.Unmap()]; found {
			return u
		}
	}
	return z.upstreams
}

// forward asks each upstream in turn over the query's own transport and
// relays the first answer; SERVFAIL when none answers.
func (r *resolver) forward(w dns.ResponseWriter, q *dns.Msg, upstreams []string) {
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	c := &dns.Client{Net: proto, Timeout: upstreamTimeout}
	for _, u := range upstreams {
		ctx, cancel := context.WithTimeout(context.Background(), upstreamTimeout)
		resp, _, err := c.ExchangeContext(ctx, q, u)
		cancel()
		if err != nil || resp == nil {
			r.log.Debug("upstream failed", "upstream", u, "name", q.Question[0].Name, "error", err)
			continue
		}
		resp.Id = q.Id
		_ = w.WriteMsg(resp)
		return
	}
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeServerFailure)
	_ = w.WriteMsg(m)
}

// dnsServer is the resolver's pair of listeners on one address.
type dnsServer struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server
}

// startDNS listens on addr (udp, then tcp on the same port) and serves h.
func startDNS(addr string, h dns.Handler) (*dnsServer, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	actual := pc.LocalAddr().String()
	l, err := net.Listen("tcp", actual)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &dnsServer{addr: actual,
		udp: &dns.Server{PacketConn: pc, Handler: h},
		tcp: &dns.Server{Listener: netutil.LimitListener(l, maxTCPClients), Handler: h, MaxTCPQueries: 128, ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	<-started
	<-started
	return s, nil
}

func (s *dnsServer) close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}
