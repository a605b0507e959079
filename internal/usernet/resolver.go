package usernet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// resolver answers the gateway DNS server's lookups (gvisor-tap-vsock's
// dns package asks it for every name): the network's records first, then
// the upstreams.
type resolver struct {
	mu      sync.RWMutex
	records map[string][]netip.Addr

	upstreams []string      // host:port; empty: fwd is the host's resolver
	fwd       *net.Resolver // for the query types other than A
	client    *mdns.Client
}

const upstreamTimeout = 3 * time.Second

func newResolver(upstreams []string) (*resolver, error) {
	r := &resolver{records: map[string][]netip.Addr{}, client: &mdns.Client{Timeout: upstreamTimeout}}
	for _, u := range upstreams {
		hp, err := upstreamAddr(u)
		if err != nil {
			return nil, err
		}
		r.upstreams = append(r.upstreams, hp)
	}
	if len(r.upstreams) == 0 {
		r.fwd = &net.Resolver{}
		return r, nil
	}
	var next int
	var nmu sync.Mutex
	r.fwd = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		nmu.Lock()
		a := r.upstreams[next%len(r.upstreams)]
		next++
		nmu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}}
	return r, nil
}

// upstreamAddr turns "IP" or "IP:PORT" into host:port.
func upstreamAddr(u string) (string, error) {
	if a, err := netip.ParseAddr(u); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(u)
	if err != nil || ap.Port() == 0 {
		return "", errdefs.InvalidArgument("usernet: dns upstream %q: want IP or IP:PORT", u)
	}
	return ap.String(), nil
}

func canon(name string) string { return strings.Trim(strings.ToLower(name), ".") }

func (r *resolver) setRecords(records map[string][]netip.Addr) {
	m := make(map[string][]netip.Addr, len(records))
	for k, v := range records {
		m[canon(k)] = append([]netip.Addr(nil), v...)
	}
	r.mu.Lock()
	r.records = m
	r.mu.Unlock()
}

func (r *resolver) local(host string) ([]netip.Addr, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.records[canon(host)]
	return a, ok
}

func notFound(host string) error {
	return &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// LookupIPAddr answers A queries: a record of the network, else the first
// upstream that answers (an upstream's NXDOMAIN is final).
func (r *resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if addrs, ok := r.local(host); ok {
		out := make([]net.IPAddr, 0, len(addrs))
		for _, a := range addrs {
			out = append(out, net.IPAddr{IP: a.AsSlice()})
		}
		return out, nil
	}
	if len(r.upstreams) == 0 {
		return r.fwd.LookupIPAddr(ctx, strings.TrimSuffix(host, "."))
	}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(host), mdns.TypeA)
	var lastErr error
	for _, u := range r.upstreams {
		resp, _, err := r.client.ExchangeContext(ctx, q, u)
		if err != nil {
			lastErr = err
			continue
		}
		if resp.Rcode == mdns.RcodeNameError {
			return nil, notFound(host)
		}
		if resp.Rcode != mdns.RcodeSuccess {
			lastErr = fmt.Errorf("upstream %s: %s", u, mdns.RcodeToString[resp.Rcode])
			continue
		}
		var out []net.IPAddr
		for _, rr := range resp.Answer {
			if a, ok := rr.(*mdns.A); ok {
				out = append(out, net.IPAddr{IP: a.A})
			}
		}
		if len(out) == 0 {
			return nil, notFound(host)
		}
		return out, nil
	}
	return nil, &net.DNSError{Err: fmt.Sprint(lastErr), Name: host, IsTemporary: true}
}

// The other query types go to the upstreams (never the network's records,
// which hold A records only).

func (r *resolver) LookupCNAME(ctx context.Context, host string) (string, error) {
	if _, ok := r.local(host); ok {
		return "", notFound(host)
	}
	return r.fwd.LookupCNAME(ctx, host)
}

func (r *resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.fwd.LookupMX(ctx, name)
}

func (r *resolver) LookupNS(ctx context.Context, name string) ([]*net.NS, error) {
	return r.fwd.LookupNS(ctx, name)
}

func (r *resolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	return r.fwd.LookupSRV(ctx, service, proto, name)
}

func (r *resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.fwd.LookupTXT(ctx, name)
}
