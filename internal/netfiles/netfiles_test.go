package netfiles

import (
	"testing"

	"github.com/berth-dev/berth/sdk/isolation"
)

func TestFiles(t *testing.T) {
	n := &isolation.NetworkAttachment{Mode: "bridge", Hostname: "web",
		Interfaces: []isolation.Interface{{Name: "eth0", Addresses: []string{"10.88.0.5/16"}}},
		DNS:        isolation.DNS{Servers: []string{"10.88.0.1"}, Search: []string{"a.test", "b.test"}, Options: []string{"ndots:1"}},
		Hosts:      []isolation.HostEntry{{Name: "host.berth.internal", IP: "10.88.0.1"}}}
	got := map[string]string{}
	for _, f := range Files(n, "ignored", "nameserver 9.9.9.9\n") {
		got[f.Path] = f.Content
	}
	wantHosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n" +
		"10.88.0.5\tweb\n10.88.0.1\thost.berth.internal\n"
	if got["/etc/hosts"] != wantHosts {
		t.Errorf("hosts:\n%q\nwant\n%q", got["/etc/hosts"], wantHosts)
	}
	if want := "nameserver 10.88.0.1\nsearch a.test b.test\noptions ndots:1\n"; got["/etc/resolv.conf"] != want {
		t.Errorf("resolv.conf %q, want %q", got["/etc/resolv.conf"], want)
	}
	if got["/etc/hostname"] != "web\n" {
		t.Errorf("hostname %q", got["/etc/hostname"])
	}
	// No hostname in the attachment: the spec's, and no own-address line.
	n.Hostname = ""
	fs := Files(n, "fromspec", "")
	if fs[2].Content != "fromspec\n" {
		t.Errorf("hostname %q, want the spec's", fs[2].Content)
	}
	if want := wantHosts[:len(wantHosts)-len("10.88.0.5\tweb\n10.88.0.1\thost.berth.internal\n")] + "10.88.0.1\thost.berth.internal\n"; fs[0].Content != want {
		t.Errorf("hosts without hostname %q", fs[0].Content)
	}
}

func TestResolvFromHost(t *testing.T) {
	host := "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.7\nnameserver bogus\nsearch x\n"
	if got, want := Resolv(isolation.DNS{}, host), "nameserver 192.0.2.7\n"; got != want {
		t.Errorf("Resolv = %q, want %q (loopback and malformed servers skipped)", got, want)
	}
}
