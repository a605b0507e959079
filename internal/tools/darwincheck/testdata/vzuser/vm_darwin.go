// Package main is a darwincheck test fixture: a correct use of the
// github.com/Code-Hex/vz/v3 v3.7.1 API, which must type-check for
// darwin/arm64. It is never built or run. The tests overlay this file with
// wrong variants.
package main

import (
	"fmt"
	"os"

	"github.com/Code-Hex/vz/v3"
)

// startVM boots a Linux guest with a virtio-blk root disk, NAT networking, a
// vsock device and a serial console on pipes, then dials guest port 1024.
func startVM(kernel, initrd, disk string) (*vz.VirtualMachine, *vz.VirtioSocketConnection, error) {
	boot, err := vz.NewLinuxBootLoader(kernel, vz.WithInitrd(initrd), vz.WithCommandLine("console=hvc0 root=/dev/vda"))
	if err != nil {
		return nil, nil, err
	}
	cfg, err := vz.NewVirtualMachineConfiguration(boot, 2, 1<<30)
	if err != nil {
		return nil, nil, err
	}
	att, err := vz.NewDiskImageStorageDeviceAttachmentWithCacheAndSync(disk, false,
		vz.DiskImageCachingModeCached, vz.DiskImageSynchronizationModeFsync)
	if err != nil {
		return nil, nil, err
	}
	blk, err := vz.NewVirtioBlockDeviceConfiguration(att)
	if err != nil {
		return nil, nil, err
	}
	cfg.SetStorageDevicesVirtualMachineConfiguration([]vz.StorageDeviceConfiguration{blk})
	nat, err := vz.NewNATNetworkDeviceAttachment()
	if err != nil {
		return nil, nil, err
	}
	nic, err := vz.NewVirtioNetworkDeviceConfiguration(nat)
	if err != nil {
		return nil, nil, err
	}
	cfg.SetNetworkDevicesVirtualMachineConfiguration([]*vz.VirtioNetworkDeviceConfiguration{nic})
	sock, err := vz.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return nil, nil, err
	}
	cfg.SetSocketDevicesVirtualMachineConfiguration([]vz.SocketDeviceConfiguration{sock})
	inR, _, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	_, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	serial, err := vz.NewFileHandleSerialPortAttachment(inR, outW)
	if err != nil {
		return nil, nil, err
	}
	console, err := vz.NewVirtioConsoleDeviceSerialPortConfiguration(serial)
	if err != nil {
		return nil, nil, err
	}
	cfg.SetSerialPortsVirtualMachineConfiguration([]*vz.VirtioConsoleDeviceSerialPortConfiguration{console})
	if ok, err := cfg.Validate(); !ok || err != nil {
		return nil, nil, fmt.Errorf("invalid VM configuration: %w", err)
	}
	vm, err := vz.NewVirtualMachine(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := vm.Start(); err != nil {
		return nil, nil, err
	}
	for st := range vm.StateChangedNotify() {
		if st == vz.VirtualMachineStateRunning {
			break
		}
	}
	conn, err := vm.SocketDevices()[0].Connect(1024)
	if err != nil {
		return vm, nil, err
	}
	return vm, conn, nil
}

// snapshot uses an API that vz defines only for darwin && arm64.
func snapshot(vm *vz.VirtualMachine, path string) error {
	if err := vm.Pause(); err != nil {
		return err
	}
	return vm.SaveMachineStateToPath(path)
}

func main() {
	vm, conn, err := startVM("Image", "initrd.img", "rootfs.raw")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	if err := snapshot(vm, "vm.state"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
