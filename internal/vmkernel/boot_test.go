//go:build linux

package vmkernel_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

// bootInit is a static PID 1 for the boot test: it loads /modules/*.ko in
// lexical order with finit_module (EEXIST is fine), checks /proc/modules
// lists each of them, prints one line on the console and powers off.
const bootInit = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	_ = syscall.Mount("proc", "/proc", "proc", 0, "")
	mods, _ := filepath.Glob("/modules/*.ko")
	start := time.Now()
	var failed []string
	for _, m := range mods {
		f, err := os.Open(m)
		if err != nil {
			failed = append(failed, m+": "+err.Error())
			continue
		}
		_, _, e := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafePtr("")), 0)
		f.Close()
		if e != 0 && e != syscall.EEXIST {
			failed = append(failed, filepath.Base(m)+": "+e.Error())
		}
	}
	loadTime := time.Since(start)
	loaded, _ := os.ReadFile("/proc/modules")
	var names []string
	for _, l := range strings.Split(string(loaded), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	up, _ := os.ReadFile("/proc/uptime")
	fmt.Printf("BERTH-BOOT files=%d loaded=%s failed=%q load_ms=%d uptime=%s\n", len(mods), strings.Join(names, ","), failed,
		loadTime.Milliseconds(), strings.Fields(string(up)+" ?")[0])
	// tcdrain: let the UART send the line before the power goes.
	syscall.Syscall(syscall.SYS_IOCTL, os.Stdout.Fd(), 0x5409 /* TCSBRK */, 1)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
`

const bootInitUnsafe = `package main

import "unsafe"

func unsafePtr(s string) unsafe.Pointer {
	b := append([]byte(s), 0)
	return unsafe.Pointer(&b[0])
}
`

// finitModule is the finit_module syscall number per GOARCH (the syscall
// package has no constant for it).
var finitModule = map[string]int{"amd64": 313, "arm64": 273}

// buildBootInit builds bootInit as a static linux binary for goarch.
func buildBootInit(t *testing.T, goarch string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{"main.go": bootInit, "unsafe.go": bootInitUnsafe,
		"nr.go":  fmt.Sprintf("package main\n\nconst sysFinitModule = %d\n", finitModule[goarch]),
		"go.mod": "module bootinit\n\ngo 1.22\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build boot init: %v\n%s", err, b)
	}
	return out
}

// TestBootQemuPVH boots the store's vmlinux through PVH under qemu (TCG)
// with an initramfs from WriteInitramfs holding a tiny static init and the
// qemu module set: the kernel must reach the init, every module must load,
// and the VM must power off. Two boots: q35 with the signed modules, and
// microvm (virtio-mmio, tsc_early_khz) with signatures stripped.
func TestBootQemuPVH(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool to build the test init")
	}
	k := vmkerneltest.Kernel(t)
	mods, err := k.ModulesFor(vmkernel.QemuModules...)
	if err != nil {
		t.Fatal(err)
	}
	agent := buildBootInit(t, "amd64")
	t.Run("q35-signed", func(t *testing.T) {
		initrd := vmkerneltest.Initramfs(t, vmkernel.InitramfsSpec{Agent: agent, Modules: mods})
		bootAndCheck(t, qemu, []string{"-machine", "q35,accel=tcg", "-cpu", "max"}, k.Image(), initrd, "console=ttyS0 8250.nr_uarts=1", mods)
	})
	t.Run("microvm-stripped", func(t *testing.T) {
		khz := hostTSCkHz()
		if khz == 0 {
			t.Skip("no cpu MHz in /proc/cpuinfo for tsc_early_khz (microvm needs it under TCG)")
		}
		initrd := vmkerneltest.Initramfs(t, vmkernel.InitramfsSpec{Agent: agent, Modules: mods, StripModuleSignatures: true})
		bootAndCheck(t, qemu, []string{"-machine", "microvm,accel=tcg", "-cpu", "max"}, k.Image(), initrd,
			fmt.Sprintf("console=ttyS0 8250.nr_uarts=1 tsc_early_khz=%d", khz), mods)
	})
}

// hostTSCkHz reads the host's TSC frequency from /proc/cpuinfo (0 if absent).
func hostTSCkHz() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			var mhz float64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f", &mhz); err == nil {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}

func bootAndCheck(t *testing.T, qemu string, machine []string, kernel, initrd, extraCmdline string, mods []vmkernel.Module) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	args := append(machine, "-smp", "1", "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "panic=-1 quiet cryptomgr.notests no_timer_check random.trust_cpu=on "+extraCmdline)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("qemu did not power off within 120 s; console:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("qemu: %v; console:\n%s", err, out.String())
	}
	var line string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		// The line may follow firmware output without a newline.
		if i := strings.Index(sc.Text(), "BERTH-BOOT "); i >= 0 {
			line = strings.TrimSpace(sc.Text()[i:])
		}
	}
	if line == "" {
		t.Fatalf("the init never reported; console:\n%s", out.String())
	}
	t.Logf("qemu start to power-off in %v: %s", elapsed.Round(time.Millisecond), line)
	if !strings.Contains(line, `failed=[]`) {
		t.Fatalf("module loads failed: %s", line)
	}
	if !strings.Contains(line, fmt.Sprintf("files=%d ", len(mods))) {
		t.Fatalf("init saw a different number of modules than the %d written: %s", len(mods), line)
	}
	_, loadedList, _ := strings.Cut(line, "loaded=")
	loadedList, _, _ = strings.Cut(loadedList, " ")
	loaded := map[string]bool{}
	for _, n := range strings.Split(loadedList, ",") {
		loaded[n] = true
	}
	for _, m := range mods {
		if !loaded[m.Name] {
			t.Errorf("module %s is not in the guest's /proc/modules", m.Name)
		}
	}
}
