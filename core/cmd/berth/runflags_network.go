package main

import (
	"fmt"
	"net/netip"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/network"
)

// networkFlags are run/create's network flags, named as Docker's.
type networkFlags struct {
	network, ip                    string
	publish, dns, dnsSearch, hosts []string
	aliases                        []string
}

func (f *networkFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.network, "network", "", "network to join: a network's name, none or host (default: the default network, bridge)")
	fs.StringVar(&f.network, "net", "", "alias of --network")
	_ = fs.MarkHidden("net")
	fs.StringVar(&f.ip, "ip", "", "IPv4 address on the network (default: the next free one)")
	fs.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a port [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (ranges: 8000-8001:80-81)")
	fs.StringArrayVar(&f.dns, "dns", nil, "DNS server for the container (replaces the network's resolver)")
	fs.StringArrayVar(&f.dnsSearch, "dns-search", nil, "DNS search domain")
	fs.StringArrayVar(&f.hosts, "add-host", nil, "extra /etc/hosts entry NAME:IP (IP may be host-gateway)")
	fs.StringArrayVar(&f.aliases, "network-alias", nil, "extra name of the container on its network")
}

// options turns the flags into the lifecycle's network options.
func (f *networkFlags) options() (lifecycle.NetworkOptions, error) {
	o := lifecycle.NetworkOptions{Network: f.network, IP: f.ip, DNS: f.dns, DNSSearch: f.dnsSearch, Aliases: f.aliases}
	if f.ip != "" {
		if a, err := netip.ParseAddr(f.ip); err != nil || !a.Is4() {
			return o, fmt.Errorf("--ip %q: want an IPv4 address", f.ip)
		}
	}
	for _, d := range f.dns {
		if _, err := netip.ParseAddr(d); err != nil {
			return o, fmt.Errorf("--dns %q: want an IP address", d)
		}
	}
	for _, p := range f.publish {
		ms, err := network.ParsePublish(p)
		if err != nil {
			return o, err
		}
		o.Ports = append(o.Ports, ms...)
	}
	for _, h := range f.hosts {
		e, err := network.ParseHostEntry(h)
		if err != nil {
			return o, err
		}
		o.ExtraHosts = append(o.ExtraHosts, e)
	}
	isBridge := f.network != network.None && f.network != network.Host
	if !isBridge && (f.ip != "" || len(f.publish) > 0 || len(f.aliases) > 0) {
		return o, fmt.Errorf("--network %s: --ip, --publish and --network-alias need a bridge network", f.network)
	}
	return o, nil
}
