package manager

import (
	"context"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
)

// Resource limits of a container whose isolation mode runs it in a VM
// (capability isolation.CapVM). Two places enforce them:
//
//   - inside the guest, the container's own limits: VMGuestResources puts
//     them into the OCI spec's Linux.Resources, which the guest agent
//     enforces in the guest's cgroup and from which isolation-vm sizes the
//     VM;
//   - on the host, the resource group holds the VM's processes (the
//     supervisor joins the placement before it starts qemu) and gets
//     VMHostLimits: the host-side limits as given, a memory hard limit of
//     the VM's memory + VMHostOverhead, and no pids, soft or swap limit of
//     the container's.
//
// The VM's memory is what the isolation plugin reports: Create and Restore
// return TaskInfo.Spec.VM with the CPUs and MemoryBytes of the VM they
// booted. Lifecycle records that sizing in the task spec (so restarts and
// restores boot the same VM) and sizes the group from it. Until the first
// Create returns, the group has no memory limit (qemu's -m bounds the
// guest meanwhile).

// VMHostOverhead is the host memory a VM container's group allows beyond
// the VM's memory: the qemu process itself (binary and libraries, the
// TCG translation cache of 16 MiB, device emulation, I/O threads), the
// VM supervisor (~11 MB), the file pages of the kernel and initramfs it
// maps and the host page cache of the disk image that the group is
// charged for. Measured here (TestVMHostGroup, TCG, 256 MiB VM): see
// NOTES.md "Resources".
const VMHostOverhead = 128 << 20

// hypervisorDevices are the device nodes a VM's host processes open; a
// VM container's device rules are the guest's, so the host group allows
// these too: /dev/kvm, /dev/net/tun, /dev/vhost-net, /dev/vhost-vsock.
var hypervisorDevices = []resources.DeviceRule{
	{Allow: true, Type: "c", Major: 10, Minor: 232, Access: "rwm"},
	{Allow: true, Type: "c", Major: 10, Minor: 200, Access: "rwm"},
	{Allow: true, Type: "c", Major: 10, Minor: 238, Access: "rwm"},
	{Allow: true, Type: "c", Major: 10, Minor: 241, Access: "rwm"},
}

// VMHostLimits are the limits of the host group of a VM container with
// limits l whose VM has vmMemory bytes (0: not known yet, no memory
// limit). CPU shares, quota and cpuset, IO bandwidth and device rules
// (plus hypervisorDevices when there are rules) apply to the VM's
// processes as given; memory is vmMemory + VMHostOverhead; the
// container's pids, soft memory and swap limits are the guest's only.
func VMHostLimits(l resources.Limits, vmMemory int64) resources.Limits {
	h := resources.Limits{
		CPUShares: l.CPUShares, CPUs: l.CPUs, CPUSetCPUs: l.CPUSetCPUs, CPUSetMems: l.CPUSetMems,
		IOReadBPS: l.IOReadBPS, IOWriteBPS: l.IOWriteBPS, IODevice: l.IODevice,
	}
	if len(l.Devices) > 0 {
		h.Devices = append(slices.Clone(l.Devices), hypervisorDevices...)
	}
	if vmMemory > 0 {
		h.MemoryBytes = vmMemory + VMHostOverhead
	}
	return h
}

// VMGuestResources returns base (the spec builder's Linux.Resources, which
// carries the device rules) with the container's limits the guest
// enforces: memory (hard, soft, swap), pids, CPU shares and quota. The
// cpuset and IO limits are host-side (the guest's CPUs and disks are not
// the host's).
func VMGuestResources(base *specs.LinuxResources, l resources.Limits) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if base != nil {
		r.Devices = slices.Clone(base.Devices)
	}
	if l.MemoryBytes > 0 || l.MemorySoftBytes > 0 {
		m := &specs.LinuxMemory{}
		if l.MemoryBytes > 0 {
			limit := l.MemoryBytes
			m.Limit = &limit
			switch {
			case l.SwapBytes < 0:
				swap := int64(-1)
				m.Swap = &swap
			case l.SwapBytes > 0:
				swap := l.MemoryBytes + l.SwapBytes
				m.Swap = &swap
			}
		}
		if l.MemorySoftBytes > 0 {
			soft := l.MemorySoftBytes
			m.Reservation = &soft
		}
		r.Memory = m
	}
	if l.Pids > 0 {
		pids := l.Pids
		r.Pids = &specs.LinuxPids{Limit: &pids}
	}
	if l.CPUShares > 0 || l.CPUs > 0 {
		c := &specs.LinuxCPU{}
		if l.CPUShares > 0 {
			shares := l.CPUShares
			c.Shares = &shares
		}
		if l.CPUs > 0 {
			period := uint64(100000)
			quota := int64(l.CPUs * float64(period))
			c.Period, c.Quota = &period, &quota
		}
		r.CPU = c
	}
	return r
}

// vmSizeOf is the VM sizing an isolation plugin reported for a task.
func vmSizeOf(mode string, info isolation.TaskInfo) (*isolation.VMSizing, error) {
	if info.Spec == nil || info.Spec.VM == nil || info.Spec.VM.MemoryBytes <= 0 {
		return nil, errdefs.NotImplemented("isolation mode %q did not report the size of the VM it made (TaskInfo.Spec.VM); its host resource group cannot be sized", mode)
	}
	vm := *info.Spec.VM
	return &vm, nil
}

// recordedVMMemory is the memory of the VM recorded for rec's task (0 for
// a record made before lifecycle recorded it).
func recordedVMMemory(rec store.Record) int64 {
	if rec.Task == nil || rec.Task.VM == nil {
		return 0
	}
	return rec.Task.VM.MemoryBytes
}

// resizeVMGroup follows a task (re)creation of a VM container: when the
// VM's reported size differs from the one recorded, the host group is
// sized for it and the record keeps the new sizing. Called after start
// re-creates a task (an update while stopped may have changed the
// container's limits, and so the VM's size).
func (m *Manager) resizeVMGroup(ctx context.Context, rec store.Record, layers Layers, info isolation.TaskInfo) (store.Record, error) {
	if !runsInVM(layers, rec.Container.Isolation) || rec.Task == nil {
		return rec, nil
	}
	vm, err := vmSizeOf(rec.Container.Isolation, info)
	if err != nil {
		return rec, err
	}
	if rec.Task.VM != nil && rec.Task.VM.MemoryBytes == vm.MemoryBytes && rec.Task.VM.CPUs == vm.CPUs {
		return rec, nil
	}
	if rec.Group != "" {
		res, err := layers.Resources()
		if err != nil {
			return rec, err
		}
		if err := res.Update(ctx, rec.Group, VMHostLimits(rec.Container.Config.Limits, vm.MemoryBytes)); err != nil {
			return rec, fmt.Errorf("size the VM's host resource group: %w", err)
		}
	}
	return m.update(rec.Container.ID, func(r *store.Record) {
		if r.Task != nil {
			r.Task.VM = vm
		}
	})
}

// guestLimitsEqual reports whether a and b set the same limits inside a VM
// (and the same VM size): memory, soft, swap, pids and CPUs.
func guestLimitsEqual(a, b resources.Limits) bool {
	return a.MemoryBytes == b.MemoryBytes && a.MemorySoftBytes == b.MemorySoftBytes && a.SwapBytes == b.SwapBytes &&
		a.Pids == b.Pids && a.CPUs == b.CPUs
}

// updateVM is Update for a VM container. The host group gets VMHostLimits
// at once (its memory stays the running VM's + overhead). The guest's
// limits cannot change while the VM exists (isolation has no update call
// yet; the VM's size is fixed while it runs, and a checkpoint restores
// only into a VM of the same size), so a change of memory, soft memory,
// swap, pids or CPUs is refused unless the container is stopped; then the
// recorded task spec gets the new guest limits and loses its recorded
// size, so the next start boots a VM sized for them (resizeVMGroup).
func (m *Manager) updateVM(ctx context.Context, rec store.Record, res resources.Controller, limits resources.Limits) (lifecycle.Container, error) {
	name, id := rec.Container.Name, rec.Container.ID
	old := rec.Container.Config.Limits
	stopped := rec.Container.State == lifecycle.StateStopped
	if !stopped && !guestLimitsEqual(old, limits) {
		return rec.Container, errdefs.NotImplemented("update %s: memory, swap, pids and cpus of a VM container apply inside its VM and cannot change while the VM exists (state %s); stop the container, update it, start it", name, rec.Container.State)
	}
	vmMem := recordedVMMemory(rec)
	if err := res.Update(ctx, rec.Group, VMHostLimits(limits, vmMem)); err != nil {
		return rec.Container, fmt.Errorf("update %s: %w", name, err)
	}
	out, err := m.update(id, func(r *store.Record) {
		r.Container.Config.Limits = limits
		if stopped && r.Task != nil && r.Task.OCI != nil && r.Task.OCI.Linux != nil {
			r.Task.OCI.Linux.Resources = VMGuestResources(r.Task.OCI.Linux.Resources, limits)
			// The user's own VM sizing (Config.VM) stays; the rest is
			// decided again by the next Create.
			r.Task.VM = r.Container.Config.VM
		}
	})
	if err != nil {
		if uerr := res.Update(ctx, rec.Group, VMHostLimits(old, vmMem)); uerr != nil {
			return lifecycle.Container{}, fmt.Errorf("update %s: %w (and putting the old limits back: %v)", name, err, uerr)
		}
		return lifecycle.Container{}, fmt.Errorf("update %s: %w", name, err)
	}
	m.log.Info("VM container limits updated", "container_id", id, "name", name, "guest_limits_at_next_start", stopped)
	return out.Container, nil
}
