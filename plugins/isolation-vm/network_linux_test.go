package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/internal/netdp"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/spec"
)

// TestBridgeNetwork puts a VM container and a sandbox container (the real
// isolation-sandbox plugin, over gRPC) on one network, made with netdp as
// the daemon's network service does, with its resolver and port proxy
// (netd) on the gateway. Each serves HTTP (busybox httpd) and fetches the
// other's page by name; the VM container sees its attachment's hosts,
// resolv.conf and hostname. Its port published on 127.0.0.1 answers from
// the host through netd's proxy, one published on every address through
// DNAT; Recover puts a lost port rule back; after a checkpoint, delete
// and restore it answers again; Delete (twice) leaves no TAP and no nft
// rule of the task. One VM boot and one restore.
func TestBridgeNetwork(t *testing.T) {
	requireVM(t)
	ctx := context.Background()
	const vmIP, sbIP = "10.213.152.2", "10.213.152.3"
	proxyPort, dnatPort := freePort(t), freePort(t)
	nid, n := testNetwork(t, "10.213.152", []netd.Record{{Name: "vmweb", IPs: []string{vmIP}}, {Name: "sbpeer", IPs: []string{sbIP}}},
		[]netd.Port{{HostIP: "127.0.0.1", HostPort: proxyPort, Protocol: "tcp", TargetIP: vmIP, TargetPort: 80}})

	attachment := func(name, ip, peer, peerIP string, ports []isolation.PortMapping) *isolation.NetworkAttachment {
		a, _ := netip.ParseAddr(ip)
		b4 := a.As4()
		return &isolation.NetworkAttachment{Mode: "bridge", Hostname: name,
			Interfaces: []isolation.Interface{{Name: "eth0", Bridge: n.Bridge, MAC: fmt.Sprintf("02:be:%02x:%02x:%02x:%02x", b4[0], b4[1], b4[2], b4[3]),
				Addresses: []string{ip + "/24"}, Gateway: n.Gateway.String()}},
			DNS:   isolation.DNS{Servers: []string{n.Gateway.String()}, Search: []string{"test.berth"}, Options: []string{"ndots:0"}},
			Hosts: []isolation.HostEntry{{Name: "host.berth.internal", IP: n.Gateway.String()}, {Name: "extra-" + peer, IP: peerIP}},
			Ports: ports}
	}
	// (No wget -T: Debian 12's static busybox 1.35 segfaults with it.)
	script := `mkdir -p /tmp/www && echo "page-of-$(hostname)" > /tmp/www/index.html && httpd -p 80 -h /tmp/www
cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hostname; echo "hostname=$(hostname)"
i=0; while [ $i -lt 600 ]; do if wget -q -O - http://PEER/index.html; then echo FETCHED; break; fi; i=$((i+1)); sleep 0.2; done
sleep 1000`

	// The sandbox container, through the isolation-sandbox plugin.
	sb := sandboxRuntime(t)
	sbID := "net-sb-" + nid[:8]
	sbLog := filepath.Join(t.TempDir(), "sb.log")
	sbSpec := sandboxSpec(t, sbID, strings.ReplaceAll(script, "PEER", "vmweb"), sbLog)
	sbSpec.Network = attachment("sbpeer", sbIP, "vmweb", vmIP, nil)
	if _, err := sb.Create(ctx, sbSpec); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sb.Signal(ctx, sbID, "", syscall.SIGKILL, true)
		_, _ = sb.Wait(ctx, sbID, "")
		_, _ = sb.Delete(ctx, sbID)
	}()

	// The VM container.
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	vmID := "net-vm-" + nid[:8]
	vmLog := filepath.Join(t.TempDir(), "vm.log")
	vmSpec := newSpec(t, vmID, conformance.SpecOptions{Args: []string{"sh", "-c", strings.ReplaceAll(script, "PEER", "sbpeer")}, LogPath: vmLog})
	vmSpec.Network = attachment("vmweb", vmIP, "sbpeer", sbIP, []isolation.PortMapping{
		{HostIP: "127.0.0.1", HostPort: proxyPort, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: dnatPort, ContainerPort: 80, Protocol: "tcp"}})
	if _, err := rt.Create(ctx, vmSpec); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = rt.Signal(ctx, vmID, "", syscall.SIGKILL, true)
		_, _ = rt.Wait(ctx, vmID, "")
		_, _ = rt.Delete(ctx, vmID)
	}()
	if l, err := netlink.LinkByName(tapName(vmID)); err != nil {
		t.Errorf("no TAP %s after Create: %v", tapName(vmID), err)
	} else if br, _ := netlink.LinkByName(n.Bridge); br == nil || l.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("TAP %s is not on bridge %s", tapName(vmID), n.Bridge)
	}
	for _, s := range []struct {
		r  isolation.Runtime
		id string
	}{{sb, sbID}, {rt, vmID}} {
		if _, err := s.r.Start(ctx, s.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, ip, peer, peerIP, log string }{{"vmweb", vmIP, "sbpeer", sbIP, vmLog}, {"sbpeer", sbIP, "vmweb", vmIP, sbLog}} {
		deadline := time.Now().Add(150 * time.Second)
		for !strings.Contains(logText(c.log), "FETCHED") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		out := logText(c.log)
		for _, want := range []string{"page-of-" + c.peer + "\nFETCHED", c.ip + "\t" + c.name + "\n", c.peerIP + "\textra-" + c.peer + "\n",
			"10.213.152.1\thost.berth.internal\n", "127.0.0.1\tlocalhost\n",
			"nameserver 10.213.152.1\nsearch test.berth\noptions ndots:0\n", "---\n" + c.name + "\nhostname=" + c.name + "\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", c.name, want, out)
			}
		}
	}

	// The published ports, from the host: 127.0.0.1 through netd's
	// proxy, the gateway address (a host address) through DNAT.
	hc := &http.Client{Timeout: 20 * time.Second}
	for _, u := range []string{fmt.Sprintf("http://127.0.0.1:%d/index.html", proxyPort), fmt.Sprintf("http://%s:%d/index.html", n.Gateway, dnatPort),
		"http://" + vmIP + "/index.html"} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Errorf("host → %s: %v", u, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "page-of-vmweb\n" {
			t.Errorf("host → %s: %q", u, body)
		}
	}

	// Recover puts back a port rule lost while the plugin was away.
	if err := netdp.UnpublishPorts(ctx, vmID); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if !hasRuleOf(t, vmID) {
		t.Errorf("Recover did not restore the publish rule of %s", vmID)
	}

	// Checkpoint (the VM ends), delete (TAP and rules go), restore: the
	// guest keeps its configured NIC, now on a new TAP of the same name,
	// and its port answers again.
	ckDir := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.Mkdir(ckDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := rt.Checkpoint(ctx, vmID, isolation.CheckpointOptions{Dir: ckDir}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Delete(ctx, vmID); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(tapName(vmID)); err == nil || hasRuleOf(t, vmID) {
		t.Errorf("TAP (%v) or rules left after deleting the checkpointed task", err)
	}
	if _, err := rt.Restore(ctx, vmSpec, ckDir); err != nil {
		t.Fatal(err)
	}
	u := fmt.Sprintf("http://127.0.0.1:%d/index.html", proxyPort)
	var got string
	for deadline := time.Now().Add(60 * time.Second); got != "page-of-vmweb\n" && time.Now().Before(deadline); {
		if resp, err := hc.Get(u); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(body)
		} else {
			got = err.Error()
			time.Sleep(200 * time.Millisecond)
		}
	}
	if got != "page-of-vmweb\n" {
		t.Errorf("host → %s after the restore: %q", u, got)
	}
	if !hasRuleOf(t, vmID) {
		t.Errorf("no publish rule of %s after the restore", vmID)
	}

	if err := rt.Signal(ctx, vmID, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, vmID, ""); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := rt.Delete(ctx, vmID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := netlink.LinkByName(tapName(vmID)); err == nil {
		t.Errorf("TAP %s left after Delete", tapName(vmID))
	}
	if hasRuleOf(t, vmID) {
		t.Errorf("nft rules of %s left after Delete", vmID)
	}
	noLeaks(t, stateDir, runDir)
}

// TestBridgeNetworkErrors: bad bridge attachments are refused naming what
// is wrong, and a missing bridge fails Create leaving no TAP and no task;
// no VM boots.
func TestBridgeNetworkErrors(t *testing.T) {
	requireVM(t)
	ctx := context.Background()
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	if !slices.Contains(capabilities(), isolation.CapNetwork) {
		t.Errorf("capabilities %v lack %q", capabilities(), isolation.CapNetwork)
	}
	ifc := func(bridge, addr string) []isolation.Interface {
		return []isolation.Interface{{Name: "eth0", Bridge: bridge, MAC: "02:be:0a:d5:99:03", Addresses: []string{addr}}}
	}
	cases := []struct {
		name string
		att  isolation.NetworkAttachment
		want string
	}{
		{"no interface", isolation.NetworkAttachment{Mode: "bridge"}, "exactly one interface"},
		{"bad address", isolation.NetworkAttachment{Mode: "bridge", Interfaces: ifc("bt-x", "10.0.0.300/24")}, "10.0.0.300/24"},
		{"bad dns", isolation.NetworkAttachment{Mode: "bridge", Interfaces: ifc("bt-x", "10.0.0.3/24"), DNS: isolation.DNS{Servers: []string{"dnsbad"}}}, "dnsbad"},
		{"bad host entry", isolation.NetworkAttachment{Mode: "bridge", Interfaces: ifc("bt-x", "10.0.0.3/24"), Hosts: []isolation.HostEntry{{Name: "x", IP: "nope"}}}, "nope"},
		{"missing bridge", isolation.NetworkAttachment{Mode: "bridge", Interfaces: ifc("bt-missing9", "10.213.153.3/24")}, "bt-missing9"},
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
		if _, err := netlink.LinkByName(tapName(id)); err == nil {
			t.Errorf("%s: TAP left", c.name)
			_ = netdp.DeleteTAP(ctx, tapName(id))
		}
	}
	noLeaks(t, stateDir, runDir)

	// A task with a NIC needs a template with a NIC placeholder: not the
	// one of a task without (checked without building either).
	boot := rt.defaults.bootFor(newSpec(t, "net-tpl", conformance.SpecOptions{Args: []string{"true"}}))
	drv, err := newDriver(boot, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	with, err := vmtemplate.InputsFor(drv, templateConfig(boot, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	without, err := vmtemplate.InputsFor(drv, templateConfig(boot, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if with.NICs != 1 || without.NICs != 0 || with.ID() == without.ID() {
		t.Errorf("template inputs with a NIC %+v (id %s), without %+v (id %s): want separate templates", with, with.ID(), without, without.ID())
	}
}

// testNetwork makes a network as the daemon's network service does: netdp
// bridge and rules for subnet <net3>.0/24 (gateway .1) and netd on the
// gateway with records and ports (its DNS upstream is a closed 127.0.0.1
// port: no query leaves the machine). Cleanup stops netd and removes the
// network (deferred container cleanups run before it).
func testNetwork(t *testing.T, net3 string, records []netd.Record, ports []netd.Port) (string, netdp.Network) {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	nid := hex.EncodeToString(b)
	n := netdp.Network{ID: nid, Bridge: "bt-" + nid[:12], Subnet: netip.MustParsePrefix(net3 + ".0/24"),
		Gateway: netip.MustParseAddr(net3 + ".1")}
	if err := netdp.EnsureNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netdp.RemoveNetwork(ctx, n); err != nil {
			t.Error(err)
		}
	})
	statePath := filepath.Join(t.TempDir(), "netd.json")
	raw, err := netd.WriteJSON(statePath, netd.State{Network: "vmnet", Gateway: n.Gateway.String(), Domains: []string{"test.berth"},
		Upstreams: []string{"127.0.0.1:9"}, Records: records, Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	dctx, stopNetd := context.WithCancel(ctx)
	netdDone := make(chan error, 1)
	go func() { netdDone <- netd.Run(dctx, statePath, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn})) }()
	t.Cleanup(func() { stopNetd(); <-netdDone })
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
	return nid, n
}

func hasRuleOf(t *testing.T, id string) bool {
	t.Helper()
	rules, err := netdp.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if strings.HasPrefix(r.Comment, "berth ctr "+id+" ") {
			return true
		}
	}
	return false
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// logText is the output of a json-file container log.
func logText(path string) string {
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

// sandboxRuntime runs the isolation-sandbox plugin (built here) under a
// plugin host, as the daemon does.
func sandboxRuntime(t *testing.T) isolation.Runtime {
	t.Helper()
	bin := filepath.Join(binDir, "isolation-sandbox")
	if _, err := os.Stat(bin); err != nil {
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/berth-dev/berth/plugins/isolation-sandbox").CombinedOutput(); err != nil {
			t.Fatalf("go build isolation-sandbox: %v\n%s", err, out)
		}
	}
	run, err := os.MkdirTemp("", "bsb")
	if err != nil {
		t.Fatal(err)
	}
	hostState := filepath.Join(coreState, "sbhost-"+filepath.Base(run))
	h := host.New(host.Options{Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}), LogLevel: "info",
		StateDir: hostState, RuntimeDir: run, RestartBackoff: 100 * time.Millisecond})
	cfg := schema.Config{JSON: []byte(`{"init_path":"` + filepath.Join(binDir, "berth-sandbox-init") + `"}`)}
	hs := host.Spec{Layer: plugin.LayerIsolation, Name: "sandbox", Path: bin, Default: true,
		StartTimeout: time.Minute, DecodeConfig: func(*schema.Spec) (schema.Config, error) { return cfg, nil }}
	if err := h.Start(context.Background(), []host.Spec{hs}); err != nil {
		t.Fatalf("host.Start: %v", err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.Stop(c)
		_ = os.RemoveAll(run)
		_ = os.RemoveAll(hostState)
	})
	pc, err := h.Client(plugin.LayerIsolation, "sandbox")
	if err != nil {
		t.Fatal(err)
	}
	return pc.(isolation.Runtime)
}

// sandboxSpec is a sandbox container of the demo rootfs (an overlay on the
// tree the VM image was made from) running script.
func sandboxSpec(t *testing.T, id, script, logPath string) isolation.Spec {
	t.Helper()
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh", "-c", script}},
		lifecycle.Config{}, spec.Extra{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return isolation.Spec{ID: id, OCI: s, LogPath: logPath, Annotations: map[string]string{},
		Rootfs: []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + filepath.Join(testDir, "rootfs"), "upperdir=" + filepath.Join(dir, "upper"), "workdir=" + filepath.Join(dir, "work")}}}}
}
