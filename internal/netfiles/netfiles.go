// Package netfiles builds the files a container's network attachment gives
// it, as Docker does: /etc/hosts (its own name and the attachment's extra
// entries), /etc/resolv.conf (the network's resolver) and /etc/hostname.
// The isolation plugins deliver them: isolation-sandbox bind-mounts them
// from its task dir, isolation-vm has the guest agent write and bind-mount
// them. The package only builds contents; it touches nothing.
package netfiles

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/berth-dev/berth/sdk/isolation"
)

// File is one file of a container's network attachment.
type File struct {
	// Name is the file's base name ("hosts"), for a copy on the host.
	Name string
	// Path is where it goes inside the container ("/etc/hosts").
	Path string
	// Content is the file's text.
	Content string
}

// Files are the three files of attachment n. ociHostname is the hostname
// used when n names none; hostResolvConf is the host's /etc/resolv.conf,
// read only when n has no DNS servers.
func Files(n *isolation.NetworkAttachment, ociHostname, hostResolvConf string) []File {
	hostname := n.Hostname
	if hostname == "" {
		hostname = ociHostname
	}
	return []File{
		{Name: "hosts", Path: "/etc/hosts", Content: Hosts(n)},
		{Name: "resolv.conf", Path: "/etc/resolv.conf", Content: Resolv(n.DNS, hostResolvConf)},
		{Name: "hostname", Path: "/etc/hostname", Content: hostname + "\n"},
	}
}

// Hosts is the container's /etc/hosts: localhost, its own addresses under
// its hostname, then the attachment's extra entries.
func Hosts(n *isolation.NetworkAttachment) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	if n.Hostname != "" {
		for _, ifc := range n.Interfaces {
			for _, a := range ifc.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil {
					fmt.Fprintf(&b, "%s\t%s\n", p.Addr(), n.Hostname)
				}
			}
		}
	}
	for _, h := range n.Hosts {
		fmt.Fprintf(&b, "%s\t%s\n", h.IP, h.Name)
	}
	return b.String()
}

// Resolv is the container's /etc/resolv.conf; with no servers in d, the
// non-loopback nameservers of hostResolvConf (a loopback one would be the
// container's own loopback, where nothing answers).
func Resolv(d isolation.DNS, hostResolvConf string) string {
	servers := d.Servers
	if len(servers) == 0 {
		for _, l := range strings.Split(hostResolvConf, "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "nameserver" {
				if a, err := netip.ParseAddr(f[1]); err == nil && !a.IsLoopback() {
					servers = append(servers, f[1])
				}
			}
		}
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(d.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.Search, " "))
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return b.String()
}
