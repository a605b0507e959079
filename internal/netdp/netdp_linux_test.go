package netdp

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/isolation"
)

// These tests change the host's network datapath (bridges, veths, the
// berth nft table) and so need root. Their traffic stays between network
// namespaces they create and the host's ends of those.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates bridges, veths, network namespaces and nft rules (CI runs as root)")
	}
}

func randID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testNetwork is a network on 10.213.<n>.0/24 with a fresh ID; its
// cleanup removes it and checks nothing of it is left.
func testNetwork(t *testing.T, n int, internal bool) Network {
	t.Helper()
	id := randID(t)
	nw := Network{ID: id, Bridge: "bt-" + id[:12], Subnet: netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", n)),
		Gateway: netip.MustParseAddr(fmt.Sprintf("10.213.%d.1", n)), Internal: internal}
	if err := EnsureNetwork(context.Background(), nw); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveNetwork(context.Background(), nw); err != nil {
			t.Errorf("remove network: %v", err)
		}
		assertNetworkGone(t, nw)
	})
	return nw
}

func assertNetworkGone(t *testing.T, n Network) {
	t.Helper()
	if _, err := netlink.LinkByName(n.Bridge); err == nil {
		t.Errorf("bridge %s still exists", n.Bridge)
	}
	rules, err := Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if strings.Contains(r.Comment, n.ID) {
			t.Errorf("rule left in chain %s: %q", r.Chain, r.Comment)
		}
		if id, target, ok := parseCtrTag(r.Comment); ok && n.Subnet.Contains(target) {
			t.Errorf("publish rule of %s left for %s", id, target)
		}
	}
	brs, err := BridgesInTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(brs, n.Bridge) {
		t.Errorf("bridge %s still in the bridges set", n.Bridge)
	}
}

// testNS makes a network namespace (held by an fd) and returns it with a
// path to it; cleanup closes it, which destroys it.
func testNS(t *testing.T) (netns.NsHandle, string) {
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
	t.Cleanup(func() { r.h.Close() })
	return r.h, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(r.h))
}

// inNS runs fn on a thread in ns; sockets fn makes stay in ns.
func inNS(t *testing.T, ns netns.NsHandle, fn func() error) error {
	t.Helper()
	ch := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			ch <- err
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// container makes a netns attached to n at address host .<last> and
// returns it; cleanup detaches and checks the veth is gone.
func container(t *testing.T, n Network, last int) (netns.NsHandle, netip.Addr, string) {
	t.Helper()
	ns, path := testNS(t)
	id := randID(t)
	ip := n.Subnet.Addr().As4()
	ip[3] = byte(last)
	addr := netip.AddrFrom4(ip)
	host, err := AttachNetns(context.Background(), path, Interface{ContainerID: id, Name: "eth0", Bridge: n.Bridge,
		MAC: fmt.Sprintf("02:42:0a:d5:%02x:%02x", ip[2], ip[3]), Addresses: []netip.Prefix{netip.PrefixFrom(addr, 24)},
		Gateway: n.Gateway, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	if host != HostVethName(id) {
		t.Fatalf("host veth %s, want %s", host, HostVethName(id))
	}
	t.Cleanup(func() {
		for range 2 {
			if err := DetachNetns(context.Background(), id); err != nil {
				t.Errorf("detach: %v", err)
			}
		}
		if _, err := netlink.LinkByName(host); err == nil {
			t.Errorf("veth %s left after detach", host)
		}
	})
	return ns, addr, id
}

// echoServer listens on addr in ns and answers each connection with the
// peer's address it saw, then echoes one line.
func echoServer(t *testing.T, ns netns.NsHandle, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := inNS(t, ns, func() (err error) { l, err = net.Listen("tcp4", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "%s\n", host)
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprint(c, line)
			}()
		}
	}()
	return l
}

// dial connects from ns (nil: the host) to addr and returns the peer
// address the server reported, after an echo round trip.
func dial(t *testing.T, ns *netns.NsHandle, addr string, timeout time.Duration) (string, error) {
	t.Helper()
	var c net.Conn
	d := net.Dialer{Timeout: timeout}
	var err error
	if ns == nil {
		c, err = d.Dial("tcp4", addr)
	} else {
		err = inNS(t, *ns, func() (err error) { c, err = d.Dial("tcp4", addr); return })
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	seen, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	fmt.Fprint(c, "ping\n")
	echo, err := br.ReadString('\n')
	if err != nil || echo != "ping\n" {
		return "", fmt.Errorf("echo %q: %v", echo, err)
	}
	return strings.TrimSpace(seen), nil
}

// internet makes a stand-in for the outside world: a netns joined to the
// host by a veth pair, host end 198.18.213.1/24, its end 198.18.213.2/24.
func internet(t *testing.T) netns.NsHandle {
	t.Helper()
	ns, _ := testNS(t)
	hostName := "vbtinet" + randID(t)[:6]
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
	a, _ := netlink.ParseAddr("198.18.213.1/24")
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
	defer h.Delete()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := netlink.ParseAddr("198.18.213.2/24")
	if err := h.AddrAdd(l, b); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return ns
}

func countTagged(t *testing.T, tag string) map[string]int {
	t.Helper()
	rules, err := Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rules {
		if strings.Contains(r.Comment, tag) {
			out[r.Chain]++
		}
	}
	return out
}

func TestEnsureAndRemoveNetworkAreIdempotent(t *testing.T) {
	requireRoot(t)
	for _, internal := range []bool{false, true} {
		t.Run(fmt.Sprintf("internal=%v", internal), func(t *testing.T) {
			id := randID(t)
			n := Network{ID: id, Bridge: "bt-" + id[:12], Subnet: netip.MustParsePrefix("10.213.9.0/24"),
				Gateway: netip.MustParseAddr("10.213.9.1"), Internal: internal}
			ctx := context.Background()
			for range 2 {
				if err := EnsureNetwork(ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			l, err := netlink.LinkByName(n.Bridge)
			if err != nil {
				t.Fatal(err)
			}
			if l.Type() != "bridge" || l.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("bridge %s: type %s flags %v", n.Bridge, l.Type(), l.Attrs().Flags)
			}
			addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
			if len(addrs) != 1 || addrs[0].IPNet.String() != "10.213.9.1/24" {
				t.Errorf("bridge addresses %v, want 10.213.9.1/24", addrs)
			}
			got := countTagged(t, n.ID)
			want := map[string]int{"forward": 5, "postrouting": 2}
			if internal {
				want = map[string]int{"forward": 4}
			}
			if !maps_equal(got, want) {
				t.Errorf("rules per chain %v, want %v", got, want)
			}
			brs, _ := BridgesInTable(ctx)
			if !slices.Contains(brs, n.Bridge) {
				t.Errorf("bridges set %v lacks %s", brs, n.Bridge)
			}
			if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "1" {
				t.Errorf("ip_forward = %q", b)
			}
			for range 2 {
				if err := RemoveNetwork(ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			assertNetworkGone(t, n)
		})
	}
}

func maps_equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	bad := []Network{
		{ID: "x", Bridge: "this-name-is-far-too-long", Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.1.0.1")},
		{ID: "x", Bridge: "b", Subnet: netip.MustParsePrefix("10.1.0.1/24"), Gateway: netip.MustParseAddr("10.1.0.1")},
		{ID: "x", Bridge: "b", Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.2.0.1")},
		{ID: "x", Bridge: "b", Subnet: netip.MustParsePrefix("fd00::/64"), Gateway: netip.MustParseAddr("fd00::1")},
		{ID: "", Bridge: "b", Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.1.0.1")},
	}
	for _, n := range bad {
		if err := EnsureNetwork(ctx, n); err == nil {
			t.Errorf("EnsureNetwork(%+v) succeeded", n)
		}
	}
	if _, err := AttachNetns(ctx, "/nonexistent", Interface{ContainerID: "c", Name: "eth0", Bridge: "b", MAC: "zz"}); err == nil || !strings.Contains(err.Error(), "zz") {
		t.Errorf("bad mac: %v", err)
	}
	if err := PublishPorts(ctx, "c", netip.MustParseAddr("10.1.0.2"), []isolation.PortMapping{{HostPort: 0, ContainerPort: 80}}); err == nil {
		t.Error("port 0 accepted")
	}
	if err := PublishPorts(ctx, "c", netip.MustParseAddr("10.1.0.2"), []isolation.PortMapping{{HostPort: 80, ContainerPort: 80, Protocol: "sctp"}}); err == nil || !strings.Contains(err.Error(), "sctp") {
		t.Errorf("sctp: %v", err)
	}
	if got := HostVethName("0123456789abcdef"); got != "vb0123456789a" || len(got) > 15 {
		t.Errorf("HostVethName = %q", got)
	}
}

func TestAttachErrorsLeaveNothing(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	id := randID(t)
	_, path := testNS(t)
	if _, err := AttachNetns(ctx, path, Interface{ContainerID: id, Name: "eth0", Bridge: "bt-nonexistent"}); err == nil || !strings.Contains(err.Error(), "bt-nonexistent") {
		t.Fatalf("missing bridge: %v", err)
	}
	n := testNetwork(t, 8, false)
	// A gateway outside every address's subnet: the route fails, the pair
	// must go.
	_, err := AttachNetns(ctx, path, Interface{ContainerID: id, Name: "eth0", Bridge: n.Bridge,
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.213.8.5/24")}, Gateway: netip.MustParseAddr("192.0.2.77")})
	if err == nil {
		t.Fatal("attach with an unreachable gateway succeeded")
	}
	if _, err := netlink.LinkByName(HostVethName(id)); err == nil {
		t.Errorf("veth %s left after a failed attach", HostVethName(id))
	}
}

func TestTwoContainersOnOneBridgeTalk(t *testing.T) {
	requireRoot(t)
	n := testNetwork(t, 1, false)
	ns1, ip1, _ := container(t, n, 2)
	ns2, ip2, _ := container(t, n, 3)
	echoServer(t, ns1, ip1.String()+":7001")
	echoServer(t, ns2, ip2.String()+":7001")
	seen, err := dial(t, &ns2, ip1.String()+":7001", 20*time.Second)
	if err != nil || seen != ip2.String() {
		t.Fatalf("2→1: seen %q, %v", seen, err)
	}
	seen, err = dial(t, &ns1, ip2.String()+":7001", 20*time.Second)
	if err != nil || seen != ip1.String() {
		t.Fatalf("1→2: seen %q, %v", seen, err)
	}
	// Inside: eth0 with the MAC and MTU asked for, default route via the
	// gateway.
	h, _ := netlink.NewHandleAt(ns1)
	defer h.Delete()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1400 || l.Attrs().HardwareAddr.String() != "02:42:0a:d5:01:02" {
		t.Errorf("eth0 mtu %d mac %s", l.Attrs().MTU, l.Attrs().HardwareAddr)
	}
	routes, _ := h.RouteList(nil, netlink.FAMILY_V4)
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == n.Gateway.String()
	}) {
		t.Errorf("no default route via %s: %v", n.Gateway, routes)
	}
}

func TestBridgesAreIsolated(t *testing.T) {
	requireRoot(t)
	a := testNetwork(t, 2, false)
	b := testNetwork(t, 3, false)
	nsA, ipA, _ := container(t, a, 2)
	nsB, ipB, _ := container(t, b, 2)
	echoServer(t, nsA, ipA.String()+":7002")
	echoServer(t, nsB, ipB.String()+":7002")
	// Each reaches a peer on its own network's gateway side (the host), so
	// the datapath works; across networks it must not.
	hostL := echoServer(t, nil0(), b.Gateway.String()+":0")
	if _, err := dial(t, &nsB, hostL.Addr().String(), 20*time.Second); err != nil {
		t.Fatalf("B → its gateway: %v", err)
	}
	if seen, err := dial(t, &nsB, ipA.String()+":7002", 2*time.Second); err == nil {
		t.Fatalf("B reached A across networks (A saw %s)", seen)
	}
	if seen, err := dial(t, &nsA, ipB.String()+":7002", 2*time.Second); err == nil {
		t.Fatalf("A reached B across networks (B saw %s)", seen)
	}
	// A port B's container publishes is reachable from A through a host
	// address (A's gateway), as from anywhere.
	if err := PublishPorts(context.Background(), "pub-"+b.ID[:8], ipB, []isolation.PortMapping{{HostPort: 17002, ContainerPort: 7002, Protocol: "tcp"}}); err != nil {
		t.Fatal(err)
	}
	defer UnpublishPorts(context.Background(), "pub-"+b.ID[:8])
	if _, err := dial(t, &nsA, a.Gateway.String()+":17002", 20*time.Second); err != nil {
		t.Errorf("A → B's published port via a host address: %v", err)
	}
	if seen, err := dial(t, &nsA, ipB.String()+":7002", 2*time.Second); err == nil {
		t.Fatalf("A reached B directly after the publish (B saw %s)", seen)
	}
}

// nil0 is the host's namespace, for echoServer.
func nil0() netns.NsHandle {
	h, err := netns.Get()
	if err != nil {
		panic(err)
	}
	return h
}

func TestMasqueradeAndInternal(t *testing.T) {
	requireRoot(t)
	inet := internet(t)
	echoServer(t, inet, "198.18.213.2:7003")
	n := testNetwork(t, 4, false)
	ns, _, _ := container(t, n, 2)
	seen, err := dial(t, &ns, "198.18.213.2:7003", 20*time.Second)
	if err != nil {
		t.Fatalf("container → internet: %v", err)
	}
	if seen != "198.18.213.1" {
		t.Errorf("the internet saw %s, want the host's 198.18.213.1 (masquerade)", seen)
	}

	in := testNetwork(t, 5, true)
	nsI, ipIn, _ := container(t, in, 2)
	if seen, err := dial(t, &nsI, "198.18.213.2:7003", 2*time.Second); err == nil {
		t.Fatalf("an internal network reached the internet (seen as %s)", seen)
	}
	if got := countTagged(t, in.ID)["postrouting"]; got != 0 {
		t.Errorf("internal network has %d masquerade rules", got)
	}
	// Nothing reaches into an internal network either, not even through a
	// published port.
	ipI := ipIn
	echoServer(t, nsI, ipI.String()+":7003")
	if err := PublishPorts(context.Background(), "pub-"+in.ID[:8], ipI, []isolation.PortMapping{{HostPort: 17003, ContainerPort: 7003, Protocol: "tcp"}}); err != nil {
		t.Fatal(err)
	}
	defer UnpublishPorts(context.Background(), "pub-"+in.ID[:8])
	if seen, err := dial(t, &ns, n.Gateway.String()+":17003", 2*time.Second); err == nil {
		t.Errorf("a port published into an internal network answered (seen as %s)", seen)
	}
	if seen, err := dial(t, &ns, ipI.String()+":7003", 2*time.Second); err == nil {
		t.Errorf("reached into an internal network (seen as %s)", seen)
	}
}

func TestPublishPortsDNAT(t *testing.T) {
	requireRoot(t)
	inet := internet(t)
	n := testNetwork(t, 6, false)
	ns, ip, id := container(t, n, 2)
	echoServer(t, ns, ip.String()+":80")
	ctx := context.Background()
	ports := []isolation.PortMapping{
		{HostPort: 17080, ContainerPort: 80, Protocol: "tcp"},
		{HostIP: "198.18.213.1", HostPort: 17081, ContainerPort: 80, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: 17082, ContainerPort: 80, Protocol: "tcp"},
		{HostIP: "0.0.0.0", HostPort: 17083, ContainerPort: 80, Protocol: "udp"},
	}
	for range 2 {
		if err := PublishPorts(ctx, id, ip, ports); err != nil {
			t.Fatal(err)
		}
	}
	if got := countTagged(t, tagCtr+id)["publish"]; got != 3 {
		t.Errorf("%d publish rules, want 3 (loopback is the proxy's)", got)
	}
	for _, port := range []string{"17080", "17081"} {
		seen, err := dial(t, &inet, "198.18.213.1:"+port, 20*time.Second)
		if err != nil {
			t.Fatalf("internet → host:%s: %v", port, err)
		}
		if seen != "198.18.213.2" {
			t.Errorf("port %s: the container saw %s, want the client's 198.18.213.2 (DNAT keeps sources)", port, seen)
		}
	}
	// From the host itself to its non-loopback address (output chain).
	if _, err := dial(t, nil, "198.18.213.1:17080", 20*time.Second); err != nil {
		t.Errorf("host → its own address: %v", err)
	}
	// Hairpin: the container reaches its own published port on the
	// gateway (a local address) and is seen as coming from a host address
	// (masqueraded), not from itself.
	if seen, err := dial(t, &ns, n.Gateway.String()+":17080", 20*time.Second); err != nil || seen == ip.String() {
		t.Errorf("container → its published port via the gateway: seen %q, %v (want a host address: hairpin masquerade)", seen, err)
	} else {
		t.Logf("hairpin: the container saw itself as %s", seen)
	}
	// UDP through DNAT, then conntrack is flushed by unpublish.
	var uc net.PacketConn
	if err := inNS(t, ns, func() (err error) { uc, err = net.ListenPacket("udp4", ip.String()+":80"); return }); err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = uc.WriteTo(buf[:n], from)
		}
	}()
	var client net.Conn
	if err := inNS(t, inet, func() (err error) { client, err = net.Dial("udp4", "198.18.213.1:17083"); return }); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	got := ""
	for i := 0; i < 40 && got == ""; i++ {
		_, _ = client.Write([]byte("u"))
		_ = client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 10)
		if n, err := client.Read(buf); err == nil {
			got = string(buf[:n])
		}
	}
	if got != "u" {
		t.Errorf("udp through DNAT: %q", got)
	}
	ctFlows := func() int {
		f := &netlink.ConntrackFilter{}
		_ = f.AddIP(netlink.ConntrackReplySrcIP, ip.AsSlice())
		flows, _ := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		n := 0
		for _, fl := range flows {
			if f.MatchConntrackFlow(fl) {
				n++
			}
		}
		return n
	}
	if ctFlows() == 0 {
		t.Error("no conntrack flow answered by the container before unpublish")
	}
	for range 2 {
		if err := UnpublishPorts(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := countTagged(t, tagCtr+id); len(got) != 0 {
		t.Errorf("rules left after unpublish: %v", got)
	}
	if n := ctFlows(); n != 0 {
		t.Errorf("%d conntrack flows of the container left after unpublish", n)
	}
	if _, err := dial(t, &inet, "198.18.213.1:17080", 2*time.Second); err == nil {
		t.Error("port still answers after unpublish")
	}
	// RemoveNetwork also takes publish rules of containers in its subnet.
	if err := PublishPorts(ctx, id, ip, ports[:1]); err != nil {
		t.Fatal(err)
	}
}

func TestTAP(t *testing.T) {
	requireRoot(t)
	n := testNetwork(t, 7, false)
	ctx := context.Background()
	name := "tbt" + randID(t)[:8]
	for range 2 {
		if err := CreateTAP(ctx, n.Bridge, name, "02:42:0a:d5:07:09"); err != nil {
			t.Fatal(err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := netlink.LinkByName(n.Bridge)
	if l.Type() != "tuntap" || l.Attrs().MasterIndex != br.Attrs().Index || l.Attrs().HardwareAddr.String() != "02:42:0a:d5:07:09" {
		t.Errorf("tap %s: type %s master %d (bridge %d) mac %s", name, l.Type(), l.Attrs().MasterIndex, br.Attrs().Index, l.Attrs().HardwareAddr)
	}
	for range 2 {
		if err := DeleteTAP(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("tap %s left", name)
	}
}

// BenchmarkTCPThroughput: 64 MiB pushes over the host's loopback, between
// two containers on one bridge, and from the host to a container's port
// published on the gateway address (DNAT), side by side.
func BenchmarkTCPThroughput(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	id := randIDB(b)
	n := Network{ID: id, Bridge: "bt-" + id[:12], Subnet: netip.MustParsePrefix("10.213.140.0/24"), Gateway: netip.MustParseAddr("10.213.140.1")}
	ctx := context.Background()
	if err := EnsureNetwork(ctx, n); err != nil {
		b.Fatal(err)
	}
	defer RemoveNetwork(ctx, n)
	mk := func(last byte) (netns.NsHandle, string) {
		ch := make(chan netns.NsHandle)
		go func() { runtime.LockOSThread(); h, _ := netns.New(); ch <- h }()
		h := <-ch
		cid := randIDB(b)
		if _, err := AttachNetns(ctx, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(h)), Interface{ContainerID: cid, Name: "eth0", Bridge: n.Bridge,
			Addresses: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.213.140.%d/24", last))}, Gateway: n.Gateway}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = DetachNetns(ctx, cid); _ = UnpublishPorts(ctx, cid); h.Close() })
		return h, cid
	}
	ns1, c1 := mk(2)
	ns2, _ := mk(3)
	listen := func(ns *netns.NsHandle, addr string) string {
		var l net.Listener
		run := func() (err error) { l, err = net.Listen("tcp4", addr); return }
		var err error
		if ns == nil {
			err = run()
		} else {
			ch := make(chan error)
			go func() { runtime.LockOSThread(); _ = netns.Set(*ns); ch <- run() }()
			err = <-ch
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
			}
		}()
		return l.Addr().String()
	}
	push := func(ns *netns.NsHandle, addr string) {
		var c net.Conn
		dialIt := func() (err error) { c, err = net.Dial("tcp4", addr); return }
		var err error
		if ns == nil {
			err = dialIt()
		} else {
			ch := make(chan error)
			go func() { runtime.LockOSThread(); _ = netns.Set(*ns); ch <- dialIt() }()
			err = <-ch
		}
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for range 64 {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	loop := listen(nil, "127.0.0.1:0")
	inC1 := listen(&ns1, "10.213.140.2:9000")
	if err := PublishPorts(ctx, c1, netip.MustParseAddr("10.213.140.2"), []isolation.PortMapping{{HostPort: 19000, ContainerPort: 9000, Protocol: "tcp"}}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		from *netns.NsHandle
		to   string
	}{{"loopback", nil, loop}, {"container-to-container", &ns2, inC1}, {"host-to-published", nil, "10.213.140.1:19000"}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(64 << 20)
			for range b.N {
				push(c.from, c.to)
			}
		})
	}
}

func randIDB(b *testing.B) string {
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// TestForwardBlockers adds a forward chain with policy drop — in a netns
// of its own, since on the host it would stop every forwarded packet of
// tests running meanwhile.
func TestForwardBlockers(t *testing.T) {
	requireRoot(t)
	ns, _ := testNS(t)
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Name: "berth-test-" + randID(t)[:6], Family: nftables.TableFamilyIPv4})
	drop := nftables.ChainPolicyDrop
	c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.DelTable(tb); _ = c.Flush() }()
	got, err := forwardBlockers(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ForwardBlockers(context.Background()); err != nil {
		t.Errorf("on the host: %v", err)
	}
	if !slices.Contains(got, "ip "+tb.Name+" FORWARD") {
		t.Errorf("ForwardBlockers = %v, want it to name ip %s FORWARD", got, tb.Name)
	}
}

// TestConnectNetns: a container on network A gets a second interface on
// network B (docker network connect): named eth1, no second default route,
// it reaches a container of B and B's containers reach it; disconnecting
// removes it (twice is fine) and B's container no longer reaches it.
func TestConnectNetns(t *testing.T) {
	requireRoot(t)
	a, b := testNetwork(t, 11, false), testNetwork(t, 12, false)
	ns1, _, id1 := container(t, a, 2)
	ns2, ip2, _ := container(t, b, 3)
	path1 := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns1))
	ip1b := netip.MustParseAddr("10.213.12.9")
	name, err := ConnectNetns(context.Background(), path1, Interface{ContainerID: id1, Bridge: b.Bridge, MAC: "02:42:0a:d5:0c:09",
		Addresses: []netip.Prefix{netip.PrefixFrom(ip1b, 24)}, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	host := ConnectedVethName(id1, b.Bridge)
	t.Cleanup(func() { _ = DisconnectNetns(context.Background(), id1, b.Bridge) })
	if name != "eth1" {
		t.Errorf("inside name %q, want eth1", name)
	}
	if _, err := netlink.LinkByName(host); err != nil {
		t.Errorf("host end %s: %v", host, err)
	}
	h, _ := netlink.NewHandleAt(ns1)
	defer h.Delete()
	routes, _ := h.RouteList(nil, netlink.FAMILY_V4)
	defaults := 0
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			defaults++
			if r.Gw.String() != a.Gateway.String() {
				t.Errorf("default route via %s, want only %s", r.Gw, a.Gateway)
			}
		}
	}
	if defaults != 1 {
		t.Errorf("%d default routes, want 1 (A's): %v", defaults, routes)
	}
	echoServer(t, ns1, ip1b.String()+":7011")
	echoServer(t, ns2, ip2.String()+":7011")
	if seen, err := dial(t, &ns1, ip2.String()+":7011", 20*time.Second); err != nil || seen != ip1b.String() {
		t.Errorf("connected → B's container: seen %q, %v; want from %s", seen, err, ip1b)
	}
	if seen, err := dial(t, &ns2, ip1b.String()+":7011", 20*time.Second); err != nil || seen != ip2.String() {
		t.Errorf("B's container → connected: seen %q, %v", seen, err)
	}
	for range 2 {
		if err := DisconnectNetns(context.Background(), id1, b.Bridge); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := netlink.LinkByName(host); err == nil {
		t.Errorf("host end %s left after disconnect", host)
	}
	if _, err := h.LinkByName("eth1"); err == nil {
		t.Errorf("eth1 left in the container after disconnect")
	}
	if _, err := dial(t, &ns2, ip1b.String()+":7011", 2*time.Second); err == nil {
		t.Errorf("B's container still reaches %s after disconnect", ip1b)
	}
}
