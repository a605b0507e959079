package vmtemplate_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// TestStateRAMTemplate is the shared logic of macOS's (vz) templates,
// run on qemu: a template of KindStateRAM (no RAM file; the guest's RAM
// is in the saved state, as vz's SaveMachineStateToPath keeps it), two
// VMs restored from clones of its state, each personalized (hostname,
// clock, entropy) and running a container on its own disk; then a
// corrupted state file is refused with an error naming it.
func TestStateRAMTemplate(t *testing.T) {
	e := setup(t)
	store := &vmtemplate.Store{Dir: filepath.Join(e.dir, "templates")}
	in, err := vmtemplate.InputsFor(e.drv, e.base)
	if err != nil {
		t.Fatal(err)
	}
	if in.Kind != vmtemplate.KindRAMFile {
		t.Fatalf("qemu's default kind = %q, want the RAM-file kind", in.Kind)
	}
	ramFileID := in.ID()
	in.Kind = vmtemplate.KindStateRAM // what InputsFor picks on vz
	if in.ID() == ramFileID {
		t.Fatal("the kind is not part of the template's ID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	tpl, err := store.Build(ctx, e.drv, in, e.base, vmtemplate.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state-ram template %s built in %v; state %d bytes", tpl.ID, time.Since(t0).Round(time.Millisecond), tpl.StateBytes)
	if _, err := os.Stat(tpl.RAM()); !os.IsNotExist(err) {
		t.Errorf("a state-ram template has a RAM file: %v", err)
	}
	if tpl.StateBytes < 1<<20 {
		t.Errorf("saved state is %d bytes: it should carry the guest's RAM", tpl.StateBytes)
	}
	got, err := store.Get(in)
	if err != nil || got.ID != tpl.ID {
		t.Fatalf("Get after Build = %v, %v", got, err)
	}
	h0 := time.Now()
	if _, err := store.Load(tpl.ID); err != nil { // a fresh process would hash it all: see NOTES
		t.Fatal(err)
	}
	t.Logf("Load (state hash memoized in-process) %v", time.Since(h0))

	// A memory file is refused: the RAM is in the state.
	mcfg := e.base
	mcfg.Disks = []hypervisor.Disk{{Path: filepath.Join(e.dir, "none.raw")}}
	mcfg.RunDir, mcfg.MemoryFile = t.TempDir(), filepath.Join(e.dir, "ram")
	if _, _, err := tpl.Start(ctx, e.drv, mcfg); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("start with a memory file = %v, want InvalidArgument", err)
	}

	script := "hostname; cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s; cat /sys/block/vda/size"
	var outs [2][]string
	for i, size := range []string{"40M", "72M"} {
		disk := rootfsDisk(t, size)
		host := "state-" + strconv.Itoa(i)
		c := e.startClone(t, tpl, disk, host, false)
		before := time.Now()
		info, err := c.agent.Info(ctx)
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if info.Time.Before(before.Add(-time.Second)) || info.Time.After(after.Add(time.Second)) {
			t.Errorf("clone %d guest clock %v, host %v..%v: want within 1 s", i, info.Time, before, after)
		}
		runBegan := time.Now()
		out := c.run(t, "s"+strconv.Itoa(i), script)
		runEnded := time.Now()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 5 {
			t.Fatalf("clone %d output %q", i, out)
		}
		outs[i] = lines
		t.Logf("clone %d: %q; qemu %s", i, lines, memOf(c.m.Pid()))
		if lines[0] != host {
			t.Errorf("clone %d hostname %q, want %q", i, lines[0], host)
		}
		if guest, err := strconv.ParseInt(lines[3], 10, 64); err != nil || guest < runBegan.Unix()-1 || guest > runEnded.Unix()+1 {
			t.Errorf("clone %d container's date %q, host %d..%d: want within 1 s", i, lines[3], runBegan.Unix(), runEnded.Unix())
		}
		fi, _ := os.Stat(disk)
		if lines[4] != strconv.FormatInt(fi.Size()/512, 10) {
			t.Errorf("clone %d sees /dev/vda of %s sectors, want %d (its own disk)", i, lines[4], fi.Size()/512)
		}
	}
	if outs[0][1] == outs[1][1] {
		t.Errorf("both clones drew the same random uuid %s", outs[0][1])
	}
	if outs[0][2] == outs[1][2] {
		t.Errorf("both clones read the same /dev/urandom bytes %s", outs[0][2])
	}
	// The restores left the template's state as it was.
	if _, err := store.Get(in); err != nil {
		t.Fatalf("Get after the restores: %v", err)
	}

	// A corrupted state file: a clear error naming it.
	ck, err := hypervisor.ReadCheckpoint(filepath.Join(tpl.Dir, vmtemplate.VMDir))
	if err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(tpl.Dir, vmtemplate.VMDir, ck.State)
	f, err := os.OpenFile(statePath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage in the saved guest"), tpl.StateBytes/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = store.Get(in)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), statePath) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Get of a template with a corrupted state = %v, want InvalidArgument naming %s as corrupt", err, statePath)
	}
	t.Logf("corrupted state: %v", err)
}
