package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	sdknet "github.com/berth-dev/berth/sdk/network"
	"github.com/berth-dev/berth/sdk/network/conformance"
)

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: os.Stderr})
}

// open opens a service on root with no datapath and no helpers.
func open(t *testing.T, root string, mod ...func(*Options)) *Service {
	t.Helper()
	opts := Options{Root: root, Logger: testLogger(t), StoreTimeout: time.Second, HostPrefixes: func() []netip.Prefix { return nil }}
	for _, m := range mod {
		m(&opts)
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) sdknet.Service {
		s := open(t, t.TempDir())
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestConformanceOverGRPC(t *testing.T) {
	conformance.Run(t, func(t *testing.T) sdknet.Service {
		s := open(t, t.TempDir())
		sock := filepath.Join(t.TempDir(), "n.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(errdefs.ServerOptions()...)
		sdknet.RegisterServer(srv, s)
		go func() { _ = srv.Serve(l) }()
		conn, err := grpc.NewClient("unix://"+sock, append(errdefs.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = conn.Close()
			srv.Stop()
			_ = s.Close()
		})
		return sdknet.NewClient(conn)
	})
}

func TestIPAMExhaustionAndReuse(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	// A /29 has 8 addresses: network, gateway, 5 for containers, broadcast.
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "tiny", Subnet: "10.210.0.0/29"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range 5 {
		a, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: fmt.Sprintf("%064d", i), Network: "tiny"})
		if err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		got = append(got, a.Interfaces[0].Addresses[0])
	}
	want := []string{"10.210.0.2/29", "10.210.0.3/29", "10.210.0.4/29", "10.210.0.5/29", "10.210.0.6/29"}
	if !slices.Equal(got, want) {
		t.Fatalf("addresses %q, want %q", got, want)
	}
	_, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: fmt.Sprintf("%064d", 9), Network: "tiny"})
	if !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("attach to a full network = %v, want InvalidState", err)
	}
	// Release .4; the next attach gets it (the only free one).
	if err := s.Detach(ctx, fmt.Sprintf("%064d", 2)); err != nil {
		t.Fatal(err)
	}
	a, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: fmt.Sprintf("%064d", 9), Network: "tiny"})
	if err != nil || a.Interfaces[0].Addresses[0] != "10.210.0.4/29" {
		t.Fatalf("attach after a release = %+v, %v; want 10.210.0.4", a, err)
	}
}

func TestIPAMDoesNotReuseAtOnce(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "n", Subnet: "10.211.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	a1, _ := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("a", 64), Network: "n"})
	if err := s.Detach(ctx, strings.Repeat("a", 64)); err != nil {
		t.Fatal(err)
	}
	a2, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("b", 64), Network: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if a1.Interfaces[0].Addresses[0] == a2.Interfaces[0].Addresses[0] {
		t.Errorf("a released address was handed out again at once (%s); stale ARP and DNS caches would reach the wrong container", a1.Interfaces[0].Addresses[0])
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := open(t, root)
	n, err := s.Create(ctx, sdknet.CreateSpec{Name: "keep", Subnet: "10.212.0.0/24", Internal: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("1", 64), Name: "one", Network: "keep",
		Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, root)
	defer s.Close()
	got, err := s.Inspect(ctx, "keep")
	if err != nil || got.ID != n.ID || got.Subnet != n.Subnet || !got.Internal || !slices.Equal(got.Containers, []string{strings.Repeat("1", 64)}) {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	// The address is still held: a new container gets another one, and
	// asking for it by hand fails.
	held := strings.TrimSuffix(a.Interfaces[0].Addresses[0], "/24")
	if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("2", 64), Network: "keep", IP: held}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("take a held address after reopen = %v, want InvalidArgument", err)
	}
	b, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("2", 64), Network: "keep"})
	if err != nil || b.Interfaces[0].Addresses[0] == a.Interfaces[0].Addresses[0] {
		t.Errorf("attach after reopen = %+v, %v", b, err)
	}
	// The first container's endpoint came back whole.
	again, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("1", 64), Network: "keep"})
	if err != nil || again.Interfaces[0].MAC != a.Interfaces[0].MAC || !slices.Equal(again.Ports, a.Ports) {
		t.Errorf("endpoint after reopen = %+v, %v; want %+v", again, err, a)
	}
}

func TestNoDoubleAllocationUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "busy", Subnet: "10.213.0.0/26"}); err != nil {
		t.Fatal(err)
	}
	const n = 70 // more than the 61 addresses a /26 has for containers
	var wg sync.WaitGroup
	addrs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			a, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: fmt.Sprintf("%064x", i+1), Network: "busy"})
			errs[i] = err
			if err == nil {
				addrs[i] = a.Interfaces[0].Addresses[0]
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	full := 0
	for i, a := range addrs {
		if errs[i] != nil {
			if !errdefs.IsInvalidState(errs[i]) {
				t.Errorf("attach %d: %v", i, errs[i])
			}
			full++
			continue
		}
		if j, dup := seen[a]; dup {
			t.Errorf("address %s given to %d and %d", a, j, i)
		}
		seen[a] = i
	}
	if len(seen) != 61 || full != n-61 {
		t.Errorf("%d addresses handed out, %d refused; want 61 and %d", len(seen), full, n-61)
	}
}

func TestStateFile(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := open(t, root, func(o *Options) { o.DNSUpstreams = []string{"127.0.0.1:5353"} })
	defer s.Close()
	n, err := s.Create(ctx, sdknet.CreateSpec{Name: "svc", Subnet: "10.214.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := strings.Repeat("d", 64), strings.Repeat("e", 64)
	if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: id1, Name: "Web", Hostname: "webhost", Aliases: []string{"www", "shared"}, Network: "svc", IP: "10.214.0.10",
		Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80}, {ContainerPort: 53, Protocol: "udp"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: id2, Name: "db", Aliases: []string{"shared"}, Network: "svc", IP: "10.214.0.11",
		DNS: []string{"192.0.2.53"}}); err != nil {
		t.Fatal(err)
	}
	read := func() HelperState {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(root, n.ID, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st HelperState
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := read()
	if st.Network != "svc" || st.Gateway != "10.214.0.1" || !slices.Equal(st.Upstreams, []string{"127.0.0.1:5353"}) {
		t.Errorf("state head %+v", st)
	}
	if fmt.Sprint(st.Clients) != fmt.Sprint([]netd.Client{{IP: "10.214.0.11", Upstreams: []string{"192.0.2.53"}}}) {
		t.Errorf("clients %+v, want db's --dns server for its address", st.Clients)
	}
	recs := map[string][]string{}
	for _, r := range st.Records {
		recs[r.Name] = r.IPs
	}
	want := map[string][]string{
		"web": {"10.214.0.10"}, "webhost": {"10.214.0.10"}, "www": {"10.214.0.10"}, id1[:12]: {"10.214.0.10"},
		"db": {"10.214.0.11"}, id2[:12]: {"10.214.0.11"}, "shared": {"10.214.0.10", "10.214.0.11"},
	}
	if fmt.Sprint(recs) != fmt.Sprint(want) {
		t.Errorf("records %v, want %v", recs, want)
	}
	if len(st.Ports) != 2 {
		t.Fatalf("ports %+v", st.Ports)
	}
	for _, p := range st.Ports {
		if p.TargetIP != "10.214.0.10" || p.HostPort == 0 || (p.Protocol == "udp") != (p.TargetPort == 53) ||
			(p.Protocol == "udp" && p.HostIP != "0.0.0.0") || (p.Protocol == "tcp" && p.HostIP != "127.0.0.1") {
			t.Errorf("port %+v", p)
		}
	}
	if err := s.Detach(ctx, id1); err != nil {
		t.Fatal(err)
	}
	st = read()
	if len(st.Ports) != 0 || len(st.Records) != 3 {
		t.Errorf("after detach: %+v", st)
	}
	if err := s.Rename(ctx, id2, "store"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range read().Records {
		names = append(names, r.Name)
	}
	if !slices.Contains(names, "store") || slices.Contains(names, "db") {
		t.Errorf("records after rename: %q", names)
	}
	if err := s.Remove(ctx, "svc"); !errdefs.IsInvalidState(err) {
		t.Fatalf("remove used network = %v", err)
	}
	if err := s.Detach(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, n.ID)); !os.IsNotExist(err) {
		t.Errorf("network dir left after remove: %v", err)
	}
}

func TestAutomaticSubnetsAvoidHostNetworks(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), func(o *Options) {
		o.HostPrefixes = func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("10.89.0.0/23")} }
	})
	defer s.Close()
	var subnets []string
	for _, name := range []string{"a", "b"} {
		n, err := s.Create(ctx, sdknet.CreateSpec{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		subnets = append(subnets, n.Subnet)
	}
	if !slices.Equal(subnets, []string{"10.89.2.0/24", "10.89.3.0/24"}) {
		t.Errorf("automatic subnets %q, want the first free /24s after the host's 10.89.0.0/23", subnets)
	}
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "c", Subnet: "10.89.3.128/25"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "overlaps network b") {
		t.Errorf("overlapping subnet = %v", err)
	}
}

func TestStoreLockTimeout(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	defer s.Close()
	_, err := New(context.Background(), Options{Root: root, StoreTimeout: 200 * time.Millisecond})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "networks.db") {
		t.Errorf("second open = %v, want Unavailable naming the store", err)
	}
}

// fakeDatapath records calls (the real one, internal/netdp, is tested as
// root with the daemon in core/cmd/berth's network e2e test).
type fakeDatapath struct {
	mu      sync.Mutex
	ensured map[string]DatapathNetwork
	removed []string
	fail    bool
}

func (f *fakeDatapath) EnsureNetwork(_ context.Context, n DatapathNetwork) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return fmt.Errorf("datapath refuses %s", n.Bridge)
	}
	if f.ensured == nil {
		f.ensured = map[string]DatapathNetwork{}
	}
	f.ensured[n.ID] = n
	return nil
}

func (f *fakeDatapath) RemoveNetwork(_ context.Context, n DatapathNetwork) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ensured, n.ID)
	f.removed = append(f.removed, n.ID)
	return nil
}

func TestDatapathCalls(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dpf := &fakeDatapath{}
	s := open(t, root, func(o *Options) { o.Datapath = dpf })
	n, err := s.Create(ctx, sdknet.CreateSpec{Name: "x", Subnet: "10.215.0.0/24", Internal: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := dpf.ensured[n.ID]; got.Bridge != "br-"+n.ID[:12] || got.Gateway.String() != "10.215.0.1" || !got.Internal {
		t.Errorf("ensured %+v", got)
	}
	if _, err := s.Inspect(ctx, sdknet.DefaultNetwork); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// Reopen: every network is ensured again.
	dpf2 := &fakeDatapath{}
	s = open(t, root, func(o *Options) { o.Datapath = dpf2 })
	if len(dpf2.ensured) != 2 || dpf2.ensured[n.ID].Bridge == "" {
		t.Errorf("reconcile ensured %+v, want both networks", dpf2.ensured)
	}
	if err := s.Remove(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dpf2.removed, []string{n.ID}) {
		t.Errorf("removed %q", dpf2.removed)
	}
	// A datapath failure undoes the create.
	dpf2.fail = true
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "y"}); err == nil || !strings.Contains(err.Error(), "datapath refuses") {
		t.Errorf("create with a failing datapath = %v", err)
	}
	if _, err := s.Inspect(ctx, "y"); !errdefs.IsNotFound(err) {
		t.Errorf("failed create left network y: %v", err)
	}
	_ = s.Close()
}

func TestDefaultNetworkOptions(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), func(o *Options) {
		o.DefaultBridge, o.DefaultSubnet = "btest0", netip.MustParsePrefix("10.217.0.0/24")
	})
	defer s.Close()
	// The configured default subnet is reserved before the default exists.
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "x", Subnet: "10.217.0.0/25"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("create over the default subnet = %v", err)
	}
	n, err := s.Inspect(ctx, sdknet.DefaultNetwork)
	if err != nil || n.Bridge != "btest0" || n.Subnet != "10.217.0.0/24" || n.Gateway != "10.217.0.1" {
		t.Errorf("default network %+v, %v", n, err)
	}
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "y", Subnet: "10.88.0.0/16"}); err != nil {
		t.Errorf("10.88.0.0/16 is free when the default is elsewhere: %v", err)
	}
}

// BenchmarkAttachDetach is the store's share of a container's network
// setup: one Attach and one Detach (two synced bbolt transactions and two
// state file writes), without a datapath or helper.
func BenchmarkAttachDetach(b *testing.B) {
	ctx := context.Background()
	s, err := New(ctx, Options{Root: b.TempDir(), HostPrefixes: func() []netip.Prefix { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "bench", Subnet: "10.218.0.0/16"}); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("%064x", i)
		if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: id, Name: id[:12], Network: "bench"}); err != nil {
			b.Fatal(err)
		}
		if err := s.Detach(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}
