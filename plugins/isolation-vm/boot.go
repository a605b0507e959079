//go:build linux || darwin

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// tuningArgs are kernel arguments measured to shorten a boot under TCG
// (research file, issue 10: 2.17 → 1.65 s on microvm) with nothing a
// container needs lost: no self-tests of the crypto API, no timer check,
// no PS/2 probing, one UART, no speculative-execution mitigations inside a
// single-tenant guest, and the CPU's RNG trusted for early entropy.
var tuningArgs = []string{"panic=-1", "quiet", "cryptomgr.notests", "no_timer_check", "i8042.noaux", "i8042.nokbd",
	"i8042.nopnp", "8250.nr_uarts=1", "mitigations=off", "random.trust_cpu=on"}

// requiredModules are the modules no container can run without (beyond
// the machine's bus, which the driver names first): the agent's port and
// the rootfs disk with its filesystem. The rest of the driver's list
// (balloon, NIC, 9p, ACPI button) is loaded when the kernel has it.
var requiredModules = []string{"virtio_console", "virtio_blk", "ext4"}

// extraModules are wanted besides the driver's: the rootfs filesystem
// (with crc32c, its soft dependency) and overlay.
var extraModules = []string{"ext4", "crc32c_generic", "overlay"}

// resolveDefaults turns the settings into boot assets and default sizes:
// the kernel (a store release, a path, or the store's default), and the
// initramfs (the override, or one built from the agent, the sandbox init
// and the kernel's modules, reused while none of them changes).
func resolveDefaults(ctx context.Context, log hclog.Logger, s settings, stateDir string) (vmDefaults, error) {
	d, err := s.decodeSizes()
	if err != nil {
		return d, err
	}
	drv, err := newDriver(bootConfig{Machine: d.Machine, Accel: d.Accel}, log)
	if err != nil {
		return d, fmt.Errorf("isolation vm: %w", err)
	}
	plat := drv.Platform()
	d.Cmdline = append(slices.Clone(tuningArgs), derefs(s.KernelArgs)...)

	// The kernel.
	var kernel *vmkernel.Kernel
	switch k := deref(s.Kernel); {
	case strings.ContainsRune(k, '/'):
		fi, err := os.Stat(k)
		if err != nil || !fi.Mode().IsRegular() {
			return d, errdefs.InvalidArgument("isolation vm: kernel = %q: not a kernel file (%v)", k, err)
		}
		d.Kernel = k
		// A kernel of the store given by path brings its modules.
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(k), "kernel.json")); err == nil {
			kernel = &vmkernel.Kernel{}
			if err := json.Unmarshal(b, kernel); err != nil {
				return d, errdefs.InvalidArgument("isolation vm: kernel = %q: its kernel.json: %v", k, err)
			}
			kernel.Dir = filepath.Dir(k)
		}
	default:
		store := vmkernel.Store{Dir: vmkernel.DefaultDir(coreStateDir(stateDir)), Log: log}
		kernel, err = store.Get(k, plat.Arch)
		if err != nil {
			return d, fmt.Errorf("isolation vm: kernel: %w", err)
		}
		d.Kernel = kernel.Image()
	}

	// The initramfs.
	if p := deref(s.Initrd); p != "" {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return d, errdefs.InvalidArgument("isolation vm: initrd = %q: not a file (%v)", p, err)
		}
		d.Initrd = p
		return d, nil
	}
	if kernel == nil {
		return d, errdefs.InvalidArgument("isolation vm: kernel = %q is not from the kernel store, so its modules are unknown: set initrd too, or install the kernel (berth system kernel install)", deref(s.Kernel))
	}
	// The guest's binaries: make build names the arm64 ones -arm64.
	suffix := ""
	if plat.Arch == "arm64" {
		suffix = "-arm64"
	}
	agent, err := findBinary("agent", deref(s.Agent), "berth-vm-agent"+suffix)
	if err != nil {
		return d, err
	}
	sandboxInit, err := findBinary("sandbox_init", deref(s.SandboxInit), "berth-sandbox-init"+suffix)
	if err != nil {
		return d, err
	}
	// Two initramfs: without the 9p modules (most containers: fewer
	// modules to load at boot) and with them (containers with bind
	// mounts).
	// Each also with the NIC's driver, for tasks on a network.
	for _, v := range []struct {
		shares, nic bool
		out         *string
	}{{false, false, &d.Initrd}, {true, false, &d.InitrdShares}, {false, true, &d.InitrdNet}, {true, true, &d.InitrdSharesNet}} {
		mods, err := guestModulesFor(log, kernel, plat, v.shares, v.nic)
		if err != nil {
			return d, err
		}
		*v.out, err = buildInitramfs(filepath.Join(stateDir, "initramfs"), vmkernel.InitramfsSpec{
			Agent: agent, SandboxInit: sandboxInit, Modules: mods, Arch: plat.Arch})
		if err != nil {
			return d, fmt.Errorf("isolation vm: initramfs: %w", err)
		}
	}
	_ = ctx
	return d, nil
}

// coreStateDir is the core's state dir: a plugin's is
// <state_dir>/plugins/<layer>-<name>.
func coreStateDir(pluginState string) string {
	return filepath.Dir(filepath.Dir(pluginState))
}

// shareModules serve bind mounts (9p, virtiofs); nicModules a NIC
// (bridge attachments, network.go).
var (
	shareModules = []string{"9p", "9pnet_virtio", "virtiofs"}
	nicModules   = []string{"virtio_net"}
)

// guestModules resolves the modules the guest loads, in load order: the
// machine's bus first, then the rest; a required one the kernel lacks is
// an error naming it, an optional one a warning. shares adds the modules
// of directory shares.
func guestModules(log hclog.Logger, k *vmkernel.Kernel, plat hypervisor.Platform, shares bool) ([]vmkernel.Module, error) {
	return guestModulesFor(log, k, plat, shares, false)
}

// guestModulesFor is guestModules, with the NIC's driver when nic.
func guestModulesFor(log hclog.Logger, k *vmkernel.Kernel, plat hypervisor.Platform, shares, nic bool) ([]vmkernel.Module, error) {
	var out []vmkernel.Module
	seen := map[string]bool{}
	want := slices.DeleteFunc(append(slices.Clone(plat.Modules), extraModules...), func(m string) bool {
		return (!nic && slices.Contains(nicModules, m)) || (!shares && slices.Contains(shareModules, m))
	})
	for _, name := range want {
		mods, err := k.ModulesFor(name)
		if err != nil {
			if slices.Contains(requiredModules, name) || name == plat.Modules[0] {
				return nil, fmt.Errorf("isolation vm: kernel %s: module %s, which every VM needs: %w", k.Release, name, err)
			}
			log.Warn("guest module unavailable; the feature it serves is off", "module", name, "kernel", k.Release, "error", err)
			continue
		}
		for _, m := range mods {
			if !seen[m.Name] {
				seen[m.Name] = true
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// buildInitramfs writes spec's initramfs into dir, named by the hash of
// its inputs, and returns its path; an initramfs with that hash already
// there is reused. Older ones stay: a checkpointed VM restores with the
// initramfs it booted.
func buildInitramfs(dir string, spec vmkernel.InitramfsSpec) (string, error) {
	h := sha256.New()
	add := func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\n", filepath.Base(path))
		_, err = io.Copy(h, f)
		return err
	}
	for _, p := range []string{spec.Agent, spec.SandboxInit} {
		if err := add(p); err != nil {
			return "", err
		}
	}
	for _, m := range spec.Modules {
		if err := add(m.Path); err != nil {
			return "", err
		}
	}
	path := filepath.Join(dir, hex.EncodeToString(h.Sum(nil))[:16]+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".initramfs-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	err = vmkernel.BuildInitramfs(tmp, spec)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return path, err
}

// findBinary returns the configured path of a helper binary, or looks for
// name next to the plugin binary, in its parent dir (bin/plugins/… next
// to bin/…), then in PATH.
func findBinary(setting, configured, name string) (string, error) {
	if configured != "" {
		if fi, err := os.Stat(configured); err != nil || fi.IsDir() {
			return "", errdefs.InvalidArgument("isolation vm: %s = %q: %v", setting, configured, errors.Join(err, errIfDir(fi)))
		}
		return configured, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, "..", name)} {
			if _, err := os.Stat(p); err == nil {
				return filepath.Clean(p), nil
			}
			tried = append(tried, filepath.Clean(p))
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", errdefs.NotFound("isolation vm: %s not found (tried %s and PATH); build it with make build or set %s",
		name, strings.Join(tried, ", "), setting)
}

func errIfDir(fi os.FileInfo) error {
	if fi != nil && fi.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefs(p *[]string) []string {
	if p == nil {
		return nil
	}
	return *p
}
