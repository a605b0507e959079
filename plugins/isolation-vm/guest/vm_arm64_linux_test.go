//go:build linux

package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/qemu"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/deb"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
	"github.com/berth-dev/berth/sdk/isolation"
)

// TestVMGuestARM64 is the macOS (Virtualization.framework, Apple silicon)
// guest proven on this x86_64 host: Debian's cloud-arm64 kernel Image, the
// arm64 agent as PID 1 and the cross-built arm64 berth-sandbox-init (cgo,
// static libseccomp) boot under qemu-system-aarch64 -M virt (TCG), and a
// container of an arm64 busybox rootfs (Debian's busybox-static:arm64, on
// an ext4 virtio-blk disk) runs under the default seccomp profile: its
// output, its exit code, then a clean power-off.
//
// One arm64 boot; TCG emulating arm64 on x86_64 is slower than an x86 guest
// (the boot time is logged).
func TestVMGuestARM64(t *testing.T) {
	sandboxtest.RequireRoot(t)
	if runtime.GOARCH != "amd64" {
		t.Skipf("cross-architecture test for an amd64 host (this is %s)", runtime.GOARCH)
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Skip("qemu-system-aarch64 missing (scripts/install-deps.sh installs qemu-system-arm)")
	}
	if _, err := exec.LookPath("aarch64-linux-gnu-gcc"); err != nil {
		t.Skip("aarch64-linux-gnu-gcc missing: the arm64 berth-sandbox-init cannot be built (scripts/install-deps.sh installs it)")
	}
	if _, err := os.Stat("/usr/lib/aarch64-linux-gnu/libseccomp.a"); err != nil {
		t.Skip("libseccomp-dev:arm64 missing (scripts/install-deps.sh installs it)")
	}
	busyboxDeb := arm64BusyboxDeb(t)
	k := vmkerneltest.KernelArch(t, "arm64")
	d, err := qemu.New(qemu.Options{Arch: "arm64", Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	if p := d.Platform(); p.Name != "qemu-virt" || p.Arch != "arm64" || p.Accel != "tcg" {
		t.Fatalf("platform %+v: want qemu-virt, arm64, tcg", p)
	}
	dir := t.TempDir()

	// The guest binaries, as make build makes them.
	agentBin, sandboxInit := filepath.Join(dir, "berth-vm-agent-arm64"), filepath.Join(dir, "berth-sandbox-init-arm64")
	for _, b := range []struct {
		env  []string
		args []string
	}{
		{[]string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"},
			[]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", agentBin, "github.com/berth-dev/berth/plugins/isolation-vm/guest"}},
		{[]string{"CGO_ENABLED=1", "GOOS=linux", "GOARCH=arm64", "CC=aarch64-linux-gnu-gcc", "PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig"},
			[]string{"build", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`,
				"-o", sandboxInit, "github.com/berth-dev/berth/cmd/berth-sandbox-init"}},
	} {
		c := exec.Command("go", b.args...)
		c.Env = append(os.Environ(), b.env...)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(b.args, " "), err, out)
		}
	}

	// The initramfs: the machine's modules the store keeps and those a vz
	// guest loads (vsock, virtiofs; ext4 is built into cloud-arm64), the
	// arm64 binaries (checked by Arch). This is the only arm64 boot in the
	// tests: it also proves every VZModules module loads.
	var want []string
	for _, name := range append(slices.Clone(d.Platform().Modules), vmkernel.VZModules...) {
		if _, err := k.ModulesFor(name); err != nil {
			t.Logf("not in the kernel store, left out: %v", err)
			continue
		}
		want = append(want, name)
	}
	mods, err := k.ModulesFor(want...)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := vmkernel.BuildInitramfs(f, vmkernel.InitramfsSpec{Agent: agentBin, SandboxInit: sandboxInit, Modules: mods, Arch: "arm64"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	vm := &testVM{t: t, d: d, logPath: filepath.Join(dir, "console.log")}
	vm.cfg = hypervisor.Config{Kernel: k.Image(), Initrd: initrd, CPUs: 2, MemoryBytes: 512 << 20,
		Cmdline: []string{"panic=-1", "quiet", "cryptomgr.notests", "no_timer_check", "mitigations=off", "random.trust_cpu=on"},
		Disks:   []hypervisor.Disk{{Path: arm64RootfsDisk(t, busyboxDeb)}}, ConsoleLog: vm.logPath}
	start := time.Now()
	vm.run("")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := vm.connect(ctx)
	defer c.Close()
	boot := time.Since(start)
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("arm64 guest: qemu start to agent answer %v; %+v", boot.Round(time.Millisecond), info)
	if !info.PID1 || !strings.HasSuffix(info.KernelRelease, "-cloud-arm64") || info.CgroupMode != "v2" {
		t.Errorf("Info = %+v: want PID 1 on the cloud-arm64 kernel with cgroup v2", info)
	}
	for _, m := range mods {
		if !slices.Contains(info.Modules, m.Name) {
			t.Errorf("module %s did not load (loaded: %v)", m.Name, info.Modules)
		}
	}
	for _, name := range []string{"virtio_pci", "vmw_vsock_virtio_transport", "virtiofs", "virtio_blk"} {
		if !slices.Contains(info.Modules, name) {
			t.Errorf("%s is not among the loaded modules %v", name, info.Modules)
		}
	}

	// A container: arm64 busybox under the default seccomp profile (the
	// filter compiled in the guest by the arm64 berth-sandbox-init). The
	// profile's argument filters hold: personality(PER_LINUX) is allowed,
	// personality(ADDR_NO_RANDOMIZE) (linux64 -R) is refused.
	s := newVMSpec(t, "arm", "sh", "-c", "echo hello from arm64; uname -m; grep '^Seccomp:' /proc/self/status; "+
		"linux64 true; echo personality0=$?; linux64 -R true; echo personality_norandom=$?; exit 3")
	if s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) == 0 {
		t.Fatal("the spec has no seccomp profile to prove")
	}
	if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: "arm", Spec: s,
		Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4", Options: []string{"rw", "format=raw"}}}); err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, vm.console())
	}
	var out syncBuf
	attached := make(chan error, 1)
	go func() { attached <- c.Attach(ctx, "arm", "", isolation.Streams{Stdout: &out, Stderr: &out}) }()
	if _, err := c.Start(ctx, "arm"); err != nil {
		t.Fatalf("Start: %v\n%s", err, vm.console())
	}
	e, err := c.Wait(ctx, "arm", "")
	if err != nil {
		t.Fatalf("Wait: %v\n%s", err, vm.console())
	}
	if err := <-attached; err != nil {
		t.Errorf("Attach: %v", err)
	}
	got := out.String()
	t.Logf("container output:\n%s", got)
	if e.Code != 3 || e.Signal != 0 {
		t.Errorf("exit %+v, want code 3", e)
	}
	for _, w := range []string{"hello from arm64\n", "aarch64\n", "Seccomp:\t2\n",
		"personality0=0\n", "personality_norandom=1\n", "Operation not permitted"} {
		if !strings.Contains(got, w) {
			t.Errorf("container output %q lacks %q", got, w)
		}
	}
	if _, err := c.Delete(ctx, "arm"); err != nil {
		t.Errorf("Delete: %v", err)
	}

	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vm.exited:
		if vm.waitErr != nil {
			t.Errorf("VM ended with %v", vm.waitErr)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("qemu still running 90s after Shutdown\n%s", vm.console())
	}
	if !strings.Contains(vm.console(), "reboot: Power down") {
		t.Errorf("no clean power-down on the console:\n%s", lastLines(vm.console(), 30))
	}
	t.Logf("qemu start to power-off %v", time.Since(start).Round(time.Millisecond))
}

// arm64BusyboxDeb is Debian's busybox-static:arm64 package, cached by
// scripts/install-deps.sh in /var/cache/berth/debs.
func arm64BusyboxDeb(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob("/var/cache/berth/debs/busybox-static_*_arm64.deb")
	if len(m) == 0 {
		t.Skip("no busybox-static arm64 .deb in /var/cache/berth/debs (scripts/install-deps.sh downloads it)")
	}
	return m[len(m)-1]
}

// arm64RootfsDisk is rootfsDisk's busybox tree (the host's applet links)
// with the arm64 busybox from debPath in place of the host's: every
// executable in it is arm64.
func arm64RootfsDisk(t *testing.T, debPath string) string {
	t.Helper()
	dir := t.TempDir()
	rootDir := filepath.Join(dir, "rootfs")
	if err := sandboxtest.Rootfs(rootDir); err != nil {
		t.Fatal(err)
	}
	bb := filepath.Join(rootDir, "bin", "busybox")
	df, err := os.Open(debPath)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	found := false
	ctl, err := deb.Read(df, func(e deb.Entry, r io.Reader) error {
		if e.Name != "bin/busybox" {
			return nil
		}
		found = true
		f, err := os.OpenFile(bb, os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return deb.ErrStop
	})
	if err != nil || !found {
		t.Fatalf("extract bin/busybox from %s: %v (found %v)", debPath, err, found)
	}
	if ctl.Architecture != "arm64" {
		t.Fatalf("%s is for %s, want arm64", debPath, ctl.Architecture)
	}
	if err := vmkernel.CheckELFArch(bb, "arm64"); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", rootDir, "-L", "rootfs", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return disk
}
