package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
	"github.com/berth-dev/berth/sdk/network"
)

// TestUserNetworkingDaemon drives a real daemon with network_datapath =
// "user": networks get a `berth system usernet-helper` process (the
// hidden command) and its socket, no bridge; the helper outlives a daemon
// restart and is adopted, and goes with network rm; a sandbox container
// on a user network is refused naming the way out, leaving no endpoint;
// --internal is refused. (The VM side of user networks is
// plugins/isolation-vm's TestUserNetwork: one TCG boot.) Root only: the
// container plugins need it.
func TestUserNetworkingDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the container plugins (namespaces, cgroups, overlay) need it (CI runs as root)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static missing (scripts/install-deps.sh installs it): the demo image needs it")
	}
	needSandboxInit(t)
	parent := fmt.Sprintf("berth-untest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	// The warm-up container (lifecycle dials its handles at first use)
	// has no network: a sandbox cannot join a user network.
	e := startDaemon(t, strings.NewReplacer("CGROUP_PARENT", parent, "DNS_UPSTREAM", "127.0.0.1:9",
		"NETWORK_DEFAULTS", testNetworkDefaults('u')+"\n  network_datapath = \"user\"").Replace(networkConfig), parent,
		"--network", "none")

	// A sandbox container on the (user-mode) default network is refused
	// with the reason; the failed create leaves no endpoint.
	_, errOut, code := e.berth("run", "--name", "sb", demoImage, "true")
	if code == 0 || !strings.Contains(errOut, "kernel datapath") || !strings.Contains(errOut, "--network none") {
		t.Errorf("run on a user network: exit %d, stderr %q; want the kernel-datapath refusal", code, errOut)
	}
	if v := e.inspectNetwork(network.DefaultNetwork); len(v.Containers) != 0 || v.Bridge != "" {
		t.Errorf("default user network after the refused run: %+v", v)
	}

	if _, errOut, code := e.berth("network", "create", "--internal", "inn"); code == 0 || !strings.Contains(errOut, "--internal needs the kernel datapath") {
		t.Errorf("network create --internal: exit %d, %q", code, errOut)
	}
	id := strings.TrimSpace(e.mustBerth("network", "create", "--subnet", "10.233.7.0/24", "un"))
	netRoot := filepath.Join(e.dir, "state", "network")
	helperPid := func() int {
		b, _ := os.ReadFile(filepath.Join(netRoot, id, "helper.pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	pid := helperPid()
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if pid == 0 || !strings.Contains(string(cmdline), "system\x00usernet-helper\x00--state\x00") {
		t.Fatalf("no usernet helper for network un (pid %d, cmdline %q)", pid, cmdline)
	}
	sock := filepath.Join(netRoot, id[:16]+".qemu.sock")
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the helper's socket", func() bool { fi, err := os.Stat(sock); return err == nil && fi.Mode()&os.ModeSocket != 0 })

	// The helper outlives the daemon and is adopted by the next one.
	e.mustBerth("system", "stop")
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("usernet helper %d did not outlive the daemon: %v", pid, err)
	}
	e.mustBerth("system", "start")
	if v := e.inspectNetwork("un"); v.Subnet != "10.233.7.0/24" || v.Bridge != "" {
		t.Errorf("network inspect un after the restart: %+v", v)
	}
	if got := helperPid(); got != pid {
		t.Errorf("helper pid %d after the restart, want the adopted %d", got, pid)
	}

	e.mustBerth("network", "rm", "un")
	waitFor("the helper to end", func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) })
	for _, p := range []string{sock, filepath.Join(netRoot, id)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after network rm: %v", p, err)
		}
	}
}

// userVMConfig is a daemon with the VM isolation plugin (ext4 snapshots)
// besides the sandbox, every network user-mode.
const userVMConfig = `
berth {
  state_dir     = "%s/state"
  runtime_dir   = "%s/run"
  log_level     = "debug"
  dns_upstreams = ["127.0.0.1:9"]
  NETWORK_DEFAULTS
  network_datapath = "user"
}
plugin "api" "grpc" {}
plugin "resources" "cgroup" {
  parent = "CGROUP_PARENT"
}
plugin "snapshot" "overlay" {}
plugin "snapshot" "ext4" {
  size = "256MiB"
}
plugin "isolation" "sandbox" {
  default     = true
  snapshotter = "overlay"
}
plugin "isolation" "vm" {
  snapshotter  = "ext4"
  kernel       = "KERNEL"
  memory       = "256MiB"
  cpus         = 1
  accel        = "tcg"
  boot_timeout = "90s"
}
plugin "lifecycle" "local" {
  restart_backoff = "50ms"
}
`

var buildAgentOnce sync.Once
var buildAgentErr error

// TestUserNetworkVMDaemon: `berth run --isolation vm` on a user-mode
// network through the real daemon (one TCG boot): -p 127.0.0.1:P:80 to
// busybox httpd in the VM answers from the host, the VM reaches a server
// on the host's 127.0.0.1 through the gateway, an alias of the network
// resolves; after rm and network rm no helper, socket or endpoint is left.
func TestUserNetworkVMDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the container plugins need it (CI runs as root)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/install-deps.sh)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static missing (scripts/install-deps.sh installs it): the demo image needs it")
	}
	kernel := vmkerneltest.Kernel(t)
	buildAgentOnce.Do(func() {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(binDir, "berth-vm-agent"), "../../../plugins/isolation-vm/guest")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildAgentErr = fmt.Errorf("build berth-vm-agent: %v\n%s", err, out)
		}
	})
	if buildAgentErr != nil {
		t.Fatal(buildAgentErr)
	}
	needSandboxInit(t)

	// A server on the host's loopback, for the VM to reach via the gateway.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "host-page\n") })}
	go func() { _ = hostSrv.Serve(hostLn) }()
	defer hostSrv.Close()
	hostPort := hostLn.Addr().(*net.TCPAddr).Port

	parent := fmt.Sprintf("berth-unvm-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	e := startDaemon(t, strings.NewReplacer("CGROUP_PARENT", parent, "KERNEL", kernel.Image(),
		"NETWORK_DEFAULTS", testNetworkDefaults('v')).Replace(userVMConfig), parent, "--network", "none")

	id := strings.TrimSpace(e.mustBerth("network", "create", "--subnet", "10.233.9.0/24", "un"))
	netRoot := filepath.Join(e.dir, "state", "network")
	b, _ := os.ReadFile(filepath.Join(netRoot, id, "helper.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 {
		t.Fatal("no usernet helper pid")
	}
	pubPort := freeLoopbackPort(t)
	// (No wget -T: Debian 12's static busybox 1.35 segfaults with it.)
	script := fmt.Sprintf(`mkdir -p /tmp/www && echo "page-of-$(hostname)" > /tmp/www/index.html && httpd -p 80 -h /tmp/www
i=0; while [ $i -lt 300 ]; do if nslookup uwww 2>&1 | sed -n 's/^Address: *\(10\.[0-9.]*\)$/RESOLVED \1/p' | grep RESOLVED; then break; fi; i=$((i+1)); sleep 0.2; done
i=0; while [ $i -lt 300 ]; do if wget -q -O - http://10.233.9.1:%d/; then echo HOST-FETCHED; break; fi; i=$((i+1)); sleep 0.2; done
sleep 1000`, hostPort)
	e.mustBerth("run", "-d", "--isolation", "vm", "--name", "uweb", "--hostname", "uweb", "--network", "un", "--network-alias", "uwww",
		"-p", fmt.Sprintf("127.0.0.1:%d:80", pubPort), demoImage, "sh", "-c", script)
	var logs string
	for deadline := time.Now().Add(180 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		logs, _, _ = e.berth("logs", "uweb")
		if strings.Contains(logs, "HOST-FETCHED") {
			break
		}
	}
	for _, want := range []string{"RESOLVED 10.233.9.2\n", "host-page\nHOST-FETCHED"} {
		if !strings.Contains(logs, want) {
			t.Errorf("VM output lacks %q:\n%s", want, logs)
		}
	}
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

	e.mustBerth("rm", "-f", "uweb")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "qemu-system") && strings.Contains(string(b), e.dir) {
			t.Errorf("qemu left after rm: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if v := e.inspectNetwork("un"); len(v.Containers) != 0 || len(v.Endpoints) != 0 {
		t.Errorf("network un after rm: %+v", v)
	}
	e.mustBerth("network", "rm", "un")
	for deadline := time.Now().Add(60 * time.Second); !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("usernet helper %d still runs after network rm", pid)
		}
	}
	for _, p := range []string{filepath.Join(netRoot, id[:16]+".qemu.sock"), filepath.Join(netRoot, id)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after network rm: %v", p, err)
		}
	}
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", pubPort)); err != nil {
		t.Errorf("published port still held after rm: %v", err)
	} else {
		l.Close()
	}
}
