package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	sdknet "github.com/berth-dev/berth/sdk/network"
)

// releasedGrace is how long after a Detach a bind check of the host ports
// it freed is retried (the helper closes its listeners on SIGHUP).
const releasedGrace = 3 * time.Second

var dnsNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,251}[a-zA-Z0-9_])?$`)

// Attach implements sdknet.Service.
func (s *Service) Attach(ctx context.Context, req sdknet.AttachRequest) (isolation.NetworkAttachment, error) {
	if req.ContainerID == "" {
		return isolation.NetworkAttachment{}, errdefs.InvalidArgument("attach: no container ID")
	}
	hostname := req.Hostname
	if hostname == "" && len(req.ContainerID) >= 12 {
		hostname = req.ContainerID[:12]
	}
	switch req.Network {
	case sdknet.None, sdknet.Host:
		if req.IP != "" || len(req.Ports) > 0 || len(req.Aliases) > 0 {
			return isolation.NetworkAttachment{}, errdefs.InvalidArgument("network %s: --ip, --publish and --network-alias need a bridge network", req.Network)
		}
		a := isolation.NetworkAttachment{Mode: req.Network, Hostname: hostname, Hosts: req.ExtraHosts}
		if req.Network == sdknet.Host {
			a.DNS = isolation.DNS{Servers: req.DNS, Search: req.DNSSearch}
		}
		return a, nil
	}
	want, err := checkAddressAndAliases(req)
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}
	for _, d := range req.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return isolation.NetworkAttachment{}, errdefs.InvalidArgument("dns %q is not an IP address", d)
		}
	}
	for _, h := range req.ExtraHosts {
		if h.IP == sdknet.HostGateway {
			continue
		}
		if _, err := netip.ParseAddr(h.IP); err != nil || h.Name == "" {
			return isolation.NetworkAttachment{}, errdefs.InvalidArgument("add-host %s:%s: want NAME:IP", h.Name, h.IP)
		}
	}
	ports, err := normalisePorts(req.Ports)
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var n netRecord
	if req.Network == "" || req.Network == sdknet.DefaultNetwork {
		n, err = s.ensureDefaultLocked(ctx)
	} else {
		n, err = s.resolveLocked(req.Network)
	}
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}

	var existing epRecord
	var others []epRecord
	err = s.store.db.View(func(tx *bolt.Tx) error {
		eps, err := endpointsIn(tx)
		for _, e := range eps {
			if e.ContainerID == req.ContainerID {
				if !e.Connected {
					existing = e
				}
			} else {
				others = append(others, e)
			}
		}
		return err
	})
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}
	if existing.ContainerID != "" {
		if existing.NetworkID != n.ID {
			return isolation.NetworkAttachment{}, errdefs.AlreadyExists("container %.12s is already attached to another network (id %.12s)", req.ContainerID, existing.NetworkID)
		}
		return s.attachmentOf(n, existing), nil
	}
	if err := portConflicts(ports, others); err != nil {
		return isolation.NetworkAttachment{}, err
	}
	if ports, err = s.bindCheck(ctx, ports); err != nil {
		return isolation.NetworkAttachment{}, err
	}

	e := epRecord{
		ContainerID: req.ContainerID, Name: req.Name, Hostname: hostname, Aliases: req.Aliases,
		NetworkID: n.ID, Ports: ports, DNS: req.DNS, DNSSearch: req.DNSSearch, ExtraHosts: req.ExtraHosts,
		CreatedAt: time.Now().UTC(),
	}
	if e.Name == "" && len(req.ContainerID) >= 12 {
		e.Name = req.ContainerID[:12]
	}
	err = s.store.db.Update(func(tx *bolt.Tx) error {
		ip, err := allocate(tx, n, req.ContainerID, want)
		if err != nil {
			return err
		}
		e.IP, e.MAC = ip, macOf(ip)
		return putJSON(tx.Bucket(bucketEndpoints), e.ContainerID, e)
	})
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}
	// With published ports, wait for the helper to report them served.
	// A user-mode VM dials the helper's socket: wait for it too.
	st, err := s.publishState(n, len(ports) > 0 || s.opts.UserMode)
	if err == nil && st != nil {
		err = portErrors(st, e)
	}
	if err != nil {
		if derr := s.detachLocked(req.ContainerID); derr != nil {
			s.log.Error("undo a failed attach", "container_id", req.ContainerID, "error", derr)
		}
		return isolation.NetworkAttachment{}, fmt.Errorf("attach %.12s to %s: %w", req.ContainerID, n.Name, err)
	}
	s.log.Info("container attached", "container_id", req.ContainerID, "network", n.Name, "ip", e.IP, "ports", len(ports))
	return s.attachmentOf(n, e), nil
}

// Detach implements sdknet.Service.
func (s *Service) Detach(_ context.Context, containerID string) error {
	if containerID == "" {
		return errdefs.InvalidArgument("detach: no container ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.detachLocked(containerID)
}

// Rename implements sdknet.Service: every endpoint of the container
// (Attach's and Connect's) answers to the new name.
func (s *Service) Rename(_ context.Context, containerID, name string) error {
	if containerID == "" || name == "" {
		return errdefs.InvalidArgument("rename endpoint: container ID and name are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []netRecord
	err := s.store.db.Update(func(tx *bolt.Tx) error {
		eps, err := endpointsIn(tx)
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.ContainerID != containerID || e.Name == name {
				continue
			}
			var n netRecord
			if _, err := getJSON(tx.Bucket(bucketNetworks), e.NetworkID, &n); err != nil {
				return err
			}
			e.Name = name
			if err := putJSON(tx.Bucket(bucketEndpoints), e.key(), e); err != nil {
				return err
			}
			if n.ID != "" {
				changed = append(changed, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range changed {
		s.log.Info("endpoint renamed", "container_id", containerID, "network", n.Name, "name", name)
		if _, err := s.publishState(n, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) detachLocked(containerID string) error {
	var gone []epRecord
	nets := map[string]netRecord{}
	err := s.store.db.Update(func(tx *bolt.Tx) error {
		eps, err := endpointsIn(tx)
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.ContainerID != containerID {
				continue
			}
			var n netRecord
			if _, err := getJSON(tx.Bucket(bucketNetworks), e.NetworkID, &n); err != nil {
				return err
			}
			if err := release(tx, e.NetworkID, e.IP, containerID); err != nil {
				return err
			}
			if err := tx.Bucket(bucketEndpoints).Delete([]byte(e.key())); err != nil {
				return err
			}
			gone = append(gone, e)
			if n.ID != "" {
				nets[n.ID] = n
			}
		}
		return nil
	})
	if err != nil || len(gone) == 0 {
		return err
	}
	now := time.Now()
	for k, t := range s.released {
		if now.Sub(t) > releasedGrace {
			delete(s.released, k)
		}
	}
	var errs []error
	for _, e := range gone {
		for _, p := range e.Ports {
			s.released[portKey(p)] = now
		}
		s.log.Info("container detached", "container_id", containerID, "network", nets[e.NetworkID].Name, "ip", e.IP, "connected", e.Connected)
	}
	for _, n := range nets {
		if _, err := s.publishState(n, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// portErrors reports the published ports of e the helper could not serve.
func portErrors(st *netd.Status, e epRecord) error {
	for _, ps := range st.Ports {
		if ps.Error == "" || ps.TargetIP != e.IP.String() {
			continue
		}
		return errdefs.InvalidArgument("publish %s:%d:%d/%s: the network helper cannot listen: %s",
			ps.HostIP, ps.HostPort, ps.TargetPort, ps.Protocol, ps.Error)
	}
	return nil
}

// normalisePorts checks published ports and fills defaults: protocol tcp,
// host address as given ("" is every address).
func normalisePorts(in []isolation.PortMapping) ([]isolation.PortMapping, error) {
	out := make([]isolation.PortMapping, 0, len(in))
	seen := map[string]bool{}
	for _, p := range in {
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		p.Protocol = strings.ToLower(p.Protocol)
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return nil, errdefs.InvalidArgument("publish %s: protocol %q is not tcp or udp", describePort(p), p.Protocol)
		}
		if p.ContainerPort == 0 {
			return nil, errdefs.InvalidArgument("publish %s: no container port", describePort(p))
		}
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil || a.Zone() != "" {
				return nil, errdefs.InvalidArgument("publish %s: host address %q is not an IP address", describePort(p), p.HostIP)
			}
			p.HostIP = a.Unmap().String()
		}
		if p.HostPort != 0 {
			k := portKey(p)
			if seen[k] {
				return nil, errdefs.InvalidArgument("publish %s: host port %d/%s is given twice", describePort(p), p.HostPort, p.Protocol)
			}
			seen[k] = true
		}
		out = append(out, p)
	}
	return out, nil
}

// describePort renders a mapping as the user typed it: [ip:]host:ctr/proto.
func describePort(p isolation.PortMapping) string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Protocol)
	if p.HostIP != "" {
		s = p.HostIP + ":" + s
	}
	return s
}

func portKey(p isolation.PortMapping) string {
	return p.Protocol + "/" + strconv.Itoa(int(p.HostPort))
}

// overlapsHost reports whether two host addresses collide for one port:
// equal, or either is every address.
func overlapsHost(a, b string) bool {
	unspec := func(s string) bool { return s == "" || s == "0.0.0.0" || s == "::" }
	return a == b || unspec(a) || unspec(b)
}

// portConflicts refuses host ports another endpoint publishes.
func portConflicts(ports []isolation.PortMapping, others []epRecord) error {
	for _, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		for _, e := range others {
			for _, q := range e.Ports {
				if q.Protocol == p.Protocol && q.HostPort == p.HostPort && overlapsHost(p.HostIP, q.HostIP) {
					return errdefs.InvalidArgument("publish %s: host port %d/%s is already published by container %s (%.12s)",
						describePort(p), p.HostPort, p.Protocol, e.Name, e.ContainerID)
				}
			}
		}
	}
	return nil
}

// bindCheck binds every host port to prove it free, picking a free port
// for those with HostPort 0, and returns the ports with their host ports
// resolved. All are held until every one is bound, so two picks never
// collide. A port Detach freed a moment ago is retried for a few seconds.
func (s *Service) bindCheck(ctx context.Context, ports []isolation.PortMapping) ([]isolation.PortMapping, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	out := slices.Clone(ports)
	for i, p := range out {
		host := p.HostIP
		if host == "" {
			host = "0.0.0.0"
		}
		addr := net.JoinHostPort(host, strconv.Itoa(int(p.HostPort)))
		for {
			c, port, err := bindPort(p.Protocol, addr)
			if err == nil {
				held = append(held, c)
				out[i].HostPort = uint16(port)
				break
			}
			if t, ok := s.released[portKey(p)]; ok && p.HostPort != 0 && errors.Is(err, syscall.EADDRINUSE) && time.Since(t) < releasedGrace {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, errdefs.InvalidArgument("publish %s: host port %s/%s is already in use on this host", describePort(p), addr, p.Protocol)
			}
			return nil, errdefs.InvalidArgument("publish %s: cannot bind %s/%s: %v", describePort(p), addr, p.Protocol, err)
		}
	}
	return out, nil
}

// bindPort binds addr for proto and returns the socket and its port.
func bindPort(proto, addr string) (io.Closer, int, error) {
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, 0, err
		}
		return c, c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	return l, l.Addr().(*net.TCPAddr).Port, nil
}

// checkAddressAndAliases validates what Attach and Connect share: the
// requested IPv4 address (zero when none) and the aliases as DNS names.
func checkAddressAndAliases(req sdknet.AttachRequest) (netip.Addr, error) {
	var want netip.Addr
	if req.IP != "" {
		a, err := netip.ParseAddr(req.IP)
		if err != nil || !a.Is4() {
			return netip.Addr{}, errdefs.InvalidArgument("ip %q is not an IPv4 address", req.IP)
		}
		want = a
	}
	for _, al := range req.Aliases {
		if !dnsNameRE.MatchString(al) {
			return netip.Addr{}, errdefs.InvalidArgument("network alias %q is not a DNS name", al)
		}
	}
	return want, nil
}
