//go:build linux || darwin

package main

import (
	"github.com/berth-dev/berth/sdk/isolation"
)

// The VM's host resource group (issue 8). The resources layer's placement
// (Spec.Placement) is where the VM's host processes go: the supervisor
// joins it before it starts the hypervisor, so qemu (its child) is
// accounted and limited there from its first page (Create, Restore and a
// restore from a template alike). Lifecycle sizes that group for the VM
// (memory = the VM's memory + the host overhead) from what Create and
// Restore report: the returned TaskInfo.Spec.VM holds the CPUs and
// MemoryBytes of the VM actually made (reportedSpec), whatever decided
// them (VMSizing, the container's limits, the plugin's defaults).

// reportedSpec is spec as Create and Restore return it: VM carries the
// sizing of the VM that was booted, the other VMSizing fields as given.
func reportedSpec(spec isolation.Spec, boot bootConfig) *isolation.Spec {
	out := spec
	vm := isolation.VMSizing{}
	if spec.VM != nil {
		vm = *spec.VM
	}
	vm.CPUs, vm.MemoryBytes = boot.CPUs, boot.MemoryBytes
	out.VM = &vm
	return &out
}
