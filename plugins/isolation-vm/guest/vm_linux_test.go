//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/qemu"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/spec"
)

// TestVMGuestAgent boots the agent as PID 1 of a real VM (qemu, TCG here)
// with Debian's kernel, a busybox rootfs as an ext4 virtio-blk disk and a
// 9p share, and drives it over the virtio-serial port as the supervisor
// will: a container that prints, an exec, cgroup v2 stats, pause, a host
// that disconnects and comes back mid-run, a memory limit's OOM kill and
// event, and a clean power-off that ends qemu.
func TestVMGuestAgent(t *testing.T) {
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "greeting"), []byte("greetings over 9p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The resources layer's conformance suite, run in the guest below: the
	// cgroup v2 path this cgroup v1 host cannot exercise.
	cgtest := filepath.Join(t.TempDir(), "cgtest")
	build := exec.Command("go", "test", "-c", "-o", cgtest, "github.com/berth-dev/berth/plugins/resources-cgroup/cgroupctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the cgroupctl tests: %v\n%s", err, out)
	}
	vm := bootVM(t, vmOptions{machine: "q35", disks: []hypervisor.Disk{{Path: rootfsDisk(t, [2]string{"cgtest", cgtest})}},
		shares: []hypervisor.Share{{Tag: "share0", Path: share, ReadOnly: true}}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := vm.connect(ctx)

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest: %+v", info)
	if info.MemTotal == 0 || info.MemAvailable == 0 || info.AgentRSS == 0 {
		t.Errorf("Info memory figures missing: %+v", info)
	}
	if !info.PID1 || info.CgroupMode != "v2" || !strings.HasPrefix(info.KernelRelease, "6.1.") || len(info.Modules) < 10 {
		t.Errorf("Info = %+v: want PID 1, cgroup v2, the 6.1 kernel, the initramfs's modules", info)
	}
	// Guest-wide calls, for real: clock, entropy, hostname.
	hostNow := time.Now()
	if err := c.SyncClock(ctx, hostNow); err != nil {
		t.Fatal(err)
	}
	if info2, err := c.Info(ctx); err != nil || info2.Time.Sub(time.Now()).Abs() > 5*time.Second {
		t.Errorf("guest clock after SyncClock: %v (host %v), %v", info2.Time, time.Now(), err)
	}
	if err := c.AddEntropy(ctx, bytes.Repeat([]byte{0x5a}, 64)); err != nil {
		t.Errorf("AddEntropy: %v", err)
	}
	if err := c.SetHostname(ctx, "berth-vm-test", "0123456789abcdef0123456789abcdef"); err != nil {
		t.Errorf("SetHostname: %v", err)
	}

	// A container on /dev/vda with a 9p share, a file and limits.
	s := newVMSpec(t, "hello", "sh", "-c", "echo hello from the vm; cat /data/greeting; cat /etc/resolv.conf; "+
		"cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>&1; hostname; exec sleep 600")
	memLimit, pids := int64(96<<20), int64(64)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &memLimit}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "hello", Spec: s,
		Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4", Options: []string{"rw", "format=raw"}},
		Shares: []vmagent.Share{{Type: vmagent.Share9P, Source: "share0", Destination: "/data", ReadOnly: true}},
		Files:  []vmagent.File{{Path: "/etc/resolv.conf", Content: []byte("nameserver 192.0.2.53\n")}}}); err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, vm.console())
	}
	var out syncBuf
	attachCtx, stopAttach := context.WithCancel(ctx)
	attached := make(chan error, 1)
	go func() { attached <- c.Attach(attachCtx, "hello", "", isolation.Streams{Stdout: &out, Stderr: &out}) }()
	if _, err := c.Start(ctx, "hello"); err != nil {
		t.Fatalf("Start: %v\n%s", err, vm.console())
	}
	waitFor(t, "the container's output", func() bool { return strings.Count(out.String(), "\n") >= 6 })
	got := out.String()
	for _, want := range []string{"hello from the vm\n", "greetings over 9p\n", "nameserver 192.0.2.53\n", fmt.Sprintf("%d\n", memLimit), "64\n", "hello\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("container output %q lacks %q", got, want)
		}
	}
	// Exec: output and exit code, in the container's cgroup.
	if _, err := c.Exec(ctx, "hello", "e1", &specs.Process{Args: []string{"sh", "-c", "cat /proc/self/cgroup; exit 7"}}); err != nil {
		t.Fatal(err)
	}
	var eout syncBuf
	if err := c.Attach(ctx, "hello", "e1", isolation.Streams{Stdout: &eout}); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "hello", "e1"); err != nil || e.Code != 7 {
		t.Errorf("exec exit %+v, %v", e, err)
	}
	if strings.TrimSpace(eout.String()) != "0::/" {
		t.Errorf("exec's /proc/self/cgroup = %q, want its own cgroup namespace root 0::/", eout.String())
	}
	// Update the limits: the guest's cgroup v2 file changes.
	newLimit := int64(80 << 20)
	if err := c.Update(ctx, "hello", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &newLimit}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "hello", "e-max", &specs.Process{Args: []string{"cat", "/sys/fs/cgroup/memory.max"}}); err != nil {
		t.Fatal(err)
	}
	var maxOut syncBuf
	if err := c.Attach(ctx, "hello", "e-max", isolation.Streams{Stdout: &maxOut}); err != nil || strings.TrimSpace(maxOut.String()) != fmt.Sprint(newLimit) {
		t.Errorf("memory.max after Update = %q, %v; want %d", maxOut.String(), err, newLimit)
	}
	// cgroup v2 stats and freezing.
	u, err := c.Stats(ctx, "hello")
	if err != nil || u.MemoryBytes == 0 || u.Pids < 1 || u.CPUUsageNanos == 0 {
		t.Errorf("Stats = %+v, %v", u, err)
	}
	if err := c.Pause(ctx, "hello"); err != nil {
		t.Errorf("Pause: %v", err)
	}
	if err := c.Resume(ctx, "hello"); err != nil {
		t.Errorf("Resume: %v", err)
	}

	// The host goes away mid-run and comes back: the agent keeps serving,
	// the container keeps running.
	stopAttach()
	<-attached
	c.Close()
	time.Sleep(300 * time.Millisecond)
	c = vm.connect(ctx)
	st, err := c.State(ctx, "hello")
	if err != nil || st.Status != isolation.StatusRunning {
		t.Fatalf("State after reconnecting = %+v, %v\n%s", st, err, vm.console())
	}
	events, err = c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "hello", "e2", &specs.Process{Args: []string{"echo", "after reconnect"}}); err != nil {
		t.Fatal(err)
	}
	var e2 syncBuf
	if err := c.Attach(ctx, "hello", "e2", isolation.Streams{Stdout: &e2}); err != nil || e2.String() != "after reconnect\n" {
		t.Errorf("exec after reconnect: %q, %v", e2.String(), err)
	}
	if err := c.Signal(ctx, "hello", "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "hello", ""); err != nil || e.Code != 137 || e.OOMKilled {
		t.Errorf("init after SIGKILL: %+v, %v", e, err)
	}
	if _, err := c.Delete(ctx, "hello"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_ = events

	// A memory limit enforced by the guest's cgroup v2: OOM kill, reported
	// in the exit status and as an event.
	events, err = c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oom := newVMSpec(t, "oom", "tail", "/dev/zero")
	small := int64(24 << 20)
	oom.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &small}
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "oom", Spec: oom,
		Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "oom"); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "oom", ""); err != nil || !e.OOMKilled || e.Signal != syscall.SIGKILL {
		t.Errorf("OOM container exit %+v, %v; want OOM-killed\n%s", e, err, vm.console())
	}
	sawOOM := false
	deadline := time.After(60 * time.Second)
	for !sawOOM {
		select {
		case ev := <-events:
			sawOOM = ev.Kind == isolation.EventOOM && ev.ID == "oom"
		case <-deadline:
			t.Fatal("no oom event")
		}
	}
	if _, err := c.Delete(ctx, "oom"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.State(ctx, "oom"); !errdefs.IsNotFound(err) {
		t.Errorf("State after Delete = %v", err)
	}

	// cgroupctl's conformance suite on the guest's cgroup v2, from a
	// privileged container that sees the guest's whole hierarchy.
	conf := newVMSpec(t, "cgconf", "/cgtest", "-test.run", "^TestV2Conformance$", "-test.v", "-test.timeout", "240s")
	conf.Process.Capabilities = &specs.LinuxCapabilities{Bounding: spec.AllCapabilities(), Effective: spec.AllCapabilities(), Permitted: spec.AllCapabilities()}
	conf.Linux.Seccomp = nil
	conf.Linux.Resources.Devices = nil
	conf.Linux.Namespaces = slices.DeleteFunc(conf.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace })
	conf.Mounts = slices.DeleteFunc(conf.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys/fs/cgroup" })
	conf.Linux.MaskedPaths, conf.Linux.ReadonlyPaths = nil, nil
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "cgconf", Spec: conf,
		Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4"},
		Shares: []vmagent.Share{{Type: vmagent.ShareBind, Source: "/sys/fs/cgroup", Destination: "/sys/fs/cgroup"}}}); err != nil {
		t.Fatalf("create the conformance container: %v", err)
	}
	var confOut syncBuf
	confDone := make(chan error, 1)
	go func() { confDone <- c.Attach(ctx, "cgconf", "", isolation.Streams{Stdout: &confOut, Stderr: &confOut}) }()
	if _, err := c.Start(ctx, "cgconf"); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, "cgconf", ""); err != nil || e.Code != 0 {
		<-confDone
		t.Errorf("cgroupctl's TestV2Conformance in the guest: exit %+v, %v\n%s", e, err, confOut.String())
	} else {
		<-confDone
		if !strings.Contains(confOut.String(), "--- PASS: TestV2Conformance") || strings.Contains(confOut.String(), "--- SKIP") {
			t.Errorf("TestV2Conformance did not run the full suite in the guest:\n%s", confOut.String())
		}
		t.Logf("cgroupctl conformance in the guest:\n%s", lastLines(confOut.String(), 6))
	}
	if _, err := c.Delete(ctx, "cgconf"); err != nil {
		t.Fatal(err)
	}

	// Clean power-off: qemu exits by itself.
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vm.exited:
		if vm.waitErr != nil {
			t.Errorf("VM ended with %v", vm.waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("qemu still running 60s after Shutdown\n%s", vm.console())
	}
	t.Logf("container output:\n%s\nconsole:\n%s", got, vm.console())
	if !strings.Contains(vm.console(), "reboot: Power down") {
		t.Errorf("no clean power-down on the console:\n%s", vm.console())
	}
}

func newVMSpec(t *testing.T, id string, args ...string) *specs.Spec {
	t.Helper()
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: args}, lifecycle.Config{}, spec.Extra{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testVM struct {
	t       *testing.T
	d       hypervisor.Driver
	cfg     hypervisor.Config
	m       hypervisor.Machine
	logPath string
	exited  chan struct{}
	waitErr error
}

func (vm *testVM) console() string {
	b, _ := os.ReadFile(vm.logPath)
	return string(b)
}

// connect dials the agent's port (retrying until the agent answers) and
// returns a client.
func (vm *testVM) connect(ctx context.Context) *vmagent.Client {
	vm.t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := vm.m.DialAgent(dctx)
		cancel()
		if err == nil {
			c, err2 := vmagent.NewClient(conn)
			if err2 != nil {
				vm.t.Fatal(err2)
			}
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = c.Info(ictx)
			cancel()
			if err == nil {
				return c
			}
			c.Close()
		}
		select {
		case <-vm.exited:
			vm.t.Fatalf("the VM ended before the agent answered (%v)\n%s", vm.waitErr, vm.console())
		default:
		}
		if time.Now().After(deadline) {
			vm.t.Fatalf("the agent did not answer in 120s: %v\n%s", err, vm.console())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// guestBinaries builds the agent (static, CGO_ENABLED=0) and the static
// sandbox init as make build does.
func guestBinaries(t *testing.T, dir string) (agentBin, sandboxInit string) {
	t.Helper()
	agentBin, sandboxInit = filepath.Join(dir, "berth-vm-agent"), filepath.Join(dir, "berth-sandbox-init")
	for _, c := range []*exec.Cmd{
		exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", agentBin, "github.com/berth-dev/berth/plugins/isolation-vm/guest"),
		exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`,
			"-o", sandboxInit, "github.com/berth-dev/berth/cmd/berth-sandbox-init"),
	} {
		if c.Args[len(c.Args)-1] == "github.com/berth-dev/berth/plugins/isolation-vm/guest" {
			c.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c.Args, err, out)
		}
	}
	return agentBin, sandboxInit
}

type vmOptions struct {
	machine string // "q35" or "microvm"
	disks   []hypervisor.Disk
	shares  []hypervisor.Share
	// need are modules without which the test cannot run (it skips).
	need []string
	// memoryMiB defaults to 512.
	memoryMiB int64
}

// bootVM boots the agent as PID 1 through the qemu driver, with the
// cached Debian kernel and an initramfs holding the modules the machine
// and ext4 need.
func bootVM(t *testing.T, o vmOptions) *testVM {
	t.Helper()
	sandboxtest.RequireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 missing (scripts/install-deps.sh installs it)")
	}
	k := vmkerneltest.Kernel(t)
	// TCG explicitly: this CI host has a /dev/kvm on which qemu -cpu max
	// aborts (failed to set MSR 0x10a), and TCG is what it measures.
	d, err := qemu.New(qemu.Options{Machine: o.machine, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The machine's modules the kernel store has, and ext4 for the rootfs.
	// (The store may lack some of the platform's: the ACPI power button's
	// button and evdev, which TestVMPowerButton needs.)
	var want []string
	for _, name := range append(d.Platform().Modules, "ext4") {
		if _, err := k.ModulesFor(name); err != nil {
			t.Logf("not in the kernel store, left out: %v", err)
			if slices.Contains(o.need, name) {
				t.Skipf("the kernel store lacks module %s, which this test needs: %v", name, err)
			}
			continue
		}
		want = append(want, name)
	}
	mods, err := k.ModulesFor(want...)
	if err != nil {
		t.Fatal(err)
	}
	agentBin, sandboxInit := guestBinaries(t, dir)
	initrd := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := vmkernel.BuildInitramfs(f, vmkernel.InitramfsSpec{Agent: agentBin, SandboxInit: sandboxInit, Modules: mods}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	vm := &testVM{t: t, d: d, logPath: filepath.Join(dir, "console.log")}
	mem := o.memoryMiB
	if mem == 0 {
		mem = 512
	}
	cfg := hypervisor.Config{Kernel: k.Image(), Initrd: initrd, CPUs: 2, MemoryBytes: mem << 20,
		Cmdline: []string{"panic=-1", "quiet", "cryptomgr.notests", "no_timer_check", "i8042.noaux", "i8042.nokbd",
			"i8042.nopnp", "8250.nr_uarts=1", "mitigations=off", "random.trust_cpu=on"},
		Disks: o.disks, Shares: o.shares, ConsoleLog: vm.logPath}
	vm.cfg = cfg
	vm.run("")
	return vm
}

// run starts the VM (from the checkpoint in restoreDir when set) in a new
// run dir; t's cleanup kills it.
func (vm *testVM) run(restoreDir string) {
	t := vm.t
	t.Helper()
	runDir, err := os.MkdirTemp("", "vmag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	vm.cfg.RunDir = runDir
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var m hypervisor.Machine
	if restoreDir != "" {
		m, err = vm.d.Restore(ctx, vm.cfg, restoreDir)
	} else {
		m, err = vm.d.Start(ctx, vm.cfg)
	}
	if err != nil {
		t.Fatalf("start the VM (restore %q): %v\n%s", restoreDir, err, vm.console())
	}
	exited := make(chan struct{})
	vm.m, vm.exited = m, exited
	go func() { vm.waitErr = m.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = m.Kill()
		<-exited
		if t.Failed() {
			t.Logf("console:\n%s", vm.console())
		}
		t.Logf("VM lived %v", time.Since(start).Round(time.Millisecond))
	})
}

// rootfsDisk makes an ext4 image of a busybox rootfs (mkfs.ext4 -d) with
// extra files (path in the image → host file).
func rootfsDisk(t *testing.T, extra ...[2]string) string {
	t.Helper()
	dir := t.TempDir()
	rootDir := filepath.Join(dir, "rootfs")
	if err := sandboxtest.Rootfs(rootDir); err != nil {
		t.Fatal(err)
	}
	for _, e := range extra {
		b, err := os.ReadFile(e[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootDir, e[0]), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(rootDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", rootDir, "-L", "rootfs", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return disk
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestVMPowerButton boots a microvm (virtio-mmio) and ends it the way the
// hypervisor driver does, with the ACPI power button (qemu
// system_powerdown): the agent kills its containers and powers off.
func TestVMPowerButton(t *testing.T) {
	vm := bootVM(t, vmOptions{machine: "microvm", disks: []hypervisor.Disk{{Path: rootfsDisk(t)}}, need: []string{"button", "evdev"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := vm.connect(ctx)
	defer c.Close()
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "echo", Spec: newVMSpec(t, "echo", "sh", "-c", "echo on microvm; exec sleep 600"),
		Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4"}}); err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, vm.console())
	}
	var out syncBuf
	go func() { _ = c.Attach(ctx, "echo", "", isolation.Streams{Stdout: &out}) }()
	if _, err := c.Start(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the container's output", func() bool { return out.String() == "on microvm\n" })
	if err := vm.m.Shutdown(ctx); err != nil {
		t.Fatalf("Machine.Shutdown: %v\n%s", err, vm.console())
	}
	<-vm.exited
	con := vm.console()
	for _, want := range []string{"power button pressed", "container deleted: container_id=echo", "reboot: Power down"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q:\n%s", want, con)
		}
	}
}

// TestVMRestoreReconnect checkpoints a running guest (qemu migration to a
// file), ends that VM, restores it and reconnects: the agent's channel
// comes back on the restored port and the container continues where it
// was (its counter goes on from the last value seen).
func TestVMRestoreReconnect(t *testing.T) {
	vm := bootVM(t, vmOptions{machine: "q35", disks: []hypervisor.Disk{{Path: rootfsDisk(t)}}, memoryMiB: 256})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := vm.connect(ctx)
	s := newVMSpec(t, "count", "sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done")
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "count", Spec: s,
		Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4"}}); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	var out syncBuf
	attachCtx, stopAttach := context.WithCancel(ctx)
	attached := make(chan error, 1)
	go func() { attached <- c.Attach(attachCtx, "count", "", isolation.Streams{Stdout: &out}) }()
	if _, err := c.Start(ctx, "count"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to reach 5", func() bool { return strings.Contains(out.String(), "\n5\n") })
	// Checkpoint while the host is connected and attached, as a supervisor
	// is; then that VM ends.
	dir := filepath.Join(t.TempDir(), "checkpoint")
	saveStart := time.Now()
	if err := vm.m.Save(ctx, dir); err != nil {
		t.Fatalf("Save: %v", err)
	}
	t.Logf("save took %v", time.Since(saveStart).Round(time.Millisecond))
	stopAttach()
	<-attached
	c.Close()
	lines := strings.Fields(out.String())
	last := lines[len(lines)-1]
	_ = vm.m.Kill()
	<-vm.exited

	restoreStart := time.Now()
	vm.run(dir)
	c = vm.connect(ctx)
	defer c.Close()
	t.Logf("restore to first answer took %v\n%s", time.Since(restoreStart).Round(time.Millisecond), vm.console())
	st, err := c.State(ctx, "count")
	if err != nil || st.Status != isolation.StatusRunning {
		t.Fatalf("State after restore = %+v, %v", st, err)
	}
	var after syncBuf
	go func() { _ = c.Attach(ctx, "count", "", isolation.Streams{Stdout: &after}) }()
	waitFor(t, "the counter after restore", func() bool { return len(strings.Fields(after.String())) >= 3 })
	var prev, first int
	fmt.Sscan(last, &prev)
	for _, f := range strings.Fields(after.String()) {
		var n int
		if _, err := fmt.Sscan(f, &n); err == nil {
			first = n
			break
		}
	}
	if first <= prev {
		t.Errorf("after restore the counter printed %d first; before the checkpoint it had reached %d", first, prev)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vm.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the restored VM did not power off")
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
