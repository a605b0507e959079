// Package netd is the per-network helper's logic: the network's DNS
// resolver (container names and aliases, host.berth.internal, everything
// else forwarded to upstream resolvers) and the userspace TCP/UDP proxies
// of its published ports. `berth system network-helper --state FILE` runs
// Run; the daemon owns FILE and the process (see core/network).
//
// The helper holds no state of its own: State is read from the file at
// start and on every reload (SIGHUP, or the file changing), and what it
// serves is written to StatusPath(FILE) after each load, so the daemon can
// report a port that could not be bound.
package netd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// State is the helper's input file (JSON), written by the daemon with
// WriteJSON (atomically) before it sends SIGHUP.
type State struct {
	// Network is the network's name (for logs).
	Network string `json:"network"`
	// Gateway is the network's gateway address; DNS listens on
	// Gateway:53 (udp and tcp) unless DNSAddr says otherwise.
	Gateway string `json:"gateway"`
	// DNSAddr overrides the DNS listen address ("ip:port"; port 0 picks
	// one, reported in Status.DNS.Address). Empty: Gateway:53. "-": no
	// DNS server.
	DNSAddr string `json:"dnsAddr,omitempty"`
	// Upstreams are the resolvers ("ip:port", or "ip" for port 53) names
	// outside the network's zone are forwarded to; empty: the host's
	// /etc/resolv.conf nameservers. Forwarding runs in the host's network
	// namespace, so loopback resolvers work.
	Upstreams []string `json:"upstreams"`
	// Domains are the network's own zones besides single-label names
	// (e.g. the containers' search domain): "web.<domain>" answers as
	// "web", unknown names in them are NXDOMAIN rather than forwarded.
	Domains []string `json:"domains,omitempty"`
	// Clients are containers with resolvers of their own (docker run
	// --dns): names outside the network's zone asked from Client.IP are
	// forwarded to Client.Upstreams instead of Upstreams, as Docker's
	// embedded resolver does; the network's own names still answer.
	Clients []Client `json:"clients,omitempty"`
	// Records are the names (container names and aliases) and their IPv4
	// addresses.
	Records []Record `json:"records"`
	// Ports are the published ports the helper proxies.
	Ports []Port `json:"ports"`
}

// Record is one DNS name of the network.
type Record struct {
	Name string   `json:"name"`
	IPs  []string `json:"ips"`
}

// Client is one container's own upstream resolvers, by its address on the
// network (the source address of its queries).
type Client struct {
	IP string `json:"ip"`
	// Upstreams are "ip" (port 53) or "ip:port"; forwarding runs in the
	// host's network namespace.
	Upstreams []string `json:"upstreams"`
}

// Port is one published port: the helper listens on HostIP:HostPort and
// forwards to TargetIP:TargetPort.
type Port struct {
	// HostIP "" listens on every address (0.0.0.0).
	HostIP   string `json:"hostIP"`
	HostPort uint16 `json:"hostPort"`
	// Protocol is "tcp" (default) or "udp".
	Protocol   string `json:"protocol"`
	TargetIP   string `json:"targetIP"`
	TargetPort uint16 `json:"targetPort"`
}

// HostName always resolves to the network's gateway, the host as the
// network's containers reach it.
const HostName = "host.berth.internal"

func (p Port) proto() string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}

// Key identifies a port mapping; equal keys are the same listener.
func (p Port) Key() string {
	return fmt.Sprintf("%s/%s/%d->%s:%d", p.proto(), p.HostIP, p.HostPort, p.TargetIP, p.TargetPort)
}

func (p Port) listenAddr() string {
	h := p.HostIP
	if h == "" {
		h = "0.0.0.0"
	}
	return netip.AddrPortFrom(netip.MustParseAddr(h), p.HostPort).String()
}

func (p Port) target() string {
	return netip.AddrPortFrom(netip.MustParseAddr(p.TargetIP), p.TargetPort).String()
}

// Validate checks s and names the first bad field.
func (s State) Validate() error {
	if s.DNSAddr != "-" {
		if s.DNSAddr != "" {
			if _, err := netip.ParseAddrPort(s.DNSAddr); err != nil {
				return fmt.Errorf("dnsAddr %q: %v", s.DNSAddr, err)
			}
		} else if _, err := netip.ParseAddr(s.Gateway); err != nil {
			return fmt.Errorf("gateway %q: %v", s.Gateway, err)
		}
	}
	for _, u := range s.Upstreams {
		if _, err := upstreamAddr(u); err != nil {
			return err
		}
	}
	for _, c := range s.Clients {
		if a, err := netip.ParseAddr(c.IP); err != nil || !a.Is4() {
			return fmt.Errorf("client ip %q: IPv4 addresses only", c.IP)
		}
		if len(c.Upstreams) == 0 {
			return fmt.Errorf("client %s: no upstreams", c.IP)
		}
		for _, u := range c.Upstreams {
			if _, err := upstreamAddr(u); err != nil {
				return fmt.Errorf("client %s: %w", c.IP, err)
			}
		}
	}
	for _, r := range s.Records {
		if r.Name == "" || strings.ContainsAny(r.Name, " \t") {
			return fmt.Errorf("record name %q", r.Name)
		}
		for _, ip := range r.IPs {
			if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
				return fmt.Errorf("record %s: ip %q: IPv4 addresses only", r.Name, ip)
			}
		}
	}
	for _, p := range s.Ports {
		if p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp" {
			return fmt.Errorf("port %d: protocol %q (tcp or udp)", p.HostPort, p.Protocol)
		}
		if p.HostPort == 0 || p.TargetPort == 0 {
			return fmt.Errorf("port %s: ports must be 1-65535", p.Key())
		}
		if p.HostIP != "" {
			if _, err := netip.ParseAddr(p.HostIP); err != nil {
				return fmt.Errorf("port %s: hostIP: %v", p.Key(), err)
			}
		}
		if _, err := netip.ParseAddr(p.TargetIP); err != nil {
			return fmt.Errorf("port %s: targetIP: %v", p.Key(), err)
		}
	}
	return nil
}

func upstreamAddr(u string) (string, error) {
	if ap, err := netip.ParseAddrPort(u); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(u)
	if err != nil {
		return "", fmt.Errorf("upstream %q: want ip or ip:port", u)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

// Status is what the helper serves, written to StatusPath(state) after
// every load.
type Status struct {
	Pid       int       `json:"pid"`
	UpdatedAt time.Time `json:"updatedAt"`
	// StateSHA256 is the hash of the state file bytes this status
	// reflects: a writer of the state waits until it matches.
	StateSHA256 string `json:"stateSHA256"`
	// Error is set when the state file could not be read or was invalid
	// (the helper keeps serving what it served before).
	Error string       `json:"error,omitempty"`
	DNS   DNSStatus    `json:"dns"`
	Ports []PortStatus `json:"ports"`
}

// DNSStatus is the resolver's listen address or why it is not listening.
type DNSStatus struct {
	Address string `json:"address,omitempty"`
	Error   string `json:"error,omitempty"`
}

// PortStatus is one port mapping; Error is set when it is not served
// (e.g. "address already in use").
type PortStatus struct {
	Port
	Error string `json:"error,omitempty"`
}

// StatusPath is where the helper of state file statePath reports.
func StatusPath(statePath string) string { return statePath + ".status" }

// ReadState reads and validates a state file.
func ReadState(path string) (State, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return State{}, nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, b, fmt.Errorf("state %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return State{}, b, fmt.Errorf("state %s: %w", path, err)
	}
	return s, b, nil
}

// ReadStatus reads a helper's status file.
func ReadStatus(statePath string) (Status, error) {
	var st Status
	b, err := os.ReadFile(StatusPath(statePath))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// HashState is the StateSHA256 a status reports for state file bytes b.
func HashState(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// WriteJSON writes v to path atomically (temp file, fsync, rename) and
// returns the bytes written (HashState of them is what the helper's status
// will report once it has loaded them).
func WriteJSON(path string, v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, err
	}
	return b, nil
}

// hostResolvers are the nameservers of the host's /etc/resolv.conf.
func hostResolvers() []string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := upstreamAddr(f[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}
