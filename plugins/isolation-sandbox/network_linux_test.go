package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/internal/netdp"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// logText is the output lines of a json-file container log.
func logText(t *testing.T, path string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	var out strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		var e struct{ Log string }
		if json.Unmarshal([]byte(l), &e) == nil {
			out.WriteString(e.Log)
		}
	}
	return out.String()
}

// TestBridgeTasksReachEachOther runs two containers on one network (made
// with netdp, as the daemon's network service does, with its resolver,
// netd, on the gateway): each serves HTTP (busybox httpd) and fetches the
// other's page by name (resolved by netd); the host reaches one too. They see the hosts, resolv.conf and
// hostname files of their attachments; Delete leaves no veth and no port
// rule.
func TestBridgeTasksReachEachOther(t *testing.T) {
	requireSetup(t)
	ctx := context.Background()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	nid := hex.EncodeToString(b)
	n := netdp.Network{ID: nid, Bridge: "bt-" + nid[:12], Subnet: netip.MustParsePrefix("10.213.130.0/24"),
		Gateway: netip.MustParseAddr("10.213.130.1")}
	if err := netdp.EnsureNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netdp.RemoveNetwork(ctx, n); err != nil {
			t.Error(err)
		}
	}()

	// The network's resolver (netd, as its helper process runs it) on the
	// gateway: the containers find each other by name through it.
	statePath := filepath.Join(t.TempDir(), "netd.json")
	raw, err := netd.WriteJSON(statePath, netd.State{Network: "nettest", Gateway: "10.213.130.1", Domains: []string{"test.berth"},
		Upstreams: []string{"127.0.0.1:9"}, // nothing there: no query leaves the machine
		Records:   []netd.Record{{Name: "alpha", IPs: []string{"10.213.130.2"}}, {Name: "beta", IPs: []string{"10.213.130.3"}}}})
	if err != nil {
		t.Fatal(err)
	}
	dctx, stopDNS := context.WithCancel(ctx)
	dnsDone := make(chan error, 1)
	go func() { dnsDone <- netd.Run(dctx, statePath, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn})) }()
	defer func() { stopDNS(); <-dnsDone }()
	for deadline := time.Now().Add(60 * time.Second); ; {
		st, err := netd.ReadStatus(statePath)
		if err == nil && st.StateSHA256 == netd.HashState(raw) {
			if st.DNS.Error != "" {
				t.Fatalf("netd dns: %s", st.DNS.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("netd never reported")
		}
		time.Sleep(20 * time.Millisecond)
	}

	stateDir, runDir := shortDirs(t)
	rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	cfg := schema.Config{JSON: []byte(`{"init_path":"` + filepath.Join(binDir, "berth-sandbox-init") + `"}`)}
	if err := rt.Configure(ctx, plugin.ConfigureRequest{Config: cfg, StateDir: stateDir, RuntimeDir: runDir}); err != nil {
		t.Fatal(err)
	}
	type task struct{ id, name, ip, peer, peerIP, log string }
	tasks := []task{
		{id: "net-alpha-" + nid[:8], name: "alpha", ip: "10.213.130.2", peer: "beta", peerIP: "10.213.130.3"},
		{id: "net-beta-" + nid[:8], name: "beta", ip: "10.213.130.3", peer: "alpha", peerIP: "10.213.130.2"},
	}
	// (No wget -T: Debian 12's static busybox 1.35 segfaults with it here.)
	script := `mkdir -p /tmp/www && echo "page-of-$(hostname)" > /tmp/www/index.html && httpd -p 80 -h /tmp/www
cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hostname; echo "hostname=$(hostname)"
i=0; while [ $i -lt 300 ]; do if wget -q -O - http://PEER/index.html; then echo FETCHED; break; fi; i=$((i+1)); sleep 0.2; done
sleep 1000`
	for i := range tasks {
		tk := &tasks[i]
		tk.log = filepath.Join(t.TempDir(), "ctr.log")
		s := newSpec(t, tk.id, conformance.SpecOptions{Args: []string{"sh", "-c", strings.ReplaceAll(script, "PEER", tk.peer)}, LogPath: tk.log})
		s.Network = &isolation.NetworkAttachment{Mode: "bridge", Hostname: tk.name,
			Interfaces: []isolation.Interface{{Name: "eth0", Bridge: n.Bridge, Addresses: []string{tk.ip + "/24"}, Gateway: "10.213.130.1"}},
			DNS:        isolation.DNS{Servers: []string{"10.213.130.1"}, Search: []string{"test.berth"}, Options: []string{"ndots:0"}},
			Hosts:      []isolation.HostEntry{{Name: "host.berth.internal", IP: "10.213.130.1"}, {Name: "extra-" + tk.peer, IP: tk.peerIP}},
			Ports:      []isolation.PortMapping{{HostPort: 17090 + uint16(i), ContainerPort: 80, Protocol: "tcp"}},
		}
		if _, err := rt.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = rt.Signal(ctx, tk.id, "", syscall.SIGKILL, true)
			_, _ = rt.Wait(ctx, tk.id, "")
			_, _ = rt.Delete(ctx, tk.id)
		}()
	}
	for _, tk := range tasks {
		if _, err := rt.Start(ctx, tk.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, tk := range tasks {
		deadline := time.Now().Add(90 * time.Second)
		for !strings.Contains(logText(t, tk.log), "FETCHED") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		out := logText(t, tk.log)
		for _, want := range []string{"page-of-" + tk.peer + "\nFETCHED", tk.ip + "\t" + tk.name + "\n", tk.peerIP + "\textra-" + tk.peer + "\n",
			"10.213.130.1\thost.berth.internal\n", "127.0.0.1\tlocalhost\n",
			"nameserver 10.213.130.1\nsearch test.berth\noptions ndots:0\n", "---\n" + tk.name + "\nhostname=" + tk.name + "\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", tk.name, want, out)
			}
		}
	}
	// The host reaches a container on its address.
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://10.213.130.2/index.html")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "page-of-alpha\n" {
		t.Errorf("host → alpha: %q", body)
	}
	rules, err := netdp.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if !hasRuleOf(rules, tk.id) {
			t.Errorf("no publish rule of %s", tk.id)
		}
	}
	// Recover puts back port rules that went missing while the plugin
	// was away.
	if err := netdp.UnpublishPorts(ctx, tasks[0].id); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if rules, err = netdp.Rules(ctx); err != nil || !hasRuleOf(rules, tasks[0].id) {
		t.Errorf("Recover did not restore the publish rule of %s (%v)", tasks[0].id, err)
	}

	for _, tk := range tasks {
		if err := rt.Signal(ctx, tk.id, "", syscall.SIGKILL, true); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.Wait(ctx, tk.id, ""); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := rt.Delete(ctx, tk.id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := netlink.LinkByName(netdp.HostVethName(tk.id)); err == nil {
			t.Errorf("veth %s left after Delete", netdp.HostVethName(tk.id))
		}
	}
	rules, err = netdp.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if hasRuleOf(rules, tk.id) {
			t.Errorf("publish rules of %s left after Delete", tk.id)
		}
	}
	noLeaks(t, stateDir, runDir)
}

func hasRuleOf(rules []netdp.Rule, id string) bool {
	for _, r := range rules {
		if strings.HasPrefix(r.Comment, "berth ctr "+id+" ") {
			return true
		}
	}
	return false
}

// TestBridgeAttachmentErrors: bad attachments are refused before anything
// is made, and a missing bridge fails Create leaving no task.
func TestBridgeAttachmentErrors(t *testing.T) {
	requireSetup(t)
	ctx := context.Background()
	stateDir, runDir := shortDirs(t)
	rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	cfg := schema.Config{JSON: []byte(`{"init_path":"` + filepath.Join(binDir, "berth-sandbox-init") + `"}`)}
	if err := rt.Configure(ctx, plugin.ConfigureRequest{Config: cfg, StateDir: stateDir, RuntimeDir: runDir}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		att  isolation.NetworkAttachment
		want string
	}{
		{"no interface", isolation.NetworkAttachment{Mode: "bridge"}, "exactly one interface"},
		{"bad address", isolation.NetworkAttachment{Mode: "bridge", Interfaces: []isolation.Interface{{Name: "eth0", Bridge: "bt-x", Addresses: []string{"10.0.0.300/24"}}}}, "10.0.0.300/24"},
		{"bad host entry", isolation.NetworkAttachment{Mode: "bridge", Interfaces: []isolation.Interface{{Name: "eth0", Bridge: "bt-x", Addresses: []string{"10.0.0.3/24"}}},
			Hosts: []isolation.HostEntry{{Name: "x", IP: "nope"}}}, "nope"},
		{"missing bridge", isolation.NetworkAttachment{Mode: "bridge", Interfaces: []isolation.Interface{{Name: "eth0", Bridge: "bt-missing0", Addresses: []string{"10.213.131.3/24"}}}}, "bt-missing0"},
		{"unknown mode", isolation.NetworkAttachment{Mode: "overlay"}, "overlay"},
	}
	for i, c := range cases {
		id := "net-bad-" + string(rune('a'+i))
		s := newSpec(t, id, conformance.SpecOptions{Args: []string{"true"}})
		att := c.att
		s.Network = &att
		_, err := rt.Create(ctx, s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
		if _, err := netlink.LinkByName(netdp.HostVethName(id)); err == nil {
			t.Errorf("%s: veth left", c.name)
		}
	}
	noLeaks(t, stateDir, runDir)
}

// TestConnectNetwork: a running task on network A is connected to network
// B (NetworkConnector): its namespace gets eth1 with B's address, the host
// reaches its HTTP server over B; DisconnectNetwork (twice) takes the
// interface away; a stopped task cannot be connected.
func TestConnectNetwork(t *testing.T) {
	requireSetup(t)
	ctx := context.Background()
	var nets []netdp.Network
	for i, third := range []int{132, 133} {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		nid := hex.EncodeToString(b)
		n := netdp.Network{ID: nid, Bridge: "bt-" + nid[:12], Subnet: netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", third)),
			Gateway: netip.MustParseAddr(fmt.Sprintf("10.213.%d.1", third))}
		if err := netdp.EnsureNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := netdp.RemoveNetwork(ctx, n); err != nil {
				t.Errorf("remove network %d: %v", i, err)
			}
		}()
		nets = append(nets, n)
	}
	a, b := nets[0], nets[1]
	stateDir, runDir := shortDirs(t)
	rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	cfg := schema.Config{JSON: []byte(`{"init_path":"` + filepath.Join(binDir, "berth-sandbox-init") + `"}`)}
	if err := rt.Configure(ctx, plugin.ConfigureRequest{Config: cfg, StateDir: stateDir, RuntimeDir: runDir}); err != nil {
		t.Fatal(err)
	}
	id := "net-connect-" + a.ID[:8]
	s := newSpec(t, id, conformance.SpecOptions{Args: []string{"sh", "-c",
		`mkdir -p /tmp/www && echo connected-page > /tmp/www/index.html && httpd -p 80 -h /tmp/www && exec sleep 1000`}})
	s.Network = &isolation.NetworkAttachment{Mode: "bridge", Hostname: "conn",
		Interfaces: []isolation.Interface{{Name: "eth0", Bridge: a.Bridge, Addresses: []string{"10.213.132.5/24"}, Gateway: "10.213.132.1"}}}
	if _, err := rt.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = rt.Signal(ctx, id, "", syscall.SIGKILL, true)
		_, _ = rt.Wait(ctx, id, "")
		_, _ = rt.Delete(ctx, id)
	}()
	pid, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	att := isolation.NetworkAttachment{Mode: "bridge", Interfaces: []isolation.Interface{{Bridge: b.Bridge, MAC: "02:be:0a:d5:85:05",
		Addresses: []string{"10.213.133.5/24"}, MTU: 1500}}}
	for range 2 { // idempotent
		if err := rt.ConnectNetwork(ctx, id, att); err != nil {
			t.Fatal(err)
		}
	}
	h, err := netlink.NewHandleAt(mustNetns(t, pid))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Delete()
	l, err := h.LinkByName("eth1")
	if err != nil {
		t.Fatalf("no eth1 in the task: %v", err)
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.213.133.5/24" || l.Attrs().HardwareAddr.String() != "02:be:0a:d5:85:05" {
		t.Errorf("eth1: %v %s", addrs, l.Attrs().HardwareAddr)
	}
	c := &http.Client{Timeout: 20 * time.Second}
	var body []byte
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if resp, err := c.Get("http://10.213.133.5/index.html"); err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
	}
	if string(body) != "connected-page\n" {
		t.Errorf("host → task over the connected network: %q", body)
	}
	for range 2 {
		if err := rt.DisconnectNetwork(ctx, id, b.Bridge); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.LinkByName("eth1"); err == nil {
		t.Error("eth1 left after DisconnectNetwork")
	}
	if _, err := netlink.LinkByName(netdp.ConnectedVethName(id, b.Bridge)); err == nil {
		t.Error("host end left after DisconnectNetwork")
	}
	if err := rt.ConnectNetwork(ctx, id, isolation.NetworkAttachment{Mode: "bridge"}); err == nil || !strings.Contains(err.Error(), "one interface") {
		t.Errorf("connect without an interface: %v", err)
	}
	if err := rt.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if err := rt.ConnectNetwork(ctx, id, att); !errdefs.IsInvalidState(err) {
		t.Errorf("connect a stopped task: %v, want InvalidState", err)
	}
	if err := rt.ConnectNetwork(ctx, "net-missing", att); !errdefs.IsNotFound(err) {
		t.Errorf("connect a missing task: %v, want NotFound", err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}

	// A task whose spec has a further interface (a connected network that
	// lifecycle keeps for the next start) gets it at start, and Delete
	// takes it away; a further interface with a gateway is refused.
	id2 := "net-connect2-" + a.ID[:8]
	s2 := newSpec(t, id2, conformance.SpecOptions{Args: []string{"sleep", "1000"}})
	s2.Network = &isolation.NetworkAttachment{Mode: "bridge", Hostname: "conn2", Interfaces: []isolation.Interface{
		{Name: "eth0", Bridge: a.Bridge, Addresses: []string{"10.213.132.6/24"}, Gateway: "10.213.132.1"},
		{Bridge: b.Bridge, Addresses: []string{"10.213.133.6/24"}}}}
	bad := *s2.Network
	bad.Interfaces = []isolation.Interface{bad.Interfaces[0], {Bridge: b.Bridge, Addresses: []string{"10.213.133.6/24"}, Gateway: "10.213.133.1"}}
	sBad := newSpec(t, id2+"x", conformance.SpecOptions{Args: []string{"true"}})
	sBad.Network = &bad
	if _, err := rt.Create(ctx, sBad); err == nil || !strings.Contains(err.Error(), "no gateway") {
		t.Errorf("a further interface with a gateway: %v", err)
	}
	if _, err := rt.Create(ctx, s2); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rt.Signal(ctx, id2, "", syscall.SIGKILL, true); _, _ = rt.Delete(ctx, id2) }()
	pid2, err := rt.Start(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := netlink.NewHandleAt(mustNetns(t, pid2))
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Delete()
	if l, err := h2.LinkByName("eth1"); err != nil {
		t.Errorf("no eth1 from the spec's further interface: %v", err)
	} else if addrs, _ := h2.AddrList(l, netlink.FAMILY_V4); len(addrs) != 1 || addrs[0].IPNet.String() != "10.213.133.6/24" {
		t.Errorf("eth1 addresses %v", addrs)
	}
	if err := rt.Signal(ctx, id2, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, id2, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Delete(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(netdp.ConnectedVethName(id2, b.Bridge)); err == nil {
		t.Error("the further interface's host end left after Delete")
	}
	noLeaks(t, stateDir, runDir)
}

// mustNetns opens the network namespace of pid; closed at cleanup.
func mustNetns(t *testing.T, pid int) netns.NsHandle {
	t.Helper()
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}
