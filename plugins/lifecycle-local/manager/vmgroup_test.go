package manager

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
)

// The VM side of this contract (the plugin reports the VM it booted, its
// supervisor and qemu join the group, the guest enforces the limits) is
// tested with real qemu and real cgroups in plugins/isolation-vm
// (TestVMHostGroup); here the lifecycle's part runs over the fakes.

// vmLayers adds a mode "vm" (CapVM) to the fake layers, whose isolation
// reports a VM sized as isolation-vm sizes it.
type vmLayers struct {
	*fakeLayers
	iso *sizingIso
}

func (l *vmLayers) Modes() []Mode {
	return append(l.fakeLayers.Modes(), Mode{Name: "vm", Snapshotter: "overlay", Capabilities: []string{isolation.CapVM}})
}

func (l *vmLayers) Isolation(mode string) (isolation.Runtime, error) {
	if mode == "vm" {
		return l.iso, nil
	}
	return l.fakeLayers.Isolation(mode)
}

// sizingIso is the fake isolation reporting TaskInfo.Spec.VM: the
// VMSizing given, else the memory limit + 128 MiB, else 512 MiB.
type sizingIso struct {
	*fakeIso
	noReport bool
	creates  []isolation.Spec
	restores []isolation.Spec
}

func (s *sizingIso) Create(ctx context.Context, spec isolation.Spec) (isolation.TaskInfo, error) {
	info, err := s.fakeIso.Create(ctx, spec)
	if err != nil || s.noReport {
		return info, err
	}
	s.creates = append(s.creates, spec)
	return s.report(spec, info), nil
}

func (s *sizingIso) Restore(ctx context.Context, spec isolation.Spec, dir string) (isolation.TaskInfo, error) {
	info, err := s.fakeIso.Restore(ctx, spec, dir)
	if err != nil {
		return info, err
	}
	s.restores = append(s.restores, spec)
	return s.report(spec, info), nil
}

func (s *sizingIso) report(spec isolation.Spec, info isolation.TaskInfo) isolation.TaskInfo {
	vm := isolation.VMSizing{CPUs: 2, MemoryBytes: 512 << 20}
	if r := spec.OCI.Linux.Resources; r != nil && r.Memory != nil && r.Memory.Limit != nil {
		vm.MemoryBytes = *r.Memory.Limit + 128<<20
	}
	if spec.VM != nil && spec.VM.MemoryBytes > 0 {
		vm.MemoryBytes = spec.VM.MemoryBytes
	}
	sp := spec
	sp.VM = &vm
	info.Spec = &sp
	return info
}

func (f *fakeRes) limitsOf(t *testing.T, id string) resources.Limits {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.groups[id]
	if !ok {
		t.Fatalf("no resource group %s", id)
	}
	return g.Limits
}

func recordOf(t *testing.T, m *Manager, id string) store.Record {
	t.Helper()
	st, _, err := m.env()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestVMContainerHostGroup: a VM container's group holds the VM (memory =
// the reported VM size + VMHostOverhead, host-side CPU/cpuset/device
// limits, no pids/soft limit), its own limits go to the guest through the
// OCI spec, an update of guest limits waits for a stop, and the next start
// resizes the group for the new VM.
func TestVMContainerHostGroup(t *testing.T) {
	ctx := context.Background()
	fl := newFakeLayers()
	l := &vmLayers{fakeLayers: fl, iso: &sizingIso{fakeIso: fl.iso}}
	m := NewWithLayers(nil, l)
	m.settings = DefaultSettings()
	if err := m.Configure(ctx, pluginConfigure(t)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	limits := resources.Limits{MemoryBytes: 64 << 20, MemorySoftBytes: 32 << 20, Pids: 50, CPUs: 1.5, CPUSetCPUs: "0",
		CPUShares: 512, IOWriteBPS: 1 << 20, Devices: resources.DefaultDeviceRules()}
	c, err := m.Create(ctx, "vm1", lifecycle.Config{Image: "alpine", Isolation: "vm", Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	id := c.ID
	vmMem := int64(64<<20 + 128<<20)
	g := fl.res.limitsOf(t, id)
	want := resources.Limits{MemoryBytes: vmMem + VMHostOverhead, CPUs: 1.5, CPUSetCPUs: "0", CPUShares: 512, IOWriteBPS: 1 << 20,
		Devices: append(resources.DefaultDeviceRules(), hypervisorDevices...)}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("host group limits\n got %+v\nwant %+v", g, want)
	}
	rec := recordOf(t, m, id)
	r := rec.Task.OCI.Linux.Resources
	switch {
	case r.Memory == nil || *r.Memory.Limit != 64<<20 || *r.Memory.Reservation != 32<<20:
		t.Errorf("guest memory limits %+v", r.Memory)
	case r.Pids == nil || *r.Pids.Limit != 50:
		t.Errorf("guest pids %+v", r.Pids)
	case r.CPU == nil || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 || r.CPU.Cpus != "":
		t.Errorf("guest cpu %+v (the cpuset is the host's only)", r.CPU)
	case len(r.Devices) == 0:
		t.Error("the spec builder's device rules left the guest spec")
	}
	if rec.Task.VM == nil || rec.Task.VM.MemoryBytes != vmMem {
		t.Errorf("recorded VM sizing %+v; want %d bytes", rec.Task.VM, vmMem)
	}

	// While the VM exists, guest limits stay; host-only ones change.
	more := limits
	more.MemoryBytes = 256 << 20
	if _, err := m.Update(ctx, "vm1", more); !errdefs.IsNotImplemented(err) {
		t.Errorf("memory update of a created VM container: %v; want NotImplemented", err)
	}
	hostOnly := limits
	hostOnly.CPUSetCPUs = "1"
	if _, err := m.Update(ctx, "vm1", hostOnly); err != nil {
		t.Fatalf("cpuset update: %v", err)
	}
	if g := fl.res.limitsOf(t, id); g.CPUSetCPUs != "1" || g.MemoryBytes != vmMem+VMHostOverhead || g.Pids != 0 {
		t.Errorf("after a cpuset update the group has %+v", g)
	}

	// Stopped: the update goes into the task spec, and the next start
	// boots (and the group holds) a VM sized for it.
	if _, err := m.Start(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	if c, err := m.Stop(ctx, "vm1", time.Second); err != nil || c.State != lifecycle.StateStopped {
		t.Fatalf("Stop = %v, %v", c.State, err)
	}
	more.CPUSetCPUs = "1"
	if _, err := m.Update(ctx, "vm1", more); err != nil {
		t.Fatalf("memory update of a stopped VM container: %v", err)
	}
	if r := recordOf(t, m, id).Task; *r.OCI.Linux.Resources.Memory.Limit != 256<<20 || r.VM != nil {
		t.Errorf("task spec after the update: memory %d, VM %+v; want 256 MiB and no recorded size", *r.OCI.Linux.Resources.Memory.Limit, r.VM)
	}
	if _, err := m.Start(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	vmMem = 256<<20 + 128<<20
	if g := fl.res.limitsOf(t, id); g.MemoryBytes != vmMem+VMHostOverhead {
		t.Errorf("after the restart the group's memory is %d; want %d", g.MemoryBytes, vmMem+VMHostOverhead)
	}
	if vm := recordOf(t, m, id).Task.VM; vm == nil || vm.MemoryBytes != vmMem {
		t.Errorf("recorded VM sizing after the restart %+v", vm)
	}
	last := l.iso.creates[len(l.iso.creates)-1]
	if *last.OCI.Linux.Resources.Memory.Limit != 256<<20 {
		t.Errorf("the restart's task spec has memory %d", *last.OCI.Linux.Resources.Memory.Limit)
	}

	// A checkpointed VM container keeps its guest limits (the restore
	// needs a VM of the same size), and the restore boots the recorded VM.
	fl.iso.mu.Lock()
	fl.iso.checkpoint = true
	fl.iso.mu.Unlock()
	if _, err := m.Checkpoint(ctx, "vm1", false); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	less := more
	less.MemoryBytes = 64 << 20
	if _, err := m.Update(ctx, "vm1", less); !errdefs.IsNotImplemented(err) {
		t.Errorf("memory update of a checkpointed VM container: %v; want NotImplemented", err)
	}
	if _, err := m.Restore(ctx, "vm1"); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if r := l.iso.restores; len(r) != 1 || r[0].VM == nil || r[0].VM.MemoryBytes != vmMem {
		t.Errorf("Restore got specs %+v; want the recorded VM of %d bytes", r, vmMem)
	}
	if g := fl.res.limitsOf(t, id); g.MemoryBytes != vmMem+VMHostOverhead {
		t.Errorf("after the restore the group's memory is %d; want %d", g.MemoryBytes, vmMem+VMHostOverhead)
	}
	if err := m.Delete(ctx, "vm1", true); err != nil {
		t.Fatal(err)
	}
	if _, ok := fl.res.groups[id]; ok {
		t.Error("the group outlived the container")
	}

	// A sandbox container's group still carries its own limits.
	sb, err := m.Create(ctx, "sb", lifecycle.Config{Image: "alpine", Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	if g := fl.res.limitsOf(t, sb.ID); !reflect.DeepEqual(g, limits) {
		t.Errorf("sandbox group %+v; want the container's limits", g)
	}
}

// TestVMModeMustReportItsSize: a VM mode that does not report the VM it
// made fails the create, which leaves nothing behind.
func TestVMModeMustReportItsSize(t *testing.T) {
	ctx := context.Background()
	fl := newFakeLayers()
	l := &vmLayers{fakeLayers: fl, iso: &sizingIso{fakeIso: fl.iso, noReport: true}}
	m := NewWithLayers(nil, l)
	m.settings = DefaultSettings()
	if err := m.Configure(ctx, pluginConfigure(t)); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err := m.Create(ctx, "vm1", lifecycle.Config{Image: "alpine", Isolation: "vm", Limits: resources.Limits{MemoryBytes: 64 << 20}})
	if !errdefs.IsNotImplemented(err) {
		t.Fatalf("Create = %v; want NotImplemented", err)
	}
	if len(fl.res.groups) != 0 || len(fl.iso.taskIDs()) != 0 {
		t.Errorf("left behind: groups %v, tasks %v", fl.res.groups, fl.iso.taskIDs())
	}
	if cs, _ := m.List(ctx, lifecycle.Filter{}); slices.ContainsFunc(cs, func(c lifecycle.Container) bool { return c.Name == "vm1" }) {
		t.Error("the record is left")
	}
}
