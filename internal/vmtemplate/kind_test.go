package vmtemplate_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/internal/vmtemplate/vmtemplatetest"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// platformOnly is a hypervisor.Driver that only describes its machine
// (vz's Platform, for InputsFor on Linux): booting or restoring with it is
// an error. The VM path of both kinds is tested on qemu.
type platformOnly struct{ p hypervisor.Platform }

func (d platformOnly) Platform() hypervisor.Platform { return d.p }
func (d platformOnly) Start(context.Context, hypervisor.Config) (hypervisor.Machine, error) {
	return nil, errdefs.NotImplemented("platformOnly: no VMs")
}
func (d platformOnly) Restore(context.Context, hypervisor.Config, string) (hypervisor.Machine, error) {
	return nil, errdefs.NotImplemented("platformOnly: no VMs")
}

// TestKindFromPlatform: a driver whose Platform.RAMInState (vz) gets
// KindStateRAM inputs, another ID than the same config's RAM-file
// template; a state-ram template without a RAM file loads; an unknown
// kind is refused before anything boots.
func TestKindFromPlatform(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "Image")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := hypervisor.Config{Kernel: kernel, CPUs: 1, MemoryBytes: 256 << 20, Disks: make([]hypervisor.Disk, 1), Balloon: true}
	vz := platformOnly{hypervisor.VZPlatform("arm64")}
	in, err := vmtemplate.InputsFor(vz, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if in.Kind != vmtemplate.KindStateRAM {
		t.Fatalf("vz inputs kind %q, want %q", in.Kind, vmtemplate.KindStateRAM)
	}
	ramFile := in
	ramFile.Kind = vmtemplate.KindRAMFile
	if ramFile.ID() == in.ID() {
		t.Fatal("kind not part of the template ID")
	}
	// Socket NICs on vz stay cold: its placeholders are NAT NICs.
	scfgNIC := cfg
	scfgNIC.NICs = []hypervisor.NIC{{Socket: filepath.Join(dir, "un.sock"), MAC: "02:be:00:00:00:02"}}
	if _, err := vmtemplate.InputsFor(vz, scfgNIC); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "vz") {
		t.Errorf("InputsFor(vz, socket NIC) = %v, want NotImplemented naming vz", err)
	}
	other := platformOnly{hypervisor.Platform{Name: "qemu-virt", Arch: "arm64", Accel: "tcg"}}
	if in2, err := vmtemplate.InputsFor(other, cfg); err != nil || in2.Kind != vmtemplate.KindRAMFile {
		t.Fatalf("qemu inputs kind %q, %v: want the RAM-file kind", in2.Kind, err)
	}

	store := &vmtemplate.Store{Dir: filepath.Join(dir, "templates")}
	id := vmtemplatetest.Write(t, store.Dir, in, time.Now())
	tpl, err := store.Get(in)
	if err != nil || tpl.ID != id {
		t.Fatalf("Get of a state-ram template = %v, %v", tpl, err)
	}
	// Start needs no memory file and refuses one.
	scfg := cfg
	scfg.RunDir, scfg.MemoryFile = t.TempDir(), filepath.Join(dir, "ram")
	if _, _, err := tpl.Start(context.Background(), vz, scfg); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Start with a memory file = %v, want InvalidArgument", err)
	}
	// A failed restore leaves no clone of the state in the run dir.
	scfg.MemoryFile = ""
	if _, _, err := tpl.Start(context.Background(), vz, scfg); !errdefs.IsNotImplemented(err) {
		t.Fatalf("Start on platformOnly = %v, want its NotImplemented", err)
	}
	if ents, _ := os.ReadDir(scfg.RunDir); len(ents) != 0 {
		t.Errorf("run dir after a failed start holds %v", ents)
	}

	bad := in
	bad.Kind = "bogus"
	if _, err := store.Build(context.Background(), vz, bad, cfg, vmtemplate.BuildOptions{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Build of kind %q = %v, want InvalidArgument", bad.Kind, err)
	}
	if ents, _ := os.ReadDir(store.Dir); len(ents) != 2 { // the state-ram template and bogus's lock file
		t.Errorf("store after a refused build: %v", ents)
	}
}
