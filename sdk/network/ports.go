package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// ParsePublish parses one `-p`/`--publish` value in Docker's syntax:
//
//	[[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/PROTO]
//
// where HOSTPORT and CONTAINERPORT may be ranges ("8000-8001:80-81", the
// same length), HOSTIP may be an IPv6 address in brackets, PROTO is tcp
// (the default) or udp, and an omitted HOSTPORT (or "0") leaves HostPort
// 0: the service picks a free port. A host port range with a single
// container port (Docker picks one port of the range) is refused. Errors
// are InvalidArgument naming the value.
func ParsePublish(value string) ([]isolation.PortMapping, error) {
	bad := func(format string, args ...any) error {
		return errdefs.InvalidArgument("publish %q: %s", value, fmt.Sprintf(format, args...))
	}
	rest, proto := value, "tcp"
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		rest, proto = rest[:i], strings.ToLower(rest[i+1:])
		switch proto {
		case "tcp", "udp":
		case "":
			return nil, bad("empty protocol after '/'")
		default:
			return nil, bad("protocol %q is not tcp or udp", proto)
		}
	}
	if rest == "" {
		return nil, bad("no container port")
	}
	var hostIP, hostPorts, ctrPorts string
	// The container port is after the last colon; an IPv6 host address is
	// in brackets, so its colons are not separators.
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		ctrPorts = rest
	} else {
		ctrPorts = rest[i+1:]
		head := rest[:i]
		if j := strings.LastIndexByte(head, ':'); j >= 0 && !strings.HasSuffix(head, "]") {
			hostIP, hostPorts = head[:j], head[j+1:]
		} else if strings.HasPrefix(head, "[") {
			return nil, bad("host address %s needs a host port field after it (%s::PORT)", head, head)
		} else {
			hostPorts = head
		}
	}
	if hostIP != "" {
		ipText := hostIP
		if strings.HasPrefix(ipText, "[") {
			if !strings.HasSuffix(ipText, "]") {
				return nil, bad("host address %q lacks its closing bracket", hostIP)
			}
			ipText = ipText[1 : len(ipText)-1]
		} else if strings.Contains(ipText, ":") {
			return nil, bad("IPv6 host address %q must be in brackets", hostIP)
		}
		ip, err := netip.ParseAddr(ipText)
		if err != nil || ip.Zone() != "" {
			return nil, bad("host address %q is not an IP address", hostIP)
		}
		hostIP = ip.Unmap().String()
	}
	cLo, cHi, err := parsePortRange(ctrPorts, false)
	if err != nil {
		return nil, bad("container port: %v", err)
	}
	var hLo, hHi uint16
	if hostPorts != "" {
		if hLo, hHi, err = parsePortRange(hostPorts, true); err != nil {
			return nil, bad("host port: %v", err)
		}
	}
	n := int(cHi-cLo) + 1
	if hLo != 0 && int(hHi-hLo)+1 != n {
		if cLo == cHi {
			return nil, bad("a host port range with a single container port is not supported; give a range of the same length or one host port")
		}
		return nil, bad("host range %d-%d and container range %d-%d differ in length", hLo, hHi, cLo, cHi)
	}
	out := make([]isolation.PortMapping, 0, n)
	for k := range n {
		m := isolation.PortMapping{HostIP: hostIP, ContainerPort: cLo + uint16(k), Protocol: proto}
		if hLo != 0 {
			m.HostPort = hLo + uint16(k)
		}
		out = append(out, m)
	}
	return out, nil
}

// parsePortRange parses "N" or "N-M" (1..65535, N ≤ M); zeroOK allows "0"
// (no host port: pick one).
func parsePortRange(s string, zeroOK bool) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	if !isRange {
		if lo == 0 && !zeroOK {
			return 0, 0, fmt.Errorf("port 0 is not a port")
		}
		return lo, lo, nil
	}
	if hi, err = parsePort(b); err != nil {
		return 0, 0, err
	}
	if lo == 0 || hi < lo {
		return 0, 0, fmt.Errorf("range %q is not LOW-HIGH with 1 ≤ LOW ≤ HIGH", s)
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number (0-65535)", s)
	}
	return uint16(n), nil
}

// ParseHostEntry parses an `--add-host` value, NAME:IP or NAME=IP; IP may
// be HostGateway (kept as is: the service substitutes the gateway). An
// IPv6 address may be in brackets. Errors are InvalidArgument naming the
// value.
func ParseHostEntry(value string) (isolation.HostEntry, error) {
	name, ip, ok := strings.Cut(value, "=")
	if !ok {
		name, ip, ok = strings.Cut(value, ":")
	}
	if !ok || name == "" || ip == "" {
		return isolation.HostEntry{}, errdefs.InvalidArgument("add-host %q: want NAME:IP (or NAME:%s)", value, HostGateway)
	}
	if strings.ContainsAny(name, " \t#") {
		return isolation.HostEntry{}, errdefs.InvalidArgument("add-host %q: %q is not a host name", value, name)
	}
	if ip == HostGateway {
		return isolation.HostEntry{Name: name, IP: ip}, nil
	}
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return isolation.HostEntry{}, errdefs.InvalidArgument("add-host %q: %q is not an IP address or %s", value, ip, HostGateway)
	}
	return isolation.HostEntry{Name: name, IP: a.String()}, nil
}

// FormatPort renders a published port as `berth port` and Docker print it:
// "80/tcp -> 127.0.0.1:8080".
func FormatPort(p isolation.PortMapping) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	host := p.HostIP
	if host == "" {
		host = "0.0.0.0"
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%d/%s -> %s:%d", p.ContainerPort, proto, host, p.HostPort)
}
