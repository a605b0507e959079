package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
	buildInitOnce.Do(func() {
		cmd := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`,
			"-o", filepath.Join(binDir, "berth-sandbox-init"), "../../../cmd/berth-sandbox-init")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildInitErr = fmt.Errorf("build berth-sandbox-init: %v\n%s", err, out)
		}
	})
	if buildInitErr != nil {
		t.Fatal(buildInitErr)
	}
	parent := fmt.Sprintf("berth-untest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	e := newEnv(t, strings.NewReplacer("CGROUP_PARENT", parent, "DNS_UPSTREAM", "127.0.0.1:9",
		"NETWORK_DEFAULTS", testNetworkDefaults('u')+"\n  network_datapath = \"user\"").Replace(networkConfig))
	t.Cleanup(func() {
		if out, _, code := e.berth("ps", "-a", "-q"); code == 0 {
			for _, id := range strings.Fields(out) {
				_, _, _ = e.berth("rm", "-f", id)
			}
		}
		_, _, _ = e.berth("network", "rm", "un")
		_, _, _ = e.berth("network", "rm", network.DefaultNetwork)
		_, _, _ = e.berth("system", "stop")
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
		dirs = append(dirs, "/sys/fs/cgroup/"+parent)
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	})
	demoImageScript := func(args ...string) {
		cmd := exec.Command("../../../scripts/demo-image.sh", args...)
		cmd.Env = append(os.Environ(), "BERTH="+filepath.Join(binDir, "berth"), "BERTH_CONFIG="+e.config)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("demo-image.sh %v: %v\n%s", args, err, out)
		}
	}
	demoImageScript("--rootfs", filepath.Join(e.dir, "rootfs-warmup"))
	e.mustBerth("system", "start")
	demoImageScript()
	// The warm-up container (lifecycle dials its handles at first use)
	// has no network: a sandbox cannot join a user network.
	e.mustBerth("run", "--rm", "--network", "none", demoImage, "true")

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
