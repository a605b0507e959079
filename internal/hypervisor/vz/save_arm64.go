//go:build darwin && arm64

package vz

import "github.com/Code-Hex/vz/v3"

// saveState writes the paused VM's state to path (macOS 14+).
func saveState(vm *vz.VirtualMachine, path string) error { return vm.SaveMachineStateToPath(path) }

// restoreState loads path into the stopped VM, which ends paused (macOS 14+).
func restoreState(vm *vz.VirtualMachine, path string) error {
	return vm.RestoreMachineStateFromURL(path)
}
