package netd

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
)

// upstream is a resolver on loopback standing in for the host's: it
// answers example.test. with 192.0.2.99 and NXDOMAIN otherwise.
func upstream(t *testing.T) string {
	t.Helper()
	return upstreamAnswering(t, "192.0.2.99")
}

// upstreamAnswering is upstream answering example.test. with ip.
func upstreamAnswering(t *testing.T, ip string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if strings.EqualFold(q.Question[0].Name, "example.test.") {
			rr, _ := dns.NewRR("example.test. 60 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	u := &dns.Server{PacketConn: pc, Handler: h}
	tc := &dns.Server{Listener: l, Handler: h}
	go func() { _ = u.ActivateAndServe() }()
	go func() { _ = tc.ActivateAndServe() }()
	t.Cleanup(func() { _ = u.Shutdown(); _ = tc.Shutdown() })
	return pc.LocalAddr().String()
}

// blackhole is a UDP "resolver" that never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// runHelper writes s to a state file, runs Run on it and waits for its
// status; it returns the state path and the status.
func runHelper(t *testing.T, s State) (string, Status) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.json")
	b, err := WriteJSON(path, s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, path, hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: testWriter{t}}))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return path, waitStatus(t, path, b)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitStatus polls the status until it reflects state bytes b.
func waitStatus(t *testing.T, path string, b []byte) Status {
	t.Helper()
	want := HashState(b)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st, err := ReadStatus(path)
		if err == nil && st.StateSHA256 == want {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("status of %s never reflected the state written", path)
	return Status{}
}

func update(t *testing.T, path string, s State) Status {
	t.Helper()
	b, err := WriteJSON(path, s)
	if err != nil {
		t.Fatal(err)
	}
	return waitStatus(t, path, b)
}

func query(t *testing.T, server, proto, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: proto, Timeout: 20 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, proto, err)
	}
	return r
}

func answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestDNS(t *testing.T) {
	old := upstreamTimeout
	upstreamTimeout = 300 * time.Millisecond
	defer func() { upstreamTimeout = old }()
	up := upstream(t)
	path, st := runHelper(t, State{Network: "n1", Gateway: "10.88.0.1", DNSAddr: "127.0.0.1:0",
		Upstreams: []string{blackhole(t), up}, Domains: []string{"n1.berth"},
		Records: []Record{{Name: "web", IPs: []string{"10.88.0.5"}}, {Name: "Db", IPs: []string{"10.88.0.7", "10.88.0.6"}}}})
	if st.DNS.Error != "" || st.DNS.Address == "" {
		t.Fatalf("dns status %+v", st.DNS)
	}
	srv := st.DNS.Address
	for _, proto := range []string{"udp", "tcp"} {
		cases := []struct {
			name  string
			rcode int
			want  []string
		}{
			{"web.", dns.RcodeSuccess, []string{"10.88.0.5"}},
			{"WEB.", dns.RcodeSuccess, []string{"10.88.0.5"}},
			{"web.n1.berth.", dns.RcodeSuccess, []string{"10.88.0.5"}},
			{"db.", dns.RcodeSuccess, []string{"10.88.0.6", "10.88.0.7"}},
			{"host.berth.internal.", dns.RcodeSuccess, []string{"10.88.0.1"}},
			{"nosuch.", dns.RcodeNameError, nil},
			{"nosuch.n1.berth.", dns.RcodeNameError, nil},
			{"other.berth.internal.", dns.RcodeNameError, nil},
			{"example.test.", dns.RcodeSuccess, []string{"192.0.2.99"}}, // forwarded past the black hole
			{"missing.test.", dns.RcodeNameError, nil},                  // the upstream's NXDOMAIN
		}
		for _, c := range cases {
			r := query(t, srv, proto, c.name, dns.TypeA)
			if r.Rcode != c.rcode || !slices.Equal(answers(r), c.want) {
				t.Errorf("%s A %s: rcode %s answers %v, want %s %v", proto, c.name, dns.RcodeToString[r.Rcode], answers(r),
					dns.RcodeToString[c.rcode], c.want)
			}
		}
		if r := query(t, srv, proto, "web.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("AAAA web: %v", r)
		}
	}

	// Reload by file change: web goes, api comes; only a black hole
	// upstream is left, so forwarding fails with SERVFAIL.
	update(t, path, State{Network: "n1", Gateway: "10.88.0.1", DNSAddr: srv, Upstreams: []string{blackhole(t)},
		Records: []Record{{Name: "api", IPs: []string{"10.88.0.9"}}}})
	if r := query(t, srv, "udp", "api.", dns.TypeA); !slices.Equal(answers(r), []string{"10.88.0.9"}) {
		t.Errorf("api after reload: %v", r)
	}
	if r := query(t, srv, "udp", "web.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("web after reload: %v", r)
	}
	if r := query(t, srv, "udp", "example.test.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("no upstream answers: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

// TestDNSClientUpstreams: a container with resolvers of its own (--dns)
// has its unknown names forwarded to them, by the source address of its
// queries, while the network's names still answer; other sources use the
// network's upstreams.
func TestDNSClientUpstreams(t *testing.T) {
	netUp, ownUp := upstream(t), upstreamAnswering(t, "192.0.2.77")
	_, st := runHelper(t, State{Network: "n1", Gateway: "10.88.0.1", DNSAddr: "127.0.0.1:0", Upstreams: []string{netUp},
		Clients: []Client{{IP: "127.0.0.2", Upstreams: []string{ownUp}}},
		Records: []Record{{Name: "web", IPs: []string{"10.88.0.5"}}}})
	srv := st.DNS.Address
	from := func(src, proto, name string) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		c := &dns.Client{Net: proto, Timeout: 20 * time.Second, Dialer: &net.Dialer{Timeout: 20 * time.Second}}
		if proto == "udp" {
			c.Dialer.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
		} else {
			c.Dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		r, _, err := c.Exchange(m, srv)
		if err != nil {
			t.Fatalf("%s from %s over %s: %v", name, src, proto, err)
		}
		return r
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, c := range []struct{ src, name, want string }{
			{"127.0.0.2", "example.test.", "192.0.2.77"}, // the client's own resolver
			{"127.0.0.1", "example.test.", "192.0.2.99"}, // the network's
			{"127.0.0.2", "web.", "10.88.0.5"},           // the network's names still answer
		} {
			if got := answers(from(c.src, proto, c.name)); !slices.Equal(got, []string{c.want}) {
				t.Errorf("%s A %s from %s: %v, want %s", proto, c.name, c.src, got, c.want)
			}
		}
	}
	for _, bad := range []State{
		{Gateway: "10.88.0.1", Clients: []Client{{IP: "nope", Upstreams: []string{"1.2.3.4"}}}},
		{Gateway: "10.88.0.1", Clients: []Client{{IP: "10.88.0.5"}}},
		{Gateway: "10.88.0.1", Clients: []Client{{IP: "10.88.0.5", Upstreams: []string{"x"}}}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate accepted clients %+v", bad.Clients)
		}
	}
}

// tcpBackend is a loopback server that reads until EOF (the client's
// half-close), then answers "got:<data>" and closes.
func tcpBackend(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go serveHalfClose(l)
	return l.Addr().String()
}

func serveHalfClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			b, _ := io.ReadAll(c)
			_, _ = c.Write([]byte("got:" + string(b)))
		}()
	}
}

// roundTrip sends data, half-closes, and returns all the answer up to the
// server's close.
func roundTrip(addr, data string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 20*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(data)); err != nil {
		return "", err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func portOf(addr string) uint16 {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

func TestPortsReloadAndInUse(t *testing.T) {
	backend := tcpBackend(t)
	pa, pb := freePort(t), freePort(t)
	portA := Port{HostIP: "127.0.0.1", HostPort: pa, Protocol: "tcp", TargetIP: "127.0.0.1", TargetPort: portOf(backend)}
	path, st := runHelper(t, State{Network: "n2", DNSAddr: "-", Ports: []Port{portA}})
	if len(st.Ports) != 1 || st.Ports[0].Error != "" {
		t.Fatalf("status ports %+v", st.Ports)
	}
	a := portA.listenAddr()
	if got, err := roundTrip(a, "hello"); err != nil || got != "got:hello" {
		t.Fatalf("through A: %q %v", got, err)
	}
	// A connection through A stays open across a reload that keeps A.
	held, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	// B is taken by someone else: reported, A unaffected.
	squat, err := net.Listen("tcp", portA.HostIP+":"+itoa(pb))
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	portB := portA
	portB.HostPort = pb
	st = update(t, path, State{Network: "n2", DNSAddr: "-", Ports: []Port{portA, portB}})
	var errB string
	for _, p := range st.Ports {
		if p.HostPort == pb {
			errB = p.Error
		} else if p.Error != "" {
			t.Errorf("port A: %s", p.Error)
		}
	}
	if !strings.Contains(errB, "address already in use") {
		t.Errorf("port B in use: status error %q", errB)
	}
	if _, err := held.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	_ = held.(*net.TCPConn).CloseWrite()
	_ = held.SetDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(held); err != nil || string(b) != "got:still" {
		t.Errorf("held connection across the reload: %q %v", b, err)
	}

	// Removing A closes its listener.
	st = update(t, path, State{Network: "n2", DNSAddr: "-"})
	if len(st.Ports) != 0 {
		t.Errorf("ports after removal: %+v", st.Ports)
	}
	if _, err := net.DialTimeout("tcp", a, 5*time.Second); err == nil {
		t.Error("port A still listens after its removal")
	}

	// A bad state is reported and the old one kept.
	b := []byte(`{"network":"n2","dnsAddr":"-","ports":[{"hostPort":0}]}`)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, path, b); !strings.Contains(st.Error, "ports must be") {
		t.Errorf("bad state status error %q", st.Error)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestSIGHUPReloads: with file polling out of the way, SIGHUP alone
// reloads.
func TestSIGHUPReloads(t *testing.T) {
	old := pollInterval
	pollInterval = time.Hour
	defer func() { pollInterval = old }()
	backend := tcpBackend(t)
	p := Port{HostIP: "127.0.0.1", HostPort: freePort(t), TargetIP: "127.0.0.1", TargetPort: portOf(backend)}
	path, _ := runHelper(t, State{Network: "n3", DNSAddr: "-"})
	b, err := WriteJSON(path, State{Network: "n3", DNSAddr: "-", Ports: []Port{p}})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, path, b); len(st.Ports) != 1 || st.Ports[0].Error != "" {
		t.Fatalf("status after SIGHUP: %+v", st.Ports)
	}
	if got, err := roundTrip(p.listenAddr(), "hup"); err != nil || got != "got:hup" {
		t.Errorf("through the new port: %q %v", got, err)
	}
}

func TestRunFailsOnMissingState(t *testing.T) {
	err := Run(context.Background(), filepath.Join(t.TempDir(), "nope.json"), nil)
	if err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Fatalf("Run on a missing file: %v", err)
	}
}
