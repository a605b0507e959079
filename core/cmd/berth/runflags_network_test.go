package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

func TestRunNetworkFlags(t *testing.T) {
	cfg, err := parseRunFlags(t, "--network", "app", "--ip", "10.89.0.9", "-p", "127.0.0.1:8080:80",
		"-p", "8000-8001:90-91/udp", "--publish", "53", "--dns", "10.0.0.2", "--dns-search", "example.test",
		"--add-host", "db:192.0.2.1", "--add-host", "gw:host-gateway", "--network-alias", "www", "IMG")
	if err != nil {
		t.Fatal(err)
	}
	want := lifecycle.NetworkOptions{
		Network: "app", IP: "10.89.0.9", DNS: []string{"10.0.0.2"}, DNSSearch: []string{"example.test"}, Aliases: []string{"www"},
		Ports: []isolation.PortMapping{
			{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
			{HostPort: 8000, ContainerPort: 90, Protocol: "udp"},
			{HostPort: 8001, ContainerPort: 91, Protocol: "udp"},
			{ContainerPort: 53, Protocol: "tcp"},
		},
		ExtraHosts: []isolation.HostEntry{{Name: "db", IP: "192.0.2.1"}, {Name: "gw", IP: "host-gateway"}},
	}
	if !reflect.DeepEqual(cfg.Network, want) {
		t.Errorf("network options\n got %+v\nwant %+v", cfg.Network, want)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-p", "80:abc"}, `publish "80:abc"`},
		{[]string{"-p", "1.2.3:80:80"}, "not an IP address"},
		{[]string{"--ip", "10.0.0"}, `--ip "10.0.0"`},
		{[]string{"--dns", "resolver"}, `--dns "resolver"`},
		{[]string{"--add-host", "nocolon"}, `add-host "nocolon"`},
		{[]string{"--network", "none", "-p", "80"}, "need a bridge network"},
		{[]string{"--network", "host", "--ip", "10.1.1.1"}, "need a bridge network"},
	} {
		_, err := parseRunFlags(t, append(c.args, "IMG")...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.args, err, c.want)
		}
	}
}
