// Package vmkerneltest gives tests a real Debian guest kernel from a
// machine-wide cache, so that tests booting VMs share one installed kernel.
//
// The cache store is CacheDir (/var/cache/berth/kernels); packages are kept
// in DebDir (/var/cache/berth/debs, filled by scripts/install-deps.sh, or
// here with apt-get download when missing). Installing takes ~15 s once per
// machine; later calls only read the store. Concurrent test processes
// serialize on an flock, so one of them installs and the others wait.
package vmkerneltest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/vmkernel"
)

const (
	// CacheDir is the machine-wide kernel store tests share.
	CacheDir = "/var/cache/berth/kernels"
	// DebDir holds cached kernel packages.
	DebDir = "/var/cache/berth/debs"
)

// Kernel returns the cached amd64 kernel, installing it when missing. It
// skips the test (with the reason) when the kernel is not installed and
// cannot be: not root, or no cached .deb and no apt-get.
func Kernel(t testing.TB) *vmkernel.Kernel {
	t.Helper()
	return KernelArch(t, "amd64")
}

// KernelArch is Kernel for arch ("amd64" or "arm64"; arm64 is the
// cloud-arm64 flavour Virtualization.framework boots).
func KernelArch(t testing.TB, arch string) *vmkernel.Kernel {
	t.Helper()
	store := &vmkernel.Store{Dir: CacheDir}
	if k, err := store.Get("", arch); err == nil && k.Format == vmkernel.KernelFormat {
		return k
	}
	if os.Geteuid() != 0 {
		t.Skipf("vmkerneltest: no %s kernel in %s and installing one needs root", arch, CacheDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	unlock := lockFile(t, filepath.Join(filepath.Dir(CacheDir), "vmkerneltest.lock"))
	defer unlock()
	if k, err := store.Get("", arch); err == nil && k.Format == vmkernel.KernelFormat { // installed while we waited
		return k
	}
	debPath := Deb(t, arch)
	start := time.Now()
	k, err := install(ctx, t, store, arch, debPath)
	if err != nil {
		t.Fatalf("vmkerneltest: install %s: %v", debPath, err)
	}
	t.Logf("vmkerneltest: installed kernel %s (%s) in %s in %v", k.Release, k.Arch, CacheDir, time.Since(start).Round(time.Millisecond))
	return k
}

// install installs debPath into store. It runs the installer command
// with `go run` when the go tool is there (a -race test binary decodes xz
// 20x slower), else in this process.
func install(ctx context.Context, t testing.TB, store *vmkernel.Store, arch, debPath string) (*vmkernel.Kernel, error) {
	if goTool, err := exec.LookPath("go"); err == nil {
		cmd := exec.CommandContext(ctx, goTool, "run", "github.com/berth-dev/berth/internal/vmkernel/vmkerneltest/installer",
			"-store", store.Dir, "-deb", debPath, "-arch", arch)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err == nil {
			k, err := store.Get("", arch)
			if err == nil && k.Format != vmkernel.KernelFormat {
				return nil, fmt.Errorf("the installer wrote format %d, want %d", k.Format, vmkernel.KernelFormat)
			}
			return k, err
		}
		t.Logf("vmkerneltest: installer command failed (%v): %s; installing in process", err, out)
	}
	return store.Install(ctx, vmkernel.InstallOptions{Arch: arch, Deb: debPath})
}

// Initramfs writes the initramfs for spec into a temp dir of the test and
// returns its path.
func Initramfs(t testing.TB, spec vmkernel.InitramfsSpec) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "initrd.cpio")
	if _, err := vmkernel.WriteInitramfs(p, spec); err != nil {
		t.Fatal(err)
	}
	return p
}

// Deb returns the path of a cached kernel package for arch, fetching it
// with apt-get download into DebDir when none is cached. It skips when it
// cannot (no apt-get, not root).
func Deb(t testing.TB, arch string) string {
	t.Helper()
	if p := cachedDeb(arch); p != "" {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skipf("vmkerneltest: no %s kernel package in %s and fetching one needs root", arch, DebDir)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skipf("vmkerneltest: no %s kernel package in %s and no apt-get to fetch one", arch, DebDir)
	}
	unlock := lockFile(t, filepath.Join(filepath.Dir(DebDir), "vmkerneltest-deb.lock"))
	defer unlock()
	if p := cachedDeb(arch); p != "" {
		return p
	}
	if err := os.MkdirAll(DebDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pkg := "linux-image-amd64"
	if arch == "arm64" {
		pkg = "linux-image-cloud-arm64"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := vmkernel.DownloadPackage(ctx, pkg, arch, DebDir, func(msg string) { t.Log("vmkerneltest: " + msg) })
	if err != nil {
		if arch != "amd64" {
			t.Skipf("vmkerneltest: cannot fetch %s:%s (run scripts/install-deps.sh): %v", pkg, arch, err)
		}
		t.Fatalf("vmkerneltest: %v", err)
	}
	return p
}

// cachedDeb picks the newest cached versioned kernel package for arch
// (cloud-arm64 for arm64), or "".
func cachedDeb(arch string) string {
	pattern := "linux-image-[0-9]*-amd64_*_amd64.deb"
	if arch == "arm64" {
		pattern = "linux-image-[0-9]*-cloud-arm64_*_arm64.deb"
	}
	matches, _ := filepath.Glob(filepath.Join(DebDir, pattern))
	matches = slices.DeleteFunc(matches, func(p string) bool {
		return strings.Contains(filepath.Base(p), "-dbg") || strings.Contains(filepath.Base(p), "-unsigned")
	})
	if len(matches) == 0 {
		return ""
	}
	slices.Sort(matches)
	return matches[len(matches)-1]
}

func lockFile(t testing.TB, p string) func() {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }
}
