package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/core/network"
	"github.com/berth-dev/berth/internal/usernet"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	sdknet "github.com/berth-dev/berth/sdk/network"
)

// init lets the test binary be the real usernet helper (what `berth
// system usernet-helper` runs) for TestUserNetwork's network service.
func init() {
	if os.Getenv("BERTH_TEST_USERNET_HELPER") != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	log := hclog.New(&hclog.LoggerOptions{Name: "usernet-helper", Level: hclog.Info, Output: os.Stderr})
	err := usernet.Run(ctx, os.Args[len(os.Args)-1], log)
	stop()
	if err != nil {
		log.Error("usernet helper", "error", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestUserNetwork: one VM container on a user-mode network, the way the
// daemon wires it (network_datapath = "user"): the real network service
// (core/network in user mode, its usernet helper a separate process)
// attaches the container, the plugin gives the VM a socket NIC on the
// helper's switch. The guest's busybox httpd answers on the published
// 127.0.0.1 port, the guest reaches a server on the host's 127.0.0.1
// through the gateway, a name of the network resolves; after delete,
// detach and network rm no helper, socket, endpoint or task is left.
// One TCG boot.
func TestUserNetwork(t *testing.T) {
	requireVM(t)
	ctx := context.Background()
	t.Setenv("BERTH_TEST_USERNET_HELPER", "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	// A server on the host's loopback, for the guest to reach via the
	// gateway.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "host-page\n") })}
	go func() { _ = hostSrv.Serve(hostLn) }()
	defer hostSrv.Close()
	hostPort := hostLn.Addr().(*net.TCPAddr).Port

	netRoot, err := os.MkdirTemp("", "bun")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(netRoot)
	svc, err := network.New(ctx, network.Options{
		Root: netRoot, Logger: hclog.New(&hclog.LoggerOptions{Name: "network", Level: hclog.Warn}),
		HostPrefixes: func() []netip.Prefix { return nil },
		UserMode:     true, HelperArgv: []string{exe, "usernet-helper"},
		// Names outside the network go nowhere real.
		DNSUpstreams: []string{"127.0.0.1:9"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	n, err := svc.Create(ctx, sdknet.CreateSpec{Name: "un", Subnet: "10.213.160.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Remove(ctx, n.ID) }()
	helperPid := func() int {
		b, _ := os.ReadFile(filepath.Join(netRoot, n.ID, "helper.pid"))
		var pid int
		_, _ = fmt.Sscan(string(b), &pid)
		return pid
	}
	pid := helperPid()

	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	vmID := "net-user-" + n.ID[:8]
	pubPort := freePort(t)
	att, err := svc.Attach(ctx, sdknet.AttachRequest{ContainerID: vmID, Name: "uweb", Hostname: "uweb", Network: "un",
		Aliases: []string{"uwww"}, Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: pubPort, ContainerPort: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Detach(ctx, vmID) }()
	if att.Mode != network.ModeUser {
		t.Fatalf("attachment mode %q, want %q", att.Mode, network.ModeUser)
	}
	vmIP := strings.Split(att.Interfaces[0].Addresses[0], "/")[0]

	// (No wget -T: Debian 12's static busybox 1.35 segfaults with it.)
	script := fmt.Sprintf(`mkdir -p /tmp/www && echo "page-of-$(hostname)" > /tmp/www/index.html && httpd -p 80 -h /tmp/www
cat /etc/resolv.conf
i=0; while [ $i -lt 300 ]; do if nslookup uwww 2>&1 | sed -n 's/^Address: *\(10\.[0-9.]*\)$/RESOLVED \1/p' | grep RESOLVED; then break; fi; i=$((i+1)); sleep 0.2; done
i=0; while [ $i -lt 300 ]; do if wget -q -O - http://%s:%d/; then echo HOST-FETCHED; break; fi; i=$((i+1)); sleep 0.2; done
sleep 1000`, n.Gateway, hostPort)
	vmLog := filepath.Join(t.TempDir(), "vm.log")
	spec := newSpec(t, vmID, conformance.SpecOptions{Args: []string{"sh", "-c", script}, LogPath: vmLog})
	spec.Network = &att
	c0 := time.Now()
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Logf("Create %s (cold boot) took %v", vmID, time.Since(c0).Round(time.Millisecond))
	defer func() {
		_ = rt.Signal(ctx, vmID, "", syscall.SIGKILL, true)
		_, _ = rt.Wait(ctx, vmID, "")
		_, _ = rt.Delete(ctx, vmID)
	}()
	if _, err := rt.Start(ctx, vmID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(150 * time.Second)
	for !strings.Contains(logText(vmLog), "HOST-FETCHED") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	out := logText(vmLog)
	for _, want := range []string{"nameserver " + n.Gateway + "\n", "RESOLVED " + vmIP + "\n", "host-page\nHOST-FETCHED"} {
		if !strings.Contains(out, want) {
			t.Errorf("guest output lacks %q:\n%s", want, out)
		}
	}

	// The published port, served by the helper (the daemon may be away).
	hc := &http.Client{Timeout: 20 * time.Second}
	u := fmt.Sprintf("http://127.0.0.1:%d/index.html", pubPort)
	var got string
	for deadline := time.Now().Add(60 * time.Second); got != "page-of-uweb\n" && time.Now().Before(deadline); {
		if resp, err := hc.Get(u); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(body)
		} else {
			got = err.Error()
			time.Sleep(200 * time.Millisecond)
		}
	}
	if got != "page-of-uweb\n" {
		t.Errorf("host → %s: %q", u, got)
	}

	if err := rt.Signal(ctx, vmID, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, vmID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Delete(ctx, vmID); err != nil {
		t.Fatal(err)
	}
	noLeaks(t, stateDir, runDir)
	if err := svc.Detach(ctx, vmID); err != nil {
		t.Fatal(err)
	}
	if err := svc.Remove(ctx, "un"); err != nil {
		t.Fatal(err)
	}
	if eps, err := svc.Endpoints(ctx, ""); err != nil || len(eps) != 0 {
		t.Errorf("endpoints left after detach: %v %v", eps, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("usernet helper %d still exists after network rm: %v", pid, err)
	}
	if left, _ := filepath.Glob(filepath.Join(netRoot, "*")); len(left) != 1 || filepath.Base(left[0]) != "networks.db" {
		t.Errorf("left under the network root after rm: %v", left)
	}
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", pubPort)); err != nil {
		t.Errorf("published port still held after network rm: %v", err)
	} else {
		l.Close()
	}
}

// TestUserNetworkErrors: bad user-mode attachments are refused naming what
// is wrong, before anything is made; no VM boots.
func TestUserNetworkErrors(t *testing.T) {
	base := func() isolation.Spec {
		return isolation.Spec{ID: "u1", Network: &isolation.NetworkAttachment{Mode: "user", Interfaces: []isolation.Interface{{
			Name: "eth0", Bridge: "/run/x.sock", Addresses: []string{"10.1.2.3/24"}, Gateway: "10.1.2.1"}}}}
	}
	if err := checkNetwork(base()); err != nil {
		t.Fatalf("a good user attachment: %v", err)
	}
	for name, mod := range map[string]func(*isolation.Spec){
		"relative socket": func(s *isolation.Spec) { s.Network.Interfaces[0].Bridge = "x.sock" },
		"no address":      func(s *isolation.Spec) { s.Network.Interfaces[0].Addresses = nil },
		"bad address":     func(s *isolation.Spec) { s.Network.Interfaces[0].Addresses = []string{"fe80::1/64"} },
		"bad gateway":     func(s *isolation.Spec) { s.Network.Interfaces[0].Gateway = "gw" },
		"two interfaces": func(s *isolation.Spec) {
			s.Network.Interfaces = append(s.Network.Interfaces, s.Network.Interfaces[0])
		},
	} {
		s := base()
		mod(&s)
		if err := checkNetwork(s); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
	s := base()
	if nics := nicsFor(s); len(nics) != 1 || nics[0].Socket != "/run/x.sock" || nics[0].TAP != "" || nics[0].MAC == "" {
		t.Errorf("nicsFor(user) = %+v", nics)
	}
}

// TestTemplateUserNetwork: two VM containers on ONE user-mode network
// start from one socket-NIC template (built as a first Create would,
// without booting that task; then two restores). Each guest's NIC has
// its own MAC (not the template's placeholder MAC), each fetches the
// other's page by name through the network's DNS, the published
// 127.0.0.1 port of one answers from the host; after Delete, detach and
// network rm no task, clone, helper, socket or port is left.
func TestTemplateUserNetwork(t *testing.T) {
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Setenv("BERTH_TEST_USERNET_HELPER", "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	netRoot, err := os.MkdirTemp("", "bun")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(netRoot)
	svc, err := network.New(ctx, network.Options{
		Root: netRoot, Logger: hclog.New(&hclog.LoggerOptions{Name: "network", Level: hclog.Warn}),
		HostPrefixes: func() []netip.Prefix { return nil },
		UserMode:     true, HelperArgv: []string{exe, "usernet-helper"},
		DNSUpstreams: []string{"127.0.0.1:9"}, // names outside the network go nowhere real
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	n, err := svc.Create(ctx, sdknet.CreateSpec{Name: "untpl", Subnet: "10.213.161.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Remove(context.Background(), n.ID) }()
	b, _ := os.ReadFile(filepath.Join(netRoot, n.ID, "helper.pid"))
	var helperPid int
	_, _ = fmt.Sscan(string(b), &helperPid)

	stateDir, runDir := pluginDirs(t)
	removeCloneDir(t, stateDir)
	rt := configured(t, stateDir, runDir, `,"templates":true`)
	names := [2]string{"utpl-a", "utpl-b"}
	ids := [2]string{"uta-" + n.ID[:8], "utb-" + n.ID[:8]}
	pubPort := freePort(t)
	var atts [2]isolation.NetworkAttachment
	for i := range ids {
		req := sdknet.AttachRequest{ContainerID: ids[i], Name: names[i], Hostname: names[i], Network: "untpl"}
		if i == 0 {
			req.Ports = []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: pubPort, ContainerPort: 80}}
		}
		if atts[i], err = svc.Attach(ctx, req); err != nil {
			t.Fatal(err)
		}
		id := ids[i]
		defer func() { _ = svc.Detach(context.Background(), id) }()
	}

	// The socket-NIC template, built as a first Create on the network would.
	probe := newSpec(t, "ut-probe", conformance.SpecOptions{Args: []string{"true"}})
	probe.Network = &atts[0]
	rt.chooseTemplate(t.TempDir(), rt.defaults.bootFor(probe), probe)
	tpl := waitTemplate(t, stateDir)
	if in := tpl.Manifest.Inputs; in.NICs != 1 || in.NICKind != vmtemplate.NICSocket {
		t.Fatalf("template inputs %+v: want 1 NIC of kind %q", in, vmtemplate.NICSocket)
	}
	t.Logf("template %s (1 socket NIC) built in %v", tpl.ID, tpl.Manifest.BuildTook.Round(time.Millisecond))

	// (No wget -T: Debian 12's static busybox 1.35 segfaults with it.)
	script := `mkdir -p /tmp/www && echo "page-of-$(hostname)" > /tmp/www/index.html && httpd -p 80 -h /tmp/www
echo "mac=$(cat /sys/class/net/eth0/address)"
i=0; while [ $i -lt 600 ]; do if wget -q -O - http://PEER/index.html; then echo FETCHED; break; fi; i=$((i+1)); sleep 0.2; done
echo DONE
sleep 1000`
	logs := [2]string{filepath.Join(t.TempDir(), "a.log"), filepath.Join(t.TempDir(), "b.log")}
	var macs [2]string
	for i := range ids {
		s := newSpec(t, ids[i], conformance.SpecOptions{Args: []string{"sh", "-c", strings.ReplaceAll(script, "PEER", names[1-i])}, LogPath: logs[i]})
		s.Network = &atts[i]
		macs[i] = guestMAC(s)
		if macs[i] == vmtemplate.PlaceholderMAC(0) {
			t.Fatalf("container MAC %s is the placeholder's", macs[i])
		}
		c0 := time.Now()
		if _, err := rt.Create(ctx, s); err != nil {
			t.Fatalf("Create %s: %v", ids[i], err)
		}
		t.Logf("Create %s (from the template) took %v", ids[i], time.Since(c0).Round(time.Millisecond))
		id := ids[i]
		defer func() {
			_ = rt.Signal(context.Background(), id, "", syscall.SIGKILL, true)
			_, _ = rt.Wait(context.Background(), id, "")
			_, _ = rt.Delete(context.Background(), id)
		}()
	}
	for _, id := range ids {
		if _, err := rt.Start(ctx, id); err != nil {
			t.Fatalf("Start %s: %v", id, err)
		}
	}
	for i, id := range ids {
		deadline := time.Now().Add(150 * time.Second)
		for !strings.Contains(logText(logs[i]), "DONE") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		slog, _ := os.ReadFile(filepath.Join(stateDir, "tasks", id, supervisorLog))
		if _, line, ok := strings.Cut(string(slog), "vm started from template"); !ok {
			t.Errorf("%s did not start from the template; supervisor log:\n%s", id, slog)
		} else {
			line, _, _ = strings.Cut(line, "\n")
			t.Logf("%s: vm started from template%s", id, line)
		}
		out := logText(logs[i])
		for _, want := range []string{"mac=" + macs[i] + "\n", "page-of-" + names[1-i] + "\nFETCHED\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", names[i], want, out)
			}
		}
	}

	// The published port, served by the helper.
	hc := &http.Client{Timeout: 20 * time.Second}
	u := fmt.Sprintf("http://127.0.0.1:%d/index.html", pubPort)
	var got string
	for deadline := time.Now().Add(60 * time.Second); got != "page-of-"+names[0]+"\n" && time.Now().Before(deadline); {
		if resp, err := hc.Get(u); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(body)
		} else {
			got = err.Error()
			time.Sleep(200 * time.Millisecond)
		}
	}
	if got != "page-of-"+names[0]+"\n" {
		t.Errorf("host → %s: %q", u, got)
	}

	for _, id := range ids {
		if err := rt.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.Wait(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := rt.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	noLeaks(t, stateDir, runDir)
	eventually(t, "the RAM clones are removed", func() bool {
		clones, _ := os.ReadDir((&vmtemplate.Store{Dir: templatesDir(stateDir)}).CloneDir())
		return len(clones) == 0
	})
	for _, id := range ids {
		if err := svc.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Remove(ctx, "untpl"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(helperPid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("usernet helper %d still exists after network rm: %v", helperPid, err)
	}
	if left, _ := filepath.Glob(filepath.Join(netRoot, "*")); len(left) != 1 || filepath.Base(left[0]) != "networks.db" {
		t.Errorf("left under the network root after rm: %v", left)
	}
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", pubPort)); err != nil {
		t.Errorf("published port still held after network rm: %v", err)
	} else {
		l.Close()
	}
}
