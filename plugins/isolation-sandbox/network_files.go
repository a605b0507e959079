//go:build linux || darwin

package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/isolation"
)

// The files a bridge attachment gives the container, written into its task
// dir and bind-mounted over the image's (as Docker does): /etc/hosts,
// /etc/resolv.conf, /etc/hostname.

const (
	hostsFile    = "hosts"
	resolvFile   = "resolv.conf"
	hostnameFile = "hostname"
)

// hostsContent is the container's /etc/hosts: localhost, its own addresses
// under its hostname, then the attachment's extra entries.
func hostsContent(n *isolation.NetworkAttachment) string {
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

// resolvContent is the container's /etc/resolv.conf; with no servers in
// the attachment, the host's non-loopback nameservers (a loopback one is
// the container's own loopback, where nothing answers).
func resolvContent(d isolation.DNS, hostResolvConf string) string {
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

// writeNetworkFiles writes the three files into dir and bind-mounts each
// over its /etc path in oci, unless the spec already mounts something
// there (a user's volume wins).
func writeNetworkFiles(n *isolation.NetworkAttachment, oci *specs.Spec, dir string) error {
	hostConf, _ := os.ReadFile("/etc/resolv.conf")
	hostname := n.Hostname
	if hostname == "" {
		hostname = oci.Hostname
	}
	files := []struct{ name, dest, content string }{
		{hostsFile, "/etc/hosts", hostsContent(n)},
		{resolvFile, "/etc/resolv.conf", resolvContent(n.DNS, string(hostConf))},
		{hostnameFile, "/etc/hostname", hostname + "\n"},
	}
	for _, f := range files {
		if slices.ContainsFunc(oci.Mounts, func(m specs.Mount) bool { return filepath.Clean(m.Destination) == f.dest }) {
			continue
		}
		p := filepath.Join(dir, f.name)
		if err := writeFileAtomic(p, []byte(f.content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.dest, err)
		}
		oci.Mounts = append(oci.Mounts, specs.Mount{Destination: f.dest, Type: "bind", Source: p, Options: []string{"rbind", "rprivate"}})
	}
	return nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
