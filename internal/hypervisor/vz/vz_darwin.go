//go:build darwin

package vz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/Code-Hex/vz/v3"
	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
)

const (
	stateFile     = "state.vzvmsave"
	machineIDFile = "machine-id" // generic machine identifier: a restore needs the saved one
)

type driver struct{ log hclog.Logger }

var _ hypervisor.Driver = (*driver)(nil)

// New returns the Virtualization.framework driver. log may be nil.
func New(log hclog.Logger) (hypervisor.Driver, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &driver{log: log}, nil
}

func (d *driver) Platform() hypervisor.Platform { return hypervisor.VZPlatform(runtime.GOARCH) }

func (d *driver) Start(ctx context.Context, cfg hypervisor.Config) (hypervisor.Machine, error) {
	m, err := d.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := m.vm.Start(); err != nil {
		m.discard()
		return nil, fmt.Errorf("start vm: %w", err)
	}
	m.watch()
	return m, nil
}

func (d *driver) Restore(ctx context.Context, cfg hypervisor.Config, dir string) (hypervisor.Machine, error) {
	ck, err := hypervisor.ReadCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	if err := ck.Matches(d.Platform(), cfg); err != nil {
		return nil, err
	}
	id, err := os.ReadFile(filepath.Join(dir, machineIDFile))
	if err != nil {
		return nil, errdefs.InvalidArgument("checkpoint %s: %v", dir, err)
	}
	m, err := d.build(cfg, id)
	if err != nil {
		return nil, err
	}
	// The restored VM has cfg's devices: the container's disks in the
	// saved ones' places, its NICs with cfg's MACs (the guest keeps the
	// saved MAC until its agent sets the new one, as on qemu: not yet
	// verified on a Mac), as a VM template
	// (internal/vmtemplate, KindStateRAM) needs.
	if err := restoreState(m.vm, filepath.Join(dir, ck.State)); err != nil {
		m.discard()
		return nil, fmt.Errorf("restore vm from %s: %w", dir, err)
	}
	if err := m.vm.Resume(); err != nil {
		m.vm.Stop()
		m.discard()
		return nil, fmt.Errorf("resume restored vm: %w", err)
	}
	m.watch()
	return m, nil
}

// build makes the VM for cfg; machineID is a saved generic machine
// identifier (nil: a new one).
func (d *driver) build(cfg hypervisor.Config, machineID []byte) (*machine, error) {
	if err := hypervisor.ValidateVZ(cfg); err != nil {
		return nil, err
	}
	opts := []vz.LinuxBootLoaderOption{vz.WithCommandLine(hypervisor.KernelCmdline(cfg.Cmdline, d.Platform().KernelArgs))}
	if cfg.Initrd != "" {
		opts = append(opts, vz.WithInitrd(cfg.Initrd))
	}
	boot, err := vz.NewLinuxBootLoader(cfg.Kernel, opts...)
	if err != nil {
		return nil, fmt.Errorf("vz boot loader: %w", err)
	}
	c, err := vz.NewVirtualMachineConfiguration(boot, uint(cfg.CPUs), uint64(cfg.MemoryBytes))
	if err != nil {
		return nil, fmt.Errorf("vz configuration: %w", err)
	}
	m := &machine{cfg: cfg, log: d.log, done: make(chan struct{})}
	if err := m.devices(c, machineID); err != nil {
		m.discard()
		return nil, err
	}
	if ok, err := c.Validate(); !ok || err != nil {
		m.discard()
		return nil, fmt.Errorf("vz configuration invalid (is the binary signed with com.apple.security.virtualization?): %w", err)
	}
	if m.vm, err = vz.NewVirtualMachine(c); err != nil {
		m.discard()
		return nil, fmt.Errorf("vz machine: %w", err)
	}
	return m, nil
}

// devices attaches cfg's devices to c.
func (m *machine) devices(c *vz.VirtualMachineConfiguration, machineID []byte) error {
	cfg := m.cfg
	var id *vz.GenericMachineIdentifier
	var err error
	if machineID != nil {
		id, err = vz.NewGenericMachineIdentifierWithData(machineID)
	} else {
		id, err = vz.NewGenericMachineIdentifier()
	}
	if err == nil {
		m.machineID = id.DataRepresentation()
		p, err := vz.NewGenericPlatformConfiguration(vz.WithGenericMachineIdentifier(id))
		if err != nil {
			return fmt.Errorf("vz platform: %w", err)
		}
		c.SetPlatformVirtualMachineConfiguration(p)
	} else if machineID != nil {
		return fmt.Errorf("vz machine identifier: %w", err)
	}

	var disks []vz.StorageDeviceConfiguration
	for _, d := range cfg.Disks {
		att, err := vz.NewDiskImageStorageDeviceAttachment(d.Path, d.ReadOnly)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Path, err)
		}
		blk, err := vz.NewVirtioBlockDeviceConfiguration(att)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Path, err)
		}
		disks = append(disks, blk)
	}
	c.SetStorageDevicesVirtualMachineConfiguration(disks)

	var shares []vz.DirectorySharingDeviceConfiguration
	for _, s := range cfg.Shares {
		fs, err := share(s)
		if err != nil {
			return fmt.Errorf("share %s: %w", s.Tag, err)
		}
		shares = append(shares, fs)
	}
	c.SetDirectorySharingDevicesVirtualMachineConfiguration(shares)

	var nics []*vz.VirtioNetworkDeviceConfiguration
	for i, n := range cfg.NICs {
		var att vz.NetworkDeviceAttachment
		var err error
		if n.Socket != "" {
			att, err = m.userNetAttachment(i, n.Socket)
		} else {
			att, err = vz.NewNATNetworkDeviceAttachment()
		}
		if err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		dev, err := vz.NewVirtioNetworkDeviceConfiguration(att)
		if err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		if n.MAC != "" {
			hw, _ := net.ParseMAC(n.MAC) // validated
			mac, err := vz.NewMACAddress(hw)
			if err != nil {
				return fmt.Errorf("nic %d: mac %s: %w", i, n.MAC, err)
			}
			dev.SetMACAddress(mac)
		}
		nics = append(nics, dev)
	}
	c.SetNetworkDevicesVirtualMachineConfiguration(nics)

	sock, err := vz.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return fmt.Errorf("vsock: %w", err)
	}
	c.SetSocketDevicesVirtualMachineConfiguration([]vz.SocketDeviceConfiguration{sock})

	serial, err := vz.NewFileSerialPortAttachment(cfg.ConsoleLog, true)
	if err != nil {
		return fmt.Errorf("console %s: %w", cfg.ConsoleLog, err)
	}
	console, err := vz.NewVirtioConsoleDeviceSerialPortConfiguration(serial)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	c.SetSerialPortsVirtualMachineConfiguration([]*vz.VirtioConsoleDeviceSerialPortConfiguration{console})

	entropy, err := vz.NewVirtioEntropyDeviceConfiguration()
	if err != nil {
		return fmt.Errorf("entropy: %w", err)
	}
	c.SetEntropyDevicesVirtualMachineConfiguration([]*vz.VirtioEntropyDeviceConfiguration{entropy})

	if cfg.Balloon {
		b, err := vz.NewVirtioTraditionalMemoryBalloonDeviceConfiguration()
		if err != nil {
			return fmt.Errorf("balloon: %w", err)
		}
		c.SetMemoryBalloonDevicesVirtualMachineConfiguration([]vz.MemoryBalloonDeviceConfiguration{b})
	}
	return nil
}

// share is a virtiofs device exporting one directory.
func share(s hypervisor.Share) (*vz.VirtioFileSystemDeviceConfiguration, error) {
	dir, err := vz.NewSharedDirectory(s.Path, s.ReadOnly)
	if err != nil {
		return nil, err
	}
	single, err := vz.NewSingleDirectoryShare(dir)
	if err != nil {
		return nil, err
	}
	fs, err := vz.NewVirtioFileSystemDeviceConfiguration(s.Tag)
	if err == nil {
		fs.SetDirectoryShare(single)
	}
	return fs, err
}

// machine is one in-process VM.
type machine struct {
	cfg       hypervisor.Config
	log       hclog.Logger
	vm        *vz.VirtualMachine
	machineID []byte

	mu      sync.Mutex // serialises state changes and Save
	done    chan struct{}
	exitErr error
	stopped bool // Kill or Shutdown asked for the end

	nicFiles []*os.File // user-mode network sockets, closed when the VM ends
}

var _ hypervisor.Machine = (*machine)(nil)

// watch closes done once the VM reaches Stopped or Error after it ran.
func (m *machine) watch() {
	go func() {
		ran := false
		for st := range m.vm.StateChangedNotify() {
			switch st {
			case vz.VirtualMachineStateRunning, vz.VirtualMachineStatePaused:
				ran = true
			case vz.VirtualMachineStateError:
				m.exitErr = errors.New("vz: the virtual machine stopped with an internal error")
				close(m.done)
				return
			case vz.VirtualMachineStateStopped:
				if ran {
					close(m.done)
					return
				}
			}
		}
	}()
}

// discard releases a machine that never ran (Start or Restore failed
// before watch): done closes, so its user-mode network sockets are closed
// and removed, and a cold boot after a failed restore binds them afresh.
func (m *machine) discard() {
	m.exitErr = errors.New("vz: the virtual machine did not start")
	close(m.done)
}

func (m *machine) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *machine) Pid() int { return os.Getpid() }

func (m *machine) DialAgent(ctx context.Context) (net.Conn, error) {
	return hypervisor.DialRetry(ctx, func(context.Context) (net.Conn, error) {
		if m.exited() {
			return nil, hypervisor.ErrExited
		}
		return m.vm.SocketDevices()[0].Connect(hypervisor.AgentVsockPort)
	}, func(err error) bool { return errors.Is(err, hypervisor.ErrExited) })
}

func (m *machine) Pause(ctx context.Context) error { return m.setRunning(false) }

func (m *machine) Resume(ctx context.Context) error { return m.setRunning(true) }

// setRunning pauses or resumes the VM; already being there is success.
func (m *machine) setRunning(run bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.exited() {
		return hypervisor.ErrExited
	}
	switch st := m.vm.State(); {
	case run && st == vz.VirtualMachineStateRunning, !run && st == vz.VirtualMachineStatePaused:
		return nil
	case run:
		if err := m.vm.Resume(); err != nil {
			return fmt.Errorf("resume vm: %w", err)
		}
	default:
		if err := m.vm.Pause(); err != nil {
			return fmt.Errorf("pause vm: %w", err)
		}
	}
	return nil
}

func (m *machine) Save(ctx context.Context, dir string) error {
	if err := m.Pause(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save vm: %w", err)
	}
	tmp := filepath.Join(dir, "."+stateFile+".tmp")
	os.Remove(tmp)
	defer os.Remove(tmp)
	if err := saveState(m.vm, tmp); err != nil {
		return fmt.Errorf("save vm to %s: %w", dir, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("save vm: %w", err)
	}
	if err := hypervisor.WriteFileAtomic(filepath.Join(dir, machineIDFile), m.machineID); err != nil {
		return fmt.Errorf("save vm: %w", err)
	}
	ck := hypervisor.NewCheckpoint(hypervisor.VZPlatform(runtime.GOARCH), m.cfg, stateFile, "Virtualization.framework")
	return hypervisor.WriteCheckpoint(dir, ck)
}

func (m *machine) SetBalloon(ctx context.Context, guestBytes int64) error {
	devs := m.vm.MemoryBalloonDevices()
	if !m.cfg.Balloon || len(devs) == 0 {
		return errdefs.NotImplemented("balloon: the VM was started without one")
	}
	if guestBytes < hypervisor.MinMemory || guestBytes > m.cfg.MemoryBytes {
		return errdefs.InvalidArgument("balloon target %d bytes: want %d..%d", guestBytes, hypervisor.MinMemory, m.cfg.MemoryBytes)
	}
	vz.AsVirtioTraditionalMemoryBalloonDevice(devs[0]).SetTargetVirtualMachineMemorySize(uint64(guestBytes))
	return nil
}

// Shutdown asks the guest to stop (a power-button request) and waits; at
// ctx's end it stops the VM at once.
func (m *machine) Shutdown(ctx context.Context) error {
	if m.exited() {
		return nil
	}
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	if ok, err := m.vm.RequestStop(); !ok || err != nil {
		m.log.Debug("guest stop request failed; stopping the vm", "error", err)
		return m.Kill()
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		m.Kill()
		return fmt.Errorf("shutdown vm: guest did not power off: %w", ctx.Err())
	}
}

func (m *machine) Kill() error {
	if m.exited() {
		return nil
	}
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	if m.vm.CanStop() {
		if err := m.vm.Stop(); err != nil && !m.exited() {
			return fmt.Errorf("stop vm: %w", err)
		}
	}
	<-m.done
	return nil
}

func (m *machine) Wait() error {
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	return m.exitErr
}
