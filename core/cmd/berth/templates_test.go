package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmtemplate"
)

// writeTemplate lays out a template dir as vmtemplate.Store.Build leaves it
// (without booting a VM: the store's VM path is tested in
// internal/vmtemplate and plugins/isolation-vm).
func writeTemplate(t *testing.T, dir string, cpus int) string {
	t.Helper()
	in := vmtemplate.Inputs{Format: vmtemplate.FormatVersion, KernelSHA256: strings.Repeat("ab", 32), InitrdSHA256: strings.Repeat("cd", 32),
		CPUs: cpus, MemoryMiB: 64, Disks: 1, Platform: "qemu-microvm", Arch: "amd64", Accel: "tcg"}
	id := in.ID()
	tdir := filepath.Join(dir, id)
	vm := filepath.Join(tdir, vmtemplate.VMDir)
	if err := os.MkdirAll(vm, 0o700); err != nil {
		t.Fatal(err)
	}
	state := []byte("device state")
	if err := os.WriteFile(filepath.Join(vm, "state"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	ck := hypervisor.Checkpoint{Version: hypervisor.CheckpointVersion, Platform: in.Platform, Arch: in.Arch, Accel: in.Accel,
		CPUs: cpus, MemoryMiB: 64, Disks: 1, SharedRAM: true, State: "state", Saved: time.Now()}
	if err := hypervisor.WriteCheckpoint(vm, ck); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, vmtemplate.RAMFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(tdir, vmtemplate.RAMFile), 64<<20); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(state)
	mod, sample, err := vmtemplate.RAMFingerprint(filepath.Join(tdir, vmtemplate.RAMFile))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(vmtemplate.Manifest{ID: id, Inputs: in, Created: time.Now(), StateSHA256: hex.EncodeToString(sum[:]),
		RAMBytes: 64 << 20, RAMModified: mod, RAMSample: sample})
	if err := os.WriteFile(filepath.Join(tdir, vmtemplate.ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTemplatesCommands(t *testing.T) {
	store := &vmtemplate.Store{Dir: t.TempDir()}
	a, b := writeTemplate(t, store.Dir, 1), writeTemplate(t, store.Dir, 2)
	// A corrupt one is listed with the reason.
	if err := os.WriteFile(filepath.Join(store.Dir, b, vmtemplate.VMDir, "state"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := runTemplatesLs(store, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("ls:\n%s", got)
	}
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, a):
			if !strings.Contains(l, "qemu-microvm/tcg") || !strings.Contains(l, "64MiB") || !strings.HasSuffix(strings.TrimSpace(l), "ok") {
				t.Errorf("ls line of %s: %q", a, l)
			}
		case strings.HasPrefix(l, b):
			if !strings.Contains(l, "unusable") || !strings.Contains(l, "corrupt") {
				t.Errorf("ls line of the corrupt %s: %q", b, l)
			}
		default:
			t.Errorf("ls line %q", l)
		}
	}
	if err := runTemplatesRm(store, nil, false, &out); err == nil {
		t.Error("rm without IDs or --all: no error")
	}
	out.Reset()
	if err := runTemplatesRm(store, []string{a, a, "0123456789ab"}, false, &out); err != nil {
		t.Fatalf("rm (twice, and one never there): %v", err)
	}
	if _, err := os.Stat(filepath.Join(store.Dir, a)); !os.IsNotExist(err) {
		t.Errorf("%s still there after rm: %v", a, err)
	}
	if err := runTemplatesRm(store, []string{"../x"}, false, &out); err == nil {
		t.Error("rm ../x: no error")
	}
	out.Reset()
	if err := runTemplatesRm(store, nil, true, &out); err != nil || strings.TrimSpace(out.String()) != b {
		t.Fatalf("rm --all = %q, %v", out.String(), err)
	}
	if entries, _ := store.List(); len(entries) != 0 {
		t.Errorf("left after rm --all: %+v", entries)
	}
}
