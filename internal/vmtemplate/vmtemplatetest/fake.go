// Package vmtemplatetest lays out template dirs as vmtemplate.Store.Build
// leaves them, without booting a VM, for tests of code that lists, picks
// or prunes templates (the VM path itself is tested in vmtemplate).
package vmtemplatetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmtemplate"
)

// Write makes a valid template for in under dir, created at created, and
// returns its ID. The RAM file is sparse (in.MemoryMiB); a template of
// in.Kind KindStateRAM has none.
func Write(t testing.TB, dir string, in vmtemplate.Inputs, created time.Time) string {
	t.Helper()
	id := in.ID()
	tdir := filepath.Join(dir, id)
	vm := filepath.Join(tdir, vmtemplate.VMDir)
	if err := os.MkdirAll(vm, 0o700); err != nil {
		t.Fatal(err)
	}
	state := []byte("device state of " + id)
	if err := os.WriteFile(filepath.Join(vm, "state"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	ck := hypervisor.Checkpoint{Version: hypervisor.CheckpointVersion, Platform: in.Platform, Arch: in.Arch, Accel: in.Accel,
		CPUs: in.CPUs, MemoryMiB: in.MemoryMiB, Disks: in.Disks, Balloon: in.Balloon, SharedRAM: in.Kind == vmtemplate.KindRAMFile,
		State: "state", Saved: created}
	if err := hypervisor.WriteCheckpoint(vm, ck); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(state)
	man := vmtemplate.Manifest{ID: id, Inputs: in, Created: created, StateSHA256: hex.EncodeToString(sum[:]), StateBytes: int64(len(state))}
	if in.Kind == vmtemplate.KindRAMFile {
		man.RAMBytes, man.RAMModified, man.RAMSample = writeRAM(t, tdir, in)
	}
	b, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, vmtemplate.ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}

// writeRAM makes tdir's sparse RAM file and returns its manifest fields.
func writeRAM(t testing.TB, tdir string, in vmtemplate.Inputs) (int64, int64, string) {
	t.Helper()
	ram := filepath.Join(tdir, vmtemplate.RAMFile)
	if err := os.WriteFile(ram, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(ram, in.MemoryMiB<<20); err != nil {
		t.Fatal(err)
	}
	mod, sample, err := vmtemplate.RAMFingerprint(ram)
	if err != nil {
		t.Fatal(err)
	}
	return in.MemoryMiB << 20, mod, sample
}
