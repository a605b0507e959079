package vmtemplate_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/qemu"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// TestInputsInvalidate: changing the kernel, the initramfs, the size or
// the command line or the NIC count gives another template ID, so an existing template is
// never used for other inputs; the same inputs give the same ID.
func TestInputsInvalidate(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 missing (scripts/install-deps.sh installs it)")
	}
	drv, err := qemu.New(qemu.Options{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		// A later mtime, as a rebuilt file has (the hash memo keys on it).
		now := time.Now().Add(time.Duration(len(s)) * time.Second)
		os.Chtimes(p, now, now)
	}
	write(kernel, "kernel one")
	write(initrd, "initrd one")
	cfg := hypervisor.Config{Kernel: kernel, Initrd: initrd, CPUs: 1, MemoryBytes: 256 << 20, Cmdline: []string{"quiet"},
		Disks: []hypervisor.Disk{{}}, Balloon: true}
	id := func(c hypervisor.Config) string {
		t.Helper()
		in, err := vmtemplate.InputsFor(drv, c)
		if err != nil {
			t.Fatal(err)
		}
		if in.Hypervisor == "" {
			t.Error("no hypervisor version in the inputs")
		}
		return in.ID()
	}
	base := id(cfg)
	if again := id(cfg); again != base {
		t.Fatalf("same inputs, IDs %s and %s", base, again)
	}
	seen := map[string]string{base: "base"}
	check := func(what string, c hypervisor.Config) {
		t.Helper()
		got := id(c)
		if prev, ok := seen[got]; ok {
			t.Errorf("%s: ID %s, the same as %s", what, got, prev)
		}
		seen[got] = what
	}
	write(initrd, "initrd two, rebuilt")
	check("initrd changed", cfg)
	write(kernel, "kernel two, another release")
	check("kernel changed", cfg)
	c := cfg
	c.MemoryBytes = 512 << 20
	check("memory", c)
	c = cfg
	c.CPUs = 2
	check("cpus", c)
	c = cfg
	c.Cmdline = []string{"quiet", "loglevel=7"}
	check("cmdline", c)
	c = cfg
	c.NICs = []hypervisor.NIC{{TAP: "tbx", MAC: "02:be:00:00:00:01"}}
	check("a NIC", c)

	// A store with a template for other inputs has none for these.
	store := &vmtemplate.Store{Dir: filepath.Join(dir, "templates")}
	if err := os.MkdirAll(filepath.Join(store.Dir, base), 0o700); err != nil {
		t.Fatal(err)
	}
	in, _ := vmtemplate.InputsFor(drv, cfg)
	if _, err := store.Get(in); !errdefs.IsNotFound(err) {
		t.Errorf("Get after the inputs changed = %v, want NotFound", err)
	}
	// The old dir (no manifest: half-written) is reported, and pruned.
	if _, err := store.Load(base); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Load of a dir without manifest = %v, want InvalidArgument", err)
	}
	if removed, err := store.Prune(); err != nil || len(removed) != 1 {
		t.Errorf("Prune = %v, %v", removed, err)
	}
	// Shares cannot be served by a template.
	c = cfg
	c.Shares = []hypervisor.Share{{Tag: "x", Path: dir}}
	if _, err := vmtemplate.InputsFor(drv, c); !errdefs.IsNotImplemented(err) {
		t.Errorf("InputsFor with a share = %v, want NotImplemented", err)
	}
	// A socket NIC (user-mode network) gets a socket-placeholder template:
	// another ID than the TAP one; the TAP inputs carry no nic_kind (their
	// IDs did not change).
	c = cfg
	c.NICs = []hypervisor.NIC{{TAP: "tbx", MAC: "02:be:00:00:00:01"}}
	tapIn, err := vmtemplate.InputsFor(drv, c)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(tapIn); strings.Contains(string(b), "nic_kind") {
		t.Errorf("TAP inputs carry nic_kind: %s", b)
	}
	c.NICs = []hypervisor.NIC{{Socket: filepath.Join(dir, "net.sock"), MAC: "02:be:00:00:00:01"}}
	sockIn, err := vmtemplate.InputsFor(drv, c)
	if err != nil || sockIn.NICKind != vmtemplate.NICSocket {
		t.Fatalf("InputsFor with a socket NIC = %+v, %v; want NICKind %q", sockIn, err, vmtemplate.NICSocket)
	}
	if sockIn.ID() == tapIn.ID() {
		t.Errorf("socket and TAP NIC templates share ID %s", sockIn.ID())
	}
	// Mixed kinds cannot be served.
	c.NICs = append(c.NICs, hypervisor.NIC{TAP: "tby", MAC: "02:be:00:00:00:02"})
	if _, err := vmtemplate.InputsFor(drv, c); !errdefs.IsNotImplemented(err) {
		t.Errorf("InputsFor with a socket and a TAP NIC = %v, want NotImplemented", err)
	}
}
