package main

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/plugin"
)

// waitTemplate waits until the plugin's template store holds a valid
// template and returns it.
func waitTemplate(t *testing.T, stateDir string) vmtemplate.Entry {
	t.Helper()
	store := &vmtemplate.Store{Dir: templatesDir(stateDir)}
	var got vmtemplate.Entry
	eventually(t, "the vm template is built", func() bool {
		entries, _ := store.List()
		for _, e := range entries {
			if e.Err == nil {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// removeCloneDir removes, at the test's end, the (then empty) RAM clone
// dir of the plugin's template store, which may be on /dev/shm.
func removeCloneDir(t *testing.T, stateDir string) {
	t.Cleanup(func() { _ = os.Remove((&vmtemplate.Store{Dir: templatesDir(stateDir)}).CloneDir()) })
}

// runTask creates, starts and waits for a task running script, and
// returns its output and the supervisor log.
func runTask(t *testing.T, rt *runtime, stateDir, id, script string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := rt.Create(ctx, newSpec(t, id, conformance.SpecOptions{Args: []string{"sh", "-c", script}})); err != nil {
		t.Fatalf("Create %s: %v", id, err)
	}
	created := time.Since(start)
	var out strings.Builder
	done := make(chan error, 1)
	go func() { done <- rt.Attach(ctx, id, "", isolation.Streams{Stdout: &syncWriter{b: &out}}) }()
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start %s: %v", id, err)
	}
	if e, err := rt.Wait(ctx, id, ""); err != nil || e.Code != 0 {
		t.Fatalf("Wait %s = %+v, %v", id, e, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Attach %s: %v", id, err)
	}
	slog, _ := os.ReadFile(filepath.Join(stateDir, "tasks", id, supervisorLog))
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete %s: %v", id, err)
	}
	t.Logf("%s: created in %v, ran and deleted in %v", id, created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, l := range strings.Split(string(slog), "\n") {
		if strings.Contains(l, "since_start") || strings.Contains(l, "took") {
			t.Logf("  %s", l)
		}
	}
	return out.String(), string(slog)
}

// TestTemplateStart: with templates on, the first task boots cold and
// starts the template's build; later tasks start from it and are each
// their own (hostname, random numbers, clock); a template-started task
// checkpoints with its RAM file and restores where it was; a corrupt
// template means a logged cold boot and a rebuild; nothing is left.
func TestTemplateStart(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	removeCloneDir(t, stateDir)
	rt := configured(t, stateDir, runDir, `,"templates":true`)
	script := "hostname; cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s"

	_, slog := runTask(t, rt, stateDir, "tpl-first", "true")
	if !strings.Contains(slog, "booting cold") {
		t.Errorf("first task: want a cold boot (no template yet); supervisor log:\n%s", slog)
	}
	tpl := waitTemplate(t, stateDir)
	t.Logf("template %s built in %v", tpl.ID, tpl.Manifest.BuildTook.Round(time.Millisecond))

	var outs [2][]string
	for i := range outs {
		id := "tpl-clone-" + strconv.Itoa(i)
		before := time.Now().Unix()
		out, slog := runTask(t, rt, stateDir, id, script)
		after := time.Now().Unix()
		if !strings.Contains(slog, "vm started from template") {
			t.Fatalf("%s did not start from the template; supervisor log:\n%s", id, slog)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("%s output %q", id, out)
		}
		outs[i] = lines
		if lines[0] != id[:min(12, len(id))] {
			t.Errorf("%s hostname %q", id, lines[0])
		}
		if d, err := strconv.ParseInt(lines[3], 10, 64); err != nil || d < before-1 || d > after+1 {
			t.Errorf("%s date %q, host %d..%d: want within 1 s", id, lines[3], before, after)
		}
	}
	if outs[0][1] == outs[1][1] || outs[0][2] == outs[1][2] {
		t.Errorf("two template-started VMs drew the same random numbers: %q %q", outs[0], outs[1])
	}

	// Checkpoint of a template-started VM (file-backed RAM) and restore.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := filepath.Join(t.TempDir(), "task.log")
	id := "tpl-counter"
	spec := newSpec(t, id, conformance.SpecOptions{LogPath: log,
		Args: []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"}})
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = rt.Delete(context.Background(), id) }()
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the counter reaches 5", func() bool { return len(counterLines(t, log)) >= 5 })
	if err := rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	ckDir := filepath.Join(t.TempDir(), "ck")
	if err := os.Mkdir(ckDir, 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := rt.Checkpoint(ctx, id, isolation.CheckpointOptions{Dir: ckDir}); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	t.Logf("checkpoint of a paused template-started 256 MiB VM: %v", time.Since(start).Round(time.Millisecond))
	if fi, err := os.Stat(filepath.Join(ckDir, checkpointVM, checkpointRAM)); err != nil || fi.Size() != 256<<20 {
		t.Fatalf("checkpoint RAM file: %v, %v", fi, err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	saved := counterLines(t, log)
	start = time.Now()
	if _, err := rt.Restore(ctx, spec, ckDir); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restore of it: %v", time.Since(start).Round(time.Millisecond))
	eventually(t, "the counter goes on after the restore", func() bool { return len(counterLines(t, log)) >= len(saved)+3 })
	if after := counterLines(t, log)[len(saved):]; after[0] != saved[len(saved)-1]+1 {
		t.Errorf("counter after the restore %v, last before %d", after[:3], saved[len(saved)-1])
	}
	if err := rt.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}

	// A corrupt template: a clear reason in the log, a cold boot, the
	// template built again.
	// The RAM clone of a VM whose supervisor was killed with it (no run
	// dir any more) is swept at the next Create.
	cloneDir := (&vmtemplate.Store{Dir: templatesDir(stateDir)}).CloneDir()
	stale := filepath.Join(cloneDir, "0123456789ab.ram")
	if err := os.WriteFile(stale, []byte("ram of a dead VM"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(tpl.Dir, vmtemplate.VMDir, "state")
	if err := os.WriteFile(state, []byte("not a migration stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, slog := runTask(t, rt, stateDir, "tpl-corrupt", "echo still runs")
	if out != "still runs\n" || !strings.Contains(slog, "is corrupt") || !strings.Contains(slog, "booting cold") {
		t.Errorf("corrupt template: output %q; supervisor log:\n%s", out, slog)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale RAM clone %s not swept: %v", stale, err)
	}
	waitTemplate(t, stateDir)
	noLeaks(t, stateDir, runDir)
	clones, _ := os.ReadDir((&vmtemplate.Store{Dir: templatesDir(stateDir)}).CloneDir())
	if len(clones) > 0 {
		t.Errorf("RAM clones left: %v", clones)
	}
}

// TestConformanceFromTemplate runs the isolation conformance suite in
// process against a runtime whose tasks start from a template (built by a
// first task); Restart is a new runtime over the same dirs (the
// supervisors, separate processes, keep running), then Recover.
func TestConformanceFromTemplate(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	removeCloneDir(t, stateDir)
	var logBuf strings.Builder
	logw := &syncWriter{b: &logBuf}
	newRT := func(t *testing.T) *runtime {
		rt := newRuntime(hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: logw}))
		rt.supervisorExe = filepath.Join(binDir, "isolation-vm")
		if err := rt.Configure(context.Background(), plugin.ConfigureRequest{Config: testConfig(`,"templates":true`),
			StateDir: stateDir, RuntimeDir: runDir}); err != nil {
			t.Fatalf("Configure: %v", err)
		}
		return rt
	}
	rt := newRT(t)
	runTask(t, rt, stateDir, "tpl-warm", "true")
	waitTemplate(t, stateDir)
	var specs atomic.Int32
	start := time.Now()
	conformance.Run(t, func(*testing.T) isolation.Runtime { return rt }, conformance.Options{
		NewSpec: func(t *testing.T, id string, o conformance.SpecOptions) isolation.Spec {
			specs.Add(1)
			return newSpec(t, id, o)
		},
		Capabilities: capabilities(),
		Restart: func(t *testing.T) isolation.Runtime {
			rt = newRT(t)
			return rt
		},
	})
	logw.mu.Lock()
	fromTemplate := strings.Count(logBuf.String(), "task starts from vm template")
	logw.mu.Unlock()
	t.Logf("conformance from templates: %d task specs, %d tasks started from the template, in %s", specs.Load(), fromTemplate,
		time.Since(start).Round(time.Second))
	if fromTemplate == 0 {
		t.Errorf("no task started from the template; plugin log:\n%s", logBuf.String())
	}
	noLeaks(t, stateDir, runDir)
}

// TestTemplateBridgeNetwork: tasks with a bridge attachment start from a
// template with a placeholder NIC (built once, its build TAP gone after).
// Two such tasks on one real network (netdp bridge and rules, netd's
// resolver and port proxy) each show their own MAC (not the template's),
// are in the bridge's FDB with it, reach each other by name and fetch
// each other's 4 MiB file intact (offloads negotiated at the template's
// build work on the containers' TAPs); a port published on 127.0.0.1
// answers from the host; Delete leaves no TAP, no nft rule, no clone.
// One template build, two restores.
func TestTemplateBridgeNetwork(t *testing.T) {
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	names := [2]string{"tplweb-a", "tplweb-b"}
	ips := [2]string{"10.213.154.2", "10.213.154.3"}
	proxyPort := freePort(t)
	nid, n := testNetwork(t, "10.213.154",
		[]netd.Record{{Name: names[0], IPs: []string{ips[0]}}, {Name: names[1], IPs: []string{ips[1]}}},
		[]netd.Port{{HostIP: "127.0.0.1", HostPort: proxyPort, Protocol: "tcp", TargetIP: ips[0], TargetPort: 80}})
	stateDir, runDir := pluginDirs(t)
	removeCloneDir(t, stateDir)
	rt := configured(t, stateDir, runDir, `,"templates":true`)
	macs := [2]string{"02:be:0a:d5:9a:02", "02:be:0a:d5:9a:03"}
	ids := [2]string{"tna-" + nid[:8], "tnb-" + nid[:8]}
	attachment := func(i int) *isolation.NetworkAttachment {
		a := &isolation.NetworkAttachment{Mode: "bridge", Hostname: names[i],
			Interfaces: []isolation.Interface{{Name: "eth0", Bridge: n.Bridge, MAC: macs[i], Addresses: []string{ips[i] + "/24"}, Gateway: n.Gateway.String()}},
			DNS:        isolation.DNS{Servers: []string{n.Gateway.String()}, Search: []string{"test.berth"}, Options: []string{"ndots:0"}}}
		if i == 0 {
			a.Ports = []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: proxyPort, ContainerPort: 80, Protocol: "tcp"}}
		}
		return a
	}

	// The template with a NIC, built as a first Create with a NIC would
	// (without booting that task).
	probe := newSpec(t, "tn-probe", conformance.SpecOptions{Args: []string{"true"}})
	probe.Network = attachment(0)
	rt.chooseTemplate(t.TempDir(), rt.defaults.bootFor(probe), probe)
	tpl := waitTemplate(t, stateDir)
	if tpl.Manifest.Inputs.NICs != 1 {
		t.Fatalf("template inputs %+v: want 1 NIC", tpl.Manifest.Inputs)
	}
	t.Logf("template %s (1 NIC) built in %v", tpl.ID, tpl.Manifest.BuildTook.Round(time.Millisecond))
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "btpl"+tpl.ID[:8]) {
				t.Errorf("the template build's TAP %s is left", l.Attrs().Name)
			}
		}
	}

	// (No wget -T: Debian 12's static busybox 1.35 segfaults with it.)
	script := `mkdir -p /tmp/www && echo "page-of-$(hostname)" > /tmp/www/index.html
dd if=/dev/urandom of=/tmp/www/big bs=64k count=64 2>/dev/null; echo "bigsum=$(md5sum < /tmp/www/big)"
httpd -p 80 -h /tmp/www
echo "mac=$(cat /sys/class/net/eth0/address)"
i=0; while [ $i -lt 600 ]; do if wget -q -O - http://PEER/index.html; then echo FETCHED; break; fi; i=$((i+1)); sleep 0.2; done
wget -q -O /tmp/peerbig http://PEER/big; echo "peersum=$(md5sum < /tmp/peerbig)"; echo DONE
sleep 1000`
	logs := [2]string{filepath.Join(t.TempDir(), "a.log"), filepath.Join(t.TempDir(), "b.log")}
	for i := range ids {
		s := newSpec(t, ids[i], conformance.SpecOptions{Args: []string{"sh", "-c", strings.ReplaceAll(script, "PEER", names[1-i])}, LogPath: logs[i]})
		s.Network = attachment(i)
		if _, err := rt.Create(ctx, s); err != nil {
			t.Fatalf("Create %s: %v", ids[i], err)
		}
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
	sums := [2]string{}
	for i, id := range ids {
		deadline := time.Now().Add(150 * time.Second)
		for !strings.Contains(logText(logs[i]), "DONE") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		slog, _ := os.ReadFile(filepath.Join(stateDir, "tasks", id, supervisorLog))
		if !strings.Contains(string(slog), "vm started from template") {
			t.Errorf("%s did not start from the template; supervisor log:\n%s", id, slog)
		}
		out := logText(logs[i])
		for _, want := range []string{"mac=" + macs[i] + "\n", "page-of-" + names[1-i] + "\nFETCHED\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", names[i], want, out)
			}
		}
		if _, after, ok := strings.Cut(out, "bigsum="); ok {
			sums[i], _, _ = strings.Cut(after, "\n")
		}
	}
	for i := range ids {
		if out := logText(logs[i]); sums[1-i] == "" || !strings.Contains(out, "peersum="+sums[1-i]+"\n") {
			t.Errorf("%s fetched %s's 4 MiB file (sum %q) damaged or not at all:\n%s", names[i], names[1-i], sums[1-i], out)
		}
		// The host's bridge learnt the container's MAC on its TAP.
		tap, err := netlink.LinkByName(tapName(ids[i]))
		if err != nil {
			t.Fatalf("TAP of %s: %v", ids[i], err)
		}
		fdb, err := netlink.NeighList(tap.Attrs().Index, syscall.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(fdb, func(e netlink.Neigh) bool { return e.HardwareAddr.String() == macs[i] }) {
			var have []string
			for _, e := range fdb {
				have = append(have, e.HardwareAddr.String())
			}
			t.Errorf("bridge FDB on %s lacks %s's MAC %s: %v", tapName(ids[i]), names[i], macs[i], have)
		}
	}

	// The published port, from the host (netd's proxy on 127.0.0.1).
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, c := range []struct{ path, want string }{{"/index.html", "page-of-" + names[0] + "\n"}, {"/big", sums[0]}} {
		u := fmt.Sprintf("http://127.0.0.1:%d%s", proxyPort, c.path)
		resp, err := hc.Get(u)
		if err != nil {
			t.Errorf("host → %s: %v", u, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := string(body)
		if c.path == "/big" {
			got = fmt.Sprintf("%x  -", md5.Sum(body))
		}
		if got != c.want {
			t.Errorf("host → %s: %q (%d bytes), want %q", u, got[:min(len(got), 64)], len(body), c.want)
		}
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
		if _, err := netlink.LinkByName(tapName(id)); err == nil {
			t.Errorf("TAP %s left after Delete", tapName(id))
		}
		if hasRuleOf(t, id) {
			t.Errorf("nft rules of %s left after Delete", id)
		}
	}
	noLeaks(t, stateDir, runDir)
	eventually(t, "the RAM clones are removed", func() bool {
		clones, _ := os.ReadDir((&vmtemplate.Store{Dir: templatesDir(stateDir)}).CloneDir())
		return len(clones) == 0
	})
}
