package qemu

// Boot assets for the VM tests: the machine-wide cached Debian kernel
// (internal/vmkernel/vmkerneltest) and, built once per test binary, an
// initramfs with the static test guest as /init and the modules of both
// machine types.

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

// testModules are loaded by the test guest (dependencies are resolved by
// the kernel store). button and evdev let it see the ACPI power button.
var testModules = []string{"virtio_mmio", "virtio_pci", "virtio_console", "virtio_blk", "virtio_balloon", "button", "evdev"}

type assets struct {
	kernel, initrd string
	powerButton    bool // the guest has button+evdev: Shutdown can be graceful
}

var (
	assetsOnce sync.Once
	assetsVal  assets
	assetsErr  error
	assetsDir  string
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		startHelper() // never returns
	}
	code := m.Run()
	if assetsDir != "" {
		os.RemoveAll(assetsDir)
	}
	os.Exit(code)
}

// bootAssets returns the kernel and initramfs, skipping the test when the
// host cannot run VMs (not root, no qemu, no kernel).
func bootAssets(t *testing.T) assets {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("VM tests run as root (qemu, /dev/kvm, the kernel cache)")
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("the VM tests boot the Debian amd64 kernel")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/install-deps.sh)")
	}
	k := vmkerneltest.Kernel(t)
	assetsOnce.Do(func() {
		assetsDir, assetsErr = os.MkdirTemp("", "berth-hv-assets-")
		if assetsErr == nil {
			assetsVal, assetsErr = buildAssets(k, assetsDir)
		}
	})
	if assetsErr != nil {
		t.Fatalf("boot assets: %v", assetsErr)
	}
	return assetsVal
}

func buildAssets(k *vmkernel.Kernel, dir string) (assets, error) {
	a := assets{kernel: k.Image(), initrd: filepath.Join(dir, "initrd.cpio"), powerButton: true}
	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", initBin, "./internal/testguest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return a, &buildError{err, out}
	}
	var names []string
	for _, n := range testModules {
		if slices.Contains(k.Modules, n) {
			names = append(names, n)
		} else if n == "button" || n == "evdev" {
			a.powerButton = false // the kernel store does not keep it
		}
	}
	mods, err := k.ModulesFor(names...)
	if err != nil {
		return a, err
	}
	_, err = vmkernel.WriteInitramfs(a.initrd, vmkernel.InitramfsSpec{Agent: initBin, Modules: mods})
	return a, err
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "build test guest: " + e.err.Error() + ": " + string(e.out)
}
