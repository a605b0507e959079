//go:build linux || darwin

package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/internal/vmtemplate/vmtemplatetest"
)

// TestPruneTemplates: a new template supersedes those of its size and
// machine built from other inputs, and only the newest maxTemplates stay.
func TestPruneTemplates(t *testing.T) {
	store := &vmtemplate.Store{Dir: t.TempDir()}
	in := func(kernel string, mem int64) vmtemplate.Inputs {
		return vmtemplate.Inputs{Format: vmtemplate.FormatVersion, KernelSHA256: strings.Repeat(kernel, 64), CPUs: 1,
			MemoryMiB: mem, Disks: 1, Platform: "qemu-microvm", Arch: "amd64", Accel: "tcg"}
	}
	now := time.Now()
	oldKernel := vmtemplatetest.Write(t, store.Dir, in("a", 64), now.Add(-time.Hour))
	var sizes []string
	for i, mem := range []int64{65, 66, 67, 68} {
		sizes = append(sizes, vmtemplatetest.Write(t, store.Dir, in("b", mem), now.Add(time.Duration(i-10)*time.Minute)))
	}
	newest := vmtemplatetest.Write(t, store.Dir, in("b", 64), now)
	pruneTemplates(hclog.NewNullLogger(), store, newest, in("b", 64))
	entries, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.ID)
	}
	want := []string{newest, sizes[1], sizes[2], sizes[3]} // the old kernel's superseded, the oldest size dropped
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v (superseded %s, oldest %s)", left, want, oldKernel, sizes[0])
	}
}

// TestPruneTemplatesKeepsOtherKind: a template of another kind (RAM in
// the saved state vs a RAM file) of the same size and machine is not
// superseded.
func TestPruneTemplatesKeepsOtherKind(t *testing.T) {
	store := &vmtemplate.Store{Dir: t.TempDir()}
	in := vmtemplate.Inputs{Format: vmtemplate.FormatVersion, KernelSHA256: strings.Repeat("a", 64), CPUs: 1,
		MemoryMiB: 64, Disks: 1, Platform: "qemu-microvm", Arch: "amd64", Accel: "tcg"}
	stateIn := in
	stateIn.Kind = vmtemplate.KindStateRAM
	now := time.Now()
	state := vmtemplatetest.Write(t, store.Dir, stateIn, now.Add(-time.Minute))
	keep := vmtemplatetest.Write(t, store.Dir, in, now)
	pruneTemplates(hclog.NewNullLogger(), store, keep, in)
	entries, err := store.List()
	if err != nil || len(entries) != 2 {
		t.Fatalf("left %+v, %v: want both %s and %s", entries, err, keep, state)
	}
	for _, e := range entries {
		if e.Err != nil {
			t.Errorf("template %s: %v", e.ID, e.Err)
		}
	}
}
