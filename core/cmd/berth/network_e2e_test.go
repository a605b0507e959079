package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/berth-dev/berth/internal/netdp"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/network"
)

// The network tests drive the berth binary against a real daemon with the
// real plugins, the kernel datapath (internal/netdp) and the per-network
// helpers (internal/netd). Traffic goes only to loopback and into network
// namespaces the test makes: a stand-in "internet" (203.0.113.0/24, a
// documentation range, on a veth pair) and a DNS server on 127.0.0.1 that
// the networks' resolvers forward to (berth.dns_upstreams). Root only.

// networkConfig is containersConfig with the test's upstream resolver.
const networkConfig = `
berth {
  state_dir     = "%s/state"
  runtime_dir   = "%s/run"
  log_level     = "debug"
  dns_upstreams = ["DNS_UPSTREAM"]
  NETWORK_DEFAULTS
}
plugin "api" "grpc" {}
plugin "resources" "cgroup" {
  parent = "CGROUP_PARENT"
}
plugin "snapshot" "overlay" {}
plugin "isolation" "sandbox" {
  default     = true
  snapshotter = "overlay"
}
plugin "lifecycle" "local" {
  restart_backoff = "50ms"
}
`

// Addresses of the stand-in internet.
const (
	inetHostAddr   = "203.0.113.1/24"
	inetServerAddr = "203.0.113.2/24"
	inetServerIP   = "203.0.113.2"
	inetName       = "outside.test."
)

// networkEnv is containerEnv with networking: an upstream DNS server on
// loopback answering inetName, and the daemon configured to forward to it.
func networkEnv(t *testing.T) *env {
	t.Helper()
	return networkEnvWith(t, 'n', "")
}

// networkEnvWith is networkEnv with its own default network (kind, see
// testNetworkDefaults) and extra lines in the berth block.
func networkEnvWith(t *testing.T, kind byte, berthExtra string) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: bridges, veths, nftables, namespaces (CI runs as root)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static missing (scripts/install-deps.sh installs it): the demo image needs it")
	}
	upstream := upstreamDNS(t)
	needSandboxInit(t)
	parent := fmt.Sprintf("berth-nettest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	return startDaemon(t, strings.NewReplacer("CGROUP_PARENT", parent, "DNS_UPSTREAM", upstream,
		"NETWORK_DEFAULTS", testNetworkDefaults(kind)+"\n  "+berthExtra).Replace(networkConfig), parent)
}

// testNetworkDefaults gives a test daemon a default network of its own
// (bridge and subnet from the test process's pid and kind), so test
// daemons, other test runs and a real daemon on the host never share one.
func testNetworkDefaults(kind byte) string {
	pid := os.Getpid()
	third := 0
	switch kind {
	case 'n':
		third = 128
	case 'i':
		third = 64
	}
	return fmt.Sprintf("default_bridge = \"bt%c%d\"\n  default_subnet = \"10.%d.%d.0/25\"",
		kind, pid%1000000, 200+pid%50, third+(pid/50)%128)
}

// upstreamDNS serves inetName → inetServerIP on 127.0.0.1 (udp and tcp,
// one port) and returns its address.
func upstreamDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		_ = pc.Close()
		t.Skipf("cannot take tcp %s for the test resolver as well: %v", addr, err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch {
		case len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, inetName):
			m.Rcode = dns.RcodeNameError
		case r.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(inetName + " 60 IN A " + inetServerIP)
			m.Answer = append(m.Answer, rr)
		} // other types of the name: no data
		_ = w.WriteMsg(m)
	})
	us, ts := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: l, Handler: h}
	go func() { _ = us.ActivateAndServe() }()
	go func() { _ = ts.ActivateAndServe() }()
	t.Cleanup(func() { _ = us.Shutdown(); _ = ts.Shutdown() })
	return addr
}

// ownResolver serves name → ip on a loopback address of its own, port 53
// (udp and tcp), standing in for a container's --dns server; it returns the
// address (no port: --dns takes an IP).
func ownResolver(t *testing.T, name, ip string) string {
	t.Helper()
	var pc net.PacketConn
	var l net.Listener
	var addr string
	for i := range 20 {
		addr = fmt.Sprintf("127.98.%d.%d", os.Getpid()%250, 1+i)
		var err error
		if pc, err = net.ListenPacket("udp", addr+":53"); err != nil {
			continue
		}
		if l, err = net.Listen("tcp", addr+":53"); err != nil {
			_ = pc.Close()
			continue
		}
		break
	}
	if l == nil {
		t.Fatalf("no free 127.98.%d.x:53 for the container's own resolver", os.Getpid()%250)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch {
		case len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, name):
			m.Rcode = dns.RcodeNameError
		case r.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(name + " 60 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})
	us, ts := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: l, Handler: h}
	go func() { _ = us.ActivateAndServe() }()
	go func() { _ = ts.ActivateAndServe() }()
	t.Cleanup(func() { _ = us.Shutdown(); _ = ts.Shutdown() })
	return addr
}

// stubInternet makes the stand-in internet: a netns on a veth pair with the
// host (host end inetHostAddr) running a TCP server on inetServerIP:port
// that answers each connection with "peer <remote address>" and closes.
func stubInternet(t *testing.T) (port int) {
	t.Helper()
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.New()
		ch <- res{h, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	ns := r.h
	t.Cleanup(func() { ns.Close() })
	hostName := fmt.Sprintf("bnt%d", os.Getpid()%100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(hostName); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(inetHostAddr)
	if err := netlink.AddrAdd(host, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := netlink.ParseAddr(inetServerAddr)
	if err := h.AddrAdd(l, b); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	lch := make(chan net.Listener)
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ln, err := net.Listen("tcp", inetServerIP+":0")
		if err != nil {
			errc <- err
			return
		}
		lch <- ln
	}()
	var ln net.Listener
	select {
	case err := <-errc:
		t.Fatal(err)
	case ln = <-lch:
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "peer %s\n", c.RemoteAddr())
			_ = c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// ctrView is what the test reads of `berth inspect CONTAINER`.
type ctrView struct {
	ID              string
	Name            string
	NetworkSettings *networkSettings
}

func (e *env) inspectContainer(name string) ctrView {
	e.t.Helper()
	var vs []ctrView
	if err := json.Unmarshal([]byte(e.mustBerth("inspect", name)), &vs); err != nil || len(vs) != 1 {
		e.t.Fatalf("inspect %s: %v", name, err)
	}
	return vs[0]
}

func (e *env) inspectNetwork(name string) networkView {
	e.t.Helper()
	var vs []networkView
	if err := json.Unmarshal([]byte(e.mustBerth("network", "inspect", name)), &vs); err != nil || len(vs) != 1 {
		e.t.Fatalf("network inspect %s: %v", name, err)
	}
	return vs[0]
}

// freeLoopbackPort returns a TCP port free on 127.0.0.1 a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpBody GETs url, retrying for up to a minute while the server comes up.
func httpBody(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("status %s, read %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// datapathReady reports whether the sandbox plugin joins networks.
func (e *env) datapathReady() bool {
	for _, p := range e.plugins() {
		if p.Layer == "isolation" && p.Name == "sandbox" {
			return slices.Contains(p.Capabilities, isolation.CapNetwork)
		}
	}
	return false
}

// linkExists reports whether the host has interface name.
func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// rulesTagged counts the berth nft rules whose comment has tag.
func rulesTagged(t *testing.T, tag string) int {
	t.Helper()
	rules, err := netdp.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rules {
		if strings.Contains(r.Comment, tag) {
			n++
		}
	}
	return n
}

// echoServer is a busybox TCP echo server on port 7777.
const echoServer = "nc -ll -p 7777 -e cat"

func TestNetworking(t *testing.T) {
	e := networkEnv(t)
	if !e.datapathReady() {
		t.Fatalf("the sandbox isolation plugin does not declare %q: containers cannot join networks", isolation.CapNetwork)
	}
	inetPort := stubInternet(t)

	var app, other network.Network
	t.Run("network objects", func(t *testing.T) {
		e.t = t
		appID := strings.TrimSpace(e.mustBerth("network", "create", "--subnet", "10.231.0.0/24", "--label", "tier=web", "app"))
		otherID := strings.TrimSpace(e.mustBerth("network", "create", "other"))
		e.mustBerth("network", "create", "--internal", "intnet")
		var ns []network.Network
		if err := json.Unmarshal([]byte(e.mustBerth("network", "ls", "--format", "json")), &ns); err != nil {
			t.Fatal(err)
		}
		byName := map[string]network.Network{}
		for _, n := range ns {
			byName[n.Name] = n
		}
		app, other = byName["app"], byName["other"]
		if app.ID != appID || app.Subnet != "10.231.0.0/24" || app.Gateway != "10.231.0.1" || app.Labels["tier"] != "web" ||
			other.ID != otherID || !byName["intnet"].Internal || !strings.HasPrefix(byName[network.DefaultNetwork].Bridge, "btn") {
			t.Fatalf("network ls: %+v", ns)
		}
		table := e.mustBerth("network", "ls")
		for _, w := range []string{"NETWORK ID", appID[:12], "app", "10.231.0.0/24", "intnet"} {
			if !strings.Contains(table, w) {
				t.Errorf("network ls lacks %q:\n%s", w, table)
			}
		}
		if v := e.inspectNetwork(appID[:8]); v.Name != "app" || v.Bridge != "br-"+appID[:12] {
			t.Errorf("network inspect by ID prefix: %+v", v)
		}
		if !linkExists(app.Bridge) || !linkExists(other.Bridge) {
			t.Errorf("bridges %s, %s missing", app.Bridge, other.Bridge)
		}
		// The REST gateway serves networks too.
		rest := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", filepath.Join(e.dir, "run", "api-grpc", "api-rest.sock"))
			}}}
		for path, want := range map[string]string{
			"/v1/networks":      `"name":"app"`,
			"/v1/networks/app":  `"subnet":"10.231.0.0/24"`,
			"/v1/networks/nope": `not found`,
		} {
			resp, err := rest.Get("http://berth" + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if !strings.Contains(string(body), want) || (path == "/v1/networks/nope") != (resp.StatusCode == http.StatusNotFound) {
				t.Errorf("GET %s: %s %s; want %q", path, resp.Status, body, want)
			}
		}
		// Bad input: clear errors, nothing half-created.
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"network", "create", "--subnet", "10.231.0.128/25", "clash"}, "overlaps network app"},
			{[]string{"network", "create", "--subnet", "10.999.0.0/24", "bad"}, `"10.999.0.0/24"`},
			{[]string{"network", "create", "app"}, "already exists"},
			{[]string{"network", "inspect", "nosuch"}, `"nosuch" not found`},
			{[]string{"run", "--rm", "-p", "80:abc", demoImage, "true"}, `publish "80:abc"`},
			{[]string{"run", "--rm", "--network", "nosuch", demoImage, "true"}, `"nosuch" not found`},
			{[]string{"run", "--rm", "--network", "app", "--ip", "10.231.1.5", demoImage, "true"}, "10.231.1.5"},
		} {
			_, stderr, code := e.berth(c.args...)
			if code == 0 || !strings.Contains(stderr, c.want) {
				t.Errorf("berth %q: exit %d, stderr %q; want an error with %q", c.args, code, stderr, c.want)
			}
		}
		for _, name := range []string{"clash", "bad"} {
			if _, _, code := e.berth("network", "inspect", name); code == 0 {
				t.Errorf("failed create left network %s", name)
			}
		}
		if ps := e.psEntries(); len(ps) != 0 {
			t.Errorf("failed runs left containers: %+v", ps)
		}
	})
	if app.ID == "" {
		t.FailNow()
	}

	t.Run("same network talks by name", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "srv", "--network", "app", "--network-alias", "echo", demoImage, "sh", "-c", echoServer)
		e.mustBerth("run", "-d", "--name", "cli", "--network", "app", demoImage, "sh", "-c", echoServer)
		srv := e.inspectContainer("srv")
		if ns := srv.NetworkSettings; ns == nil || ns.Network != "app" || !strings.HasPrefix(ns.IPAddress, "10.231.0.") ||
			ns.Gateway != "10.231.0.1" || ns.IPPrefixLen != 24 || ns.MacAddress == "" {
			t.Fatalf("srv NetworkSettings %+v", srv.NetworkSettings)
		}
		echo := func(from, to string) string {
			t.Helper()
			var out, stderr string
			var code int
			for range 20 { // the server may still be starting
				out, stderr, code = e.berth("exec", from, "sh", "-c", "echo hello-"+from+" | nc -w 5 "+to+" 7777")
				if code == 0 && out != "" {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if code != 0 {
				t.Errorf("%s → %s: exit %d %s", from, to, code, stderr)
			}
			return out
		}
		if got := echo("cli", "srv"); got != "hello-cli\n" {
			t.Errorf("cli → srv echoed %q", got)
		}
		if got := echo("srv", "cli"); got != "hello-srv\n" {
			t.Errorf("srv → cli echoed %q", got)
		}
		if got := echo("cli", "echo"); got != "hello-cli\n" {
			t.Errorf("cli → alias echo echoed %q", got)
		}
		// A renamed container answers to its new name.
		e.mustBerth("rename", "srv", "server")
		if got := echo("cli", "server"); got != "hello-cli\n" {
			t.Errorf("cli → renamed server echoed %q", got)
		}
		e.mustBerth("rename", "server", "srv")
		// /etc/resolv.conf names the network's resolver; the host resolves.
		out := e.mustBerth("exec", "cli", "cat", "/etc/resolv.conf")
		if !strings.Contains(out, "nameserver 10.231.0.1") {
			t.Errorf("resolv.conf:\n%s", out)
		}
		out = e.mustBerth("exec", "cli", "nslookup", network.HostGatewayName)
		if !strings.Contains(out, "10.231.0.1") {
			t.Errorf("nslookup %s:\n%s", network.HostGatewayName, out)
		}
	})

	t.Run("networks are isolated", func(t *testing.T) {
		e.t = t
		srvIP := e.inspectContainer("srv").NetworkSettings.IPAddress
		out, _, code := e.berth("run", "--rm", "--network", "other", demoImage, "sh", "-c", "echo x | nc -w 3 "+srvIP+" 7777")
		if code == 0 && strings.Contains(out, "x") {
			t.Errorf("a container on network other reached srv on app (%s): %q", srvIP, out)
		}
		out, _, code = e.berth("run", "--rm", "--network", "other", demoImage, "nslookup", "srv")
		if code == 0 && strings.Contains(out, srvIP) {
			t.Errorf("network other resolves srv of network app:\n%s", out)
		}
	})

	t.Run("outbound NAT and upstream DNS", func(t *testing.T) {
		e.t = t
		out, stderr, code := e.berth("run", "--rm", "--network", "app", demoImage, "sh", "-c",
			fmt.Sprintf("nc -w 5 %s %d </dev/null", inetServerIP, inetPort))
		if code != 0 || !strings.HasPrefix(out, "peer 203.0.113.1:") {
			t.Errorf("container → stand-in internet: exit %d, %q %s; want the host's address (masquerade)", code, out, stderr)
		}
		out, stderr, code = e.berth("run", "--rm", demoImage, "nslookup", strings.TrimSuffix(inetName, "."))
		if code != 0 || !strings.Contains(out, inetServerIP) {
			t.Errorf("nslookup %s through the upstream: exit %d\n%s%s", inetName, code, out, stderr)
		}
		// --dns: the network's resolver stays in resolv.conf (container
		// names resolve) and forwards other names to the container's own
		// resolver, not to the network's upstream.
		own := ownResolver(t, "private.test.", "198.51.100.7")
		srvIP := e.inspectContainer("srv").NetworkSettings.IPAddress
		conf, stderr, code := e.berth("run", "--rm", "--network", "app", "--dns", own, "--dns-search", "example.test", demoImage, "cat", "/etc/resolv.conf")
		if code != 0 || !strings.Contains(conf, "nameserver 10.231.0.1") || strings.Contains(conf, own) || !strings.Contains(conf, "search example.test") {
			t.Errorf("--dns %s --dns-search example.test: exit %d; want resolv.conf naming the network's resolver and the search domain\n%s%s", own, code, conf, stderr)
		}
		out, stderr, code = e.berth("run", "--rm", "--network", "app", "--dns", own, demoImage, "sh", "-c", "nslookup srv; echo ---; nslookup private.test")
		byName, byOwn, _ := strings.Cut(out, "---")
		if code != 0 || !strings.Contains(byName, srvIP) || !strings.Contains(byOwn, "198.51.100.7") {
			t.Errorf("--dns %s: exit %d; want srv → %s (the network's name), private.test → 198.51.100.7 (own resolver)\n%s%s", own, code, srvIP, out, stderr)
		}
		out, _, _ = e.berth("run", "--rm", "--network", "app", demoImage, "nslookup", "private.test")
		if strings.Contains(out, "198.51.100.7") {
			t.Errorf("a container without --dns reached the other container's resolver:\n%s", out)
		}
	})

	t.Run("internal and none", func(t *testing.T) {
		e.t = t
		out, _, code := e.berth("run", "--rm", "--network", "intnet", demoImage, "sh", "-c",
			fmt.Sprintf("nc -w 3 %s %d </dev/null", inetServerIP, inetPort))
		if code == 0 || strings.Contains(out, "peer") {
			t.Errorf("an internal network reached the stand-in internet: exit %d %q", code, out)
		}
		out = e.mustBerth("run", "--rm", "--network", "none", demoImage, "cat", "/proc/net/dev")
		var ifs []string
		for _, l := range strings.Split(out, "\n")[2:] {
			if name, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
				ifs = append(ifs, name)
			}
		}
		if !slices.Equal(ifs, []string{"lo"}) {
			t.Errorf("--network none interfaces %q, want only lo", ifs)
		}
	})

	port := freeLoopbackPort(t)
	t.Run("publish", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "-p", "8125/udp", demoImage,
			"sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www")
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		if got := httpBody(t, url); got != "hello-from-web\n" {
			t.Fatalf("GET %s = %q", url, got)
		}
		out := e.mustBerth("port", "web")
		if !strings.Contains(out, fmt.Sprintf("80/tcp -> 127.0.0.1:%d", port)) || !strings.Contains(out, "8125/udp -> 0.0.0.0:") {
			t.Errorf("port web:\n%s", out)
		}
		if got := strings.TrimSpace(e.mustBerth("port", "web", "80")); got != fmt.Sprintf("127.0.0.1:%d", port) {
			t.Errorf("port web 80 = %q", got)
		}
		if ps := e.mustBerth("ps"); !strings.Contains(ps, fmt.Sprintf("127.0.0.1:%d->80/tcp", port)) {
			t.Errorf("ps shows no published port:\n%s", ps)
		}
		ns := e.inspectContainer("web").NetworkSettings
		if ns == nil || ns.Network != network.DefaultNetwork || ns.Ports["80/tcp"][0].HostPort != strconv.Itoa(port) {
			t.Fatalf("web NetworkSettings %+v", ns)
		}
		// The port is taken now: another container cannot have it, and
		// nothing is left of the attempt.
		_, stderr, code := e.berth("run", "-d", "--name", "web2", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), demoImage, "true")
		if code == 0 || !strings.Contains(stderr, strconv.Itoa(port)) {
			t.Errorf("second publish of %d: exit %d %s", port, code, stderr)
		}
		// A port some other process holds.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		busy := l.Addr().(*net.TCPAddr).Port
		_, stderr, code = e.berth("run", "-d", "--name", "web3", "-p", fmt.Sprintf("127.0.0.1:%d:80", busy), demoImage, "true")
		_ = l.Close()
		if code == 0 || !strings.Contains(stderr, "in use") {
			t.Errorf("publish of a busy port %d: exit %d %s", busy, code, stderr)
		}
		for _, n := range []string{"web2", "web3"} {
			if _, ok := e.find(n); ok {
				t.Errorf("failed run left container %s", n)
			}
		}
		// The published port keeps answering while the daemon is down.
		st := e.daemonStatus()
		if err := syscall.Kill(st.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the daemon to exit", func() bool { return !processAlive(st.Pid) })
		if got := httpBody(t, url); got != "hello-from-web\n" {
			t.Errorf("GET %s with the daemon stopped = %q", url, got)
		}
		e.mustBerth("system", "start")
		e.warmUp()
		if got := httpBody(t, url); got != "hello-from-web\n" {
			t.Errorf("GET %s after the daemon came back = %q", url, got)
		}
	})

	t.Run("daemon SIGKILL keeps addresses and ports", func(t *testing.T) {
		e.t = t
		before := map[string]string{}
		for _, n := range []string{"srv", "cli", "web"} {
			before[n] = e.inspectContainer(n).NetworkSettings.IPAddress
		}
		st := e.daemonStatus()
		if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the daemon to die", func() bool { return !processAlive(st.Pid) })
		e.mustBerth("system", "start")
		e.warmUp()
		for n, ip := range before {
			if got := e.inspectContainer(n).NetworkSettings; got == nil || got.IPAddress != ip {
				t.Errorf("%s after a daemon SIGKILL: %+v, want IP %s", n, got, ip)
			}
		}
		if got := httpBody(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); got != "hello-from-web\n" {
			t.Errorf("published port after a daemon SIGKILL = %q", got)
		}
		out := e.mustBerth("run", "--rm", "--network", "app", demoImage, "sh", "-c", "echo again | nc -w 5 srv 7777")
		if out != "again\n" {
			t.Errorf("srv by name after a daemon SIGKILL echoed %q", out)
		}
		// A new container never gets an address in use.
		fresh := e.mustBerth("run", "--rm", "--network", "app", demoImage, "sh", "-c", "ip -4 -o addr show eth0")
		for n, ip := range before {
			if strings.Contains(fresh, " "+ip+"/") {
				t.Errorf("a new container got %s's address %s", n, ip)
			}
		}
	})

	t.Run("connect and disconnect", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "joiner", "--network", "other", demoImage, "sh", "-c", echoServer)
		joiner := e.inspectContainer("joiner")
		e.mustBerth("network", "connect", "--ip", "10.231.0.77", "--alias", "jn", "app", "joiner")
		if out := e.mustBerth("exec", "joiner", "ip", "-4", "-o", "addr", "show", "eth1"); !strings.Contains(out, "10.231.0.77/24") {
			t.Errorf("joiner's eth1 after connect:\n%s", out)
		}
		// Names on the new network, both ways (the resolver of app has
		// joiner's records; joiner's resolv.conf still names other's).
		echo := func(from, to string) string {
			t.Helper()
			var out string
			for range 40 {
				out, _, _ = e.berth("exec", from, "sh", "-c", "echo hello-"+from+" | nc -w 5 "+to+" 7777")
				if out != "" {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			return out
		}
		if got := echo("srv", "jn"); got != "hello-srv\n" {
			t.Errorf("srv → joiner by its alias on app: %q", got)
		}
		if got := echo("srv", "joiner"); got != "hello-srv\n" {
			t.Errorf("srv → joiner by name on app: %q", got)
		}
		srvIP := e.inspectContainer("srv").NetworkSettings.IPAddress
		if got := echo("joiner", srvIP); got != "hello-joiner\n" {
			t.Errorf("joiner → srv over the connected network: %q", got)
		}
		if hosts := e.mustBerth("exec", "joiner", "cat", "/etc/hosts"); strings.Contains(hosts, "10.231.0.77") {
			t.Errorf("/etc/hosts changed by connect (Docker leaves it):\n%s", hosts)
		}
		if ns := e.inspectContainer("joiner").NetworkSettings; ns == nil || ns.Network != "other" {
			t.Errorf("inspect shows %+v, want the first network (other)", ns)
		}
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"network", "connect", "app", "joiner"}, "already on network app"},
			{[]string{"network", "connect", "nosuch", "joiner"}, `"nosuch" not found`},
			{[]string{"network", "disconnect", "other", "joiner"}, "first network"},
			{[]string{"network", "disconnect", "intnet", "joiner"}, "not connected"},
			{[]string{"network", "connect", "--ip", "10.231.0.77", "app", "web"}, "10.231.0.77"}, // taken by joiner
		} {
			if _, stderr, code := e.berth(c.args...); code == 0 || !strings.Contains(stderr, c.want) {
				t.Errorf("berth %q: exit %d, stderr %q; want an error with %q", c.args, code, stderr, c.want)
			}
		}
		// A restart wires the connected network again, same address.
		e.mustBerth("restart", "-t", "1", "joiner")
		if out := e.mustBerth("exec", "joiner", "ip", "-4", "-o", "addr", "show", "eth1"); !strings.Contains(out, "10.231.0.77/24") {
			t.Errorf("joiner's eth1 after restart:\n%s", out)
		}
		if got := echo("srv", "jn"); got != "hello-srv\n" {
			t.Errorf("srv → joiner's alias after joiner's restart: %q", got)
		}
		e.mustBerth("network", "disconnect", "app", "joiner")
		if out, _, _ := e.berth("exec", "joiner", "ip", "-4", "-o", "addr"); strings.Contains(out, "10.231.0.77") {
			t.Errorf("address left after disconnect:\n%s", out)
		}
		if linkExists(netdp.ConnectedVethName(joiner.ID, app.Bridge)) {
			t.Errorf("host veth of the connection left after disconnect")
		}
		if out, _, code := e.berth("exec", "srv", "nslookup", "jn"); code == 0 && strings.Contains(out, "10.231.0.77") {
			t.Errorf("app still resolves joiner's alias after disconnect:\n%s", out)
		}
		if ep, ok := e.inspectNetwork("app").Endpoints[joiner.ID]; ok {
			t.Errorf("endpoint (IPAM entry) of joiner left on app: %+v", ep)
		}
		// A removed container's connections go with it.
		e.mustBerth("network", "connect", "app", "joiner")
		e.mustBerth("rm", "-f", "joiner")
		for _, n := range []string{"app", "other"} {
			if _, ok := e.inspectNetwork(n).Endpoints[joiner.ID]; ok {
				t.Errorf("endpoint of removed joiner left on %s", n)
			}
		}
		if linkExists(netdp.ConnectedVethName(joiner.ID, app.Bridge)) || linkExists(netdp.HostVethName(joiner.ID)) {
			t.Errorf("veths of removed joiner left")
		}
	})

	t.Run("nothing left after rm and network rm", func(t *testing.T) {
		e.t = t
		srv, cli, web := e.inspectContainer("srv"), e.inspectContainer("cli"), e.inspectContainer("web")
		_, stderr, code := e.berth("network", "rm", "app")
		if code == 0 || !strings.Contains(stderr, "srv") || !strings.Contains(stderr, "cli") {
			t.Errorf("network rm of a used network: exit %d %s", code, stderr)
		}
		e.mustBerth("rm", "-f", "srv", "cli", "web")
		for _, c := range []ctrView{srv, cli, web} {
			if linkExists(netdp.HostVethName(c.ID)) {
				t.Errorf("host veth of %s left", c.Name)
			}
			if n := rulesTagged(t, c.ID); n != 0 {
				t.Errorf("%d nft rules of %s left", n, c.Name)
			}
		}
		for _, n := range []string{"app", network.DefaultNetwork} {
			if eps := e.inspectNetwork(n).Endpoints; len(eps) != 0 {
				t.Errorf("network %s still has endpoints (IPAM entries): %+v", n, eps)
			}
		}
		// The port is free again.
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			t.Errorf("published port %d still held after rm: %v", port, err)
		} else {
			_ = l.Close()
		}
		helperPid := readPid(filepath.Join(e.dir, "state", "network", app.ID, "helper.pid"))
		e.mustBerth("network", "rm", "app", "other")
		removed := strings.Fields(e.mustBerth("network", "prune", "-f"))
		if !slices.Contains(removed, "intnet") {
			t.Errorf("prune removed %q, want intnet", removed)
		}
		for _, n := range []network.Network{app, other} {
			if linkExists(n.Bridge) {
				t.Errorf("bridge %s of %s left", n.Bridge, n.Name)
			}
			if c := rulesTagged(t, n.ID); c != 0 {
				t.Errorf("%d nft rules of network %s left", c, n.Name)
			}
			if _, err := os.Stat(filepath.Join(e.dir, "state", "network", n.ID)); !os.IsNotExist(err) {
				t.Errorf("state of network %s left: %v", n.Name, err)
			}
		}
		if helperPid == 0 {
			t.Errorf("no helper pid recorded for app")
		} else {
			eventually(t, "app's helper to exit", func() bool { return !processAlive(helperPid) })
		}
		var ns []network.Network
		if err := json.Unmarshal([]byte(e.mustBerth("network", "ls", "--format", "json")), &ns); err != nil {
			t.Fatal(err)
		}
		if len(ns) != 1 || ns[0].Name != network.DefaultNetwork {
			t.Fatalf("networks left: %+v", ns)
		}
		// The default network goes too when unused (and comes back on use).
		def := ns[0]
		e.mustBerth("network", "rm", network.DefaultNetwork)
		if linkExists(def.Bridge) || rulesTagged(t, def.ID) != 0 {
			t.Errorf("default network's bridge %s or rules left after network rm", def.Bridge)
		}
	})
}

func (e *env) daemonStatus() api.Status {
	e.t.Helper()
	var st api.Status
	if err := json.Unmarshal([]byte(e.mustBerth("system", "status", "--format", "json")), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// TestNetworkingIptables runs a daemon with `firewall = "iptables-legacy"`:
// its plugins inherit the choice, so a published port's DNAT rule and the
// default network's rules are in iptables-legacy's BERTH- chains and none in
// the nftables table; containers reach each other by name and the host
// reaches the published port; rm and network rm leave no rule. Root only.
func TestNetworkingIptables(t *testing.T) {
	bin, err := exec.LookPath("iptables-legacy")
	if err != nil {
		t.Skipf("iptables-legacy missing (scripts/install-deps.sh installs iptables): %v", err)
	}
	e := networkEnvWith(t, 'i', `firewall = "iptables-legacy"`)
	ipt := func(table, chain string) string {
		t.Helper()
		out, err := exec.Command(bin, "-w", "-t", table, "-S", chain).CombinedOutput()
		if err != nil {
			return "" // the chain is gone
		}
		return string(out)
	}
	e.mustBerth("run", "-d", "--name", "iptweb", "-p", "80", demoImage, "sh", "-c",
		"mkdir -p /www && echo hello-ipt > /www/index.html && exec httpd -f -p 80 -h /www")
	web := e.inspectContainer("iptweb")
	ns := web.NetworkSettings
	if ns == nil || len(ns.Ports["80/tcp"]) == 0 {
		t.Fatalf("iptweb NetworkSettings %+v", ns)
	}
	if pub := ipt("nat", "BERTH-PUBLISH"); !strings.Contains(pub, "berth ctr "+web.ID) || !strings.Contains(pub, ns.IPAddress+":80") {
		t.Errorf("no DNAT rule of iptweb in iptables-legacy's BERTH-PUBLISH:\n%s", pub)
	}
	if fwd := ipt("filter", "BERTH-FORWARD"); !strings.Contains(fwd, ns.NetworkID) {
		t.Errorf("no rules of the default network in BERTH-FORWARD:\n%s", fwd)
	}
	if n := rulesTagged(t, web.ID) + rulesTagged(t, ns.NetworkID); n != 0 {
		t.Errorf("%d nftables rules of ours with firewall = iptables-legacy", n)
	}
	if got := httpBody(t, "http://"+ns.Gateway+":"+ns.Ports["80/tcp"][0].HostPort+"/"); got != "hello-ipt\n" {
		t.Errorf("host → published port on the gateway address: %q", got)
	}
	if out, stderr, code := e.berth("run", "--rm", demoImage, "wget", "-q", "-O", "-", "http://iptweb/"); code != 0 || out != "hello-ipt\n" {
		t.Errorf("container → iptweb by name: exit %d %q %s", code, out, stderr)
		logs, _ := filepath.Glob(filepath.Join(e.dir, "state", "network", "*", "helper.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
	}
	e.mustBerth("rm", "-f", "iptweb")
	if pub := ipt("nat", "BERTH-PUBLISH"); strings.Contains(pub, web.ID) {
		t.Errorf("DNAT rule of removed iptweb left:\n%s", pub)
	}
	e.mustBerth("network", "rm", network.DefaultNetwork)
	for _, table := range []string{"filter", "nat"} {
		if out := ipt(table, ""); strings.Contains(out, ns.NetworkID) {
			t.Errorf("rules of the removed default network left in %s:\n%s", table, out)
		}
	}
}
