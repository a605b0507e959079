//go:build darwin && !arm64

package vz

import (
	"github.com/Code-Hex/vz/v3"

	"github.com/berth-dev/berth/sdk/errdefs"
)

func saveState(*vz.VirtualMachine, string) error {
	return errdefs.NotImplemented("vm checkpoint needs Virtualization.framework save/restore: Apple silicon only")
}

func restoreState(*vz.VirtualMachine, string) error {
	return errdefs.NotImplemented("vm restore needs Virtualization.framework save/restore: Apple silicon only")
}
