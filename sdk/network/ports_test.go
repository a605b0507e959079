package network

import (
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

func TestParsePublish(t *testing.T) {
	pm := func(ip string, host, ctr uint16, proto string) isolation.PortMapping {
		return isolation.PortMapping{HostIP: ip, HostPort: host, ContainerPort: ctr, Protocol: proto}
	}
	ok := []struct {
		in   string
		want []isolation.PortMapping
	}{
		{"80", []isolation.PortMapping{pm("", 0, 80, "tcp")}},
		{"80/udp", []isolation.PortMapping{pm("", 0, 80, "udp")}},
		{"80/TCP", []isolation.PortMapping{pm("", 0, 80, "tcp")}},
		{"8080:80", []isolation.PortMapping{pm("", 8080, 80, "tcp")}},
		{"0:80", []isolation.PortMapping{pm("", 0, 80, "tcp")}},
		{"127.0.0.1:8080:80", []isolation.PortMapping{pm("127.0.0.1", 8080, 80, "tcp")}},
		{"127.0.0.1::80", []isolation.PortMapping{pm("127.0.0.1", 0, 80, "tcp")}},
		{"127.0.0.1:8080:80/udp", []isolation.PortMapping{pm("127.0.0.1", 8080, 80, "udp")}},
		{"[::1]:8080:80", []isolation.PortMapping{pm("::1", 8080, 80, "tcp")}},
		{"[::1]::80/udp", []isolation.PortMapping{pm("::1", 0, 80, "udp")}},
		{":8080:80", []isolation.PortMapping{pm("", 8080, 80, "tcp")}},
		{"8000-8001:80-81", []isolation.PortMapping{pm("", 8000, 80, "tcp"), pm("", 8001, 81, "tcp")}},
		{"127.0.0.1:8000-8002:80-82/udp", []isolation.PortMapping{
			pm("127.0.0.1", 8000, 80, "udp"), pm("127.0.0.1", 8001, 81, "udp"), pm("127.0.0.1", 8002, 82, "udp")}},
		{"80-81", []isolation.PortMapping{pm("", 0, 80, "tcp"), pm("", 0, 81, "tcp")}},
		{"9000-9000:90", []isolation.PortMapping{pm("", 9000, 90, "tcp")}},
		{"65535:65535", []isolation.PortMapping{pm("", 65535, 65535, "tcp")}},
	}
	for _, c := range ok {
		got, err := ParsePublish(c.in)
		if err != nil {
			t.Errorf("ParsePublish(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParsePublish(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	bad := []struct{ in, why string }{
		{"", "no container port"},
		{"/tcp", "no container port"},
		{"80/", "empty protocol"},
		{"80/sctp", "not tcp or udp"},
		{"abc", "not a port number"},
		{"0", "port 0"},
		{"8080:0", "port 0"},
		{"65536", "not a port number"},
		{"8080:65536", "not a port number"},
		{"-1:80", "empty port"},
		{"81-80", "LOW-HIGH"},
		{"8000-8001:80", "single container port"},
		{"8000-8002:80-81", "differ in length"},
		{"8000:80-81", "differ in length"},
		{"999.1.1.1:80:80", "not an IP address"},
		{"localhost:80:80", "not an IP address"},
		{"::1:80:80", "must be in brackets"},
		{"[::1:80:80", "closing bracket"},
		{"[::1]:80", "host port field"},
		{"1:2:3:4", "must be in brackets"},
		{"80:", "empty port"},
		{"8080:80:", "not an IP address"},
	}
	for _, c := range bad {
		_, err := ParsePublish(c.in)
		if err == nil {
			t.Errorf("ParsePublish(%q) succeeded, want an error about %q", c.in, c.why)
			continue
		}
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.why) || !strings.Contains(err.Error(), `"`+c.in+`"`) {
			t.Errorf("ParsePublish(%q) = %v, want InvalidArgument naming the value and %q", c.in, err, c.why)
		}
	}
}

func TestParseHostEntry(t *testing.T) {
	for in, want := range map[string]isolation.HostEntry{
		"db:10.0.0.5":           {Name: "db", IP: "10.0.0.5"},
		"db=10.0.0.5":           {Name: "db", IP: "10.0.0.5"},
		"gw:host-gateway":       {Name: "gw", IP: HostGateway},
		"v6:[2001:db8::1]":      {Name: "v6", IP: "2001:db8::1"},
		"v6=2001:db8::1":        {Name: "v6", IP: "2001:db8::1"},
		"a.example:192.0.2.255": {Name: "a.example", IP: "192.0.2.255"},
	} {
		got, err := ParseHostEntry(in)
		if err != nil || got != want {
			t.Errorf("ParseHostEntry(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "db", "db:", ":1.2.3.4", "db:notanip", "a b:1.2.3.4"} {
		if _, err := ParseHostEntry(in); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseHostEntry(%q) = %v, want InvalidArgument naming it", in, err)
		}
	}
}

func TestFormatPort(t *testing.T) {
	for _, c := range []struct {
		in   isolation.PortMapping
		want string
	}{
		{isolation.PortMapping{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, "80/tcp -> 127.0.0.1:8080"},
		{isolation.PortMapping{HostPort: 5353, ContainerPort: 53, Protocol: "udp"}, "53/udp -> 0.0.0.0:5353"},
		{isolation.PortMapping{HostIP: "::1", HostPort: 1, ContainerPort: 2}, "2/tcp -> [::1]:1"},
	} {
		if got := FormatPort(c.in); got != c.want {
			t.Errorf("FormatPort(%+v) = %q, want %q", c.in, got, c.want)
		}
	}
}
