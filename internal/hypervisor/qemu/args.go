package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/hypervisor"
)

// machine is the qemu device model a driver builds: everything in the
// command line that does not come from a Config.
type machine struct {
	Type  string // "microvm", "q35", "virt"
	Arch  string // GOARCH of the guest
	Accel string // "kvm" or "tcg"
	// TBSizeMiB is TCG's translation-block cache (0: qemu's default).
	TBSizeMiB int
	// TSCkHz is passed to microvm guests under TCG as tsc_early_khz (0: not).
	TSCkHz int
	// diskCache overrides the disks' cache mode (tests measure the others).
	diskCache string
}

// Socket and file names inside Config.RunDir.
const (
	qmpSocket   = "qmp.sock"
	agentSocket = "agent.sock"
	stderrLog   = "qemu.log"
)

// bus is the virtio transport suffix of the machine's -device names.
func (m machine) bus() string {
	if m.Type == "microvm" {
		return "device" // virtio-mmio
	}
	return "pci"
}

// platform describes m for hypervisor.Driver.Platform.
func (m machine) platform() hypervisor.Platform {
	p := hypervisor.Platform{Name: "qemu-" + m.Type, Arch: m.Arch, Accel: m.Accel}
	console := "ttyS0"
	if m.Arch == "arm64" {
		console = "ttyAMA0"
	}
	p.KernelArgs = []string{"console=" + console, "berth.agent=vport"}
	if m.Type == "microvm" && m.Accel == "tcg" && m.TSCkHz > 0 {
		// microvm has no HPET/PM timer: under TCG the PIT calibration of the
		// TSC sometimes fails and the boot hangs (research file, section B).
		p.KernelArgs = append(p.KernelArgs, "tsc_early_khz="+strconv.Itoa(m.TSCkHz))
	}
	if m.bus() == "pci" {
		p.Modules = append(p.Modules, "virtio_pci")
	} else {
		p.Modules = append(p.Modules, "virtio_mmio")
	}
	p.Modules = append(p.Modules, "virtio_console", "virtio_blk", "virtio_balloon", "virtio_net", "9pnet_virtio", "9p")
	if m.Arch == "amd64" {
		// ACPI power button (system_powerdown) as an input device: the agent
		// powers off on KEY_POWER; nothing in the kernel does.
		p.Modules = append(p.Modules, "button", "evdev")
	}
	return p
}

// args is the qemu command line (without argv[0]) for cfg on m. incoming
// adds "-incoming defer" for a restore.
func (m machine) args(cfg hypervisor.Config, incoming bool) []string {
	b := m.bus()
	mem := strconv.FormatInt(cfg.MemoryBytes>>20, 10) + "M"
	mopts := m.Type
	if m.Type == "virt" {
		mopts += ",gic-version=max"
	}
	var a []string
	if cfg.MemoryFile != "" {
		mopts += ",memory-backend=mem"
		share := "on"
		if cfg.MemoryPrivate {
			share = "off" // MAP_PRIVATE: copy-on-write, the file is never written
		}
		a = append(a, "-object", "memory-backend-file,id=mem,size="+mem+",mem-path="+esc(cfg.MemoryFile)+",share="+share)
	}
	accel := "kvm"
	if m.Accel == "tcg" {
		accel = "tcg,thread=multi"
		if m.TBSizeMiB > 0 {
			accel += ",tb-size=" + strconv.Itoa(m.TBSizeMiB)
		}
	}
	cpu := "max"
	if m.Arch == "arm64" && m.Accel == "tcg" {
		// Pointer authentication with qemu's own cheap algorithm instead
		// of QARMA: the architected one dominates TCG time on arm64 guests
		// (qemu's docs); the guest cannot tell the difference.
		cpu += ",pauth-impdef=on"
	}
	a = append(a,
		"-machine", mopts, "-accel", accel, "-cpu", cpu,
		"-smp", strconv.Itoa(cfg.CPUs), "-m", mem,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", cfg.Kernel,
	)
	if cfg.Initrd != "" {
		a = append(a, "-initrd", cfg.Initrd)
	}
	a = append(a, "-append", hypervisor.KernelCmdline(cfg.Cmdline, m.platform().KernelArgs))
	if m.Type == "microvm" {
		// modern virtio-mmio (VERSION_1): 64-bit features, faster notifications.
		a = append(a, "-global", "virtio-mmio.force-legacy=false")
	}
	a = append(a,
		"-chardev", "file,id=con,path="+esc(cfg.ConsoleLog)+",append=on", "-serial", "chardev:con",
		"-chardev", "socket,id=qmp,path="+esc(filepath.Join(cfg.RunDir, qmpSocket))+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-device", "virtio-serial-"+b+",id=vser",
		"-chardev", "socket,id=agent,path="+esc(filepath.Join(cfg.RunDir, agentSocket))+",server=on,wait=off",
		"-device", "virtserialport,bus=vser.0,chardev=agent,name="+hypervisor.AgentPortName,
	)
	for i, d := range cfg.Disks {
		format := d.Format
		if format == "" {
			format = "raw"
		}
		// cache=writeback (qemu's default): works on every filesystem
		// (O_DIRECT, needed by cache=none, fails on tmpfs), honours guest
		// flushes, and shares a read-only base image's page cache between
		// VMs.
		cache := "writeback"
		if m.diskCache != "" {
			cache = m.diskCache
		}
		drive := fmt.Sprintf("file=%s,if=none,id=disk%d,format=%s,cache=%s,aio=threads,discard=unmap", esc(d.Path), i, format, cache)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-%s,drive=disk%d", b, i))
	}
	for i, s := range cfg.Shares {
		// security_model=none: guest ownership changes reach the host files
		// as far as qemu's user may make them (bind-mount semantics), never
		// stored in xattrs. A mounted 9p share blocks migration (Save).
		fs := fmt.Sprintf("local,id=fs%d,path=%s,security_model=none,multidevs=remap", i, esc(s.Path))
		if s.ReadOnly {
			fs += ",readonly=on"
		}
		a = append(a, "-fsdev", fs, "-device", fmt.Sprintf("virtio-9p-%s,fsdev=fs%d,mount_tag=%s", b, i, s.Tag))
	}
	for i, n := range cfg.NICs {
		dev := fmt.Sprintf("virtio-net-%s,netdev=net%d", b, i)
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		a = append(a, "-netdev", netdev(i, n), "-device", dev)
	}
	if cfg.Balloon {
		a = append(a, "-device", "virtio-balloon-"+b+",id=balloon0,free-page-reporting=on,deflate-on-oom=on")
	}
	if incoming {
		a = append(a, "-incoming", "defer")
	}
	return a
}

// netdev is the -netdev of NIC i: a tap interface, or a stream socket
// qemu connects to a user-mode network's unix socket (qemu ≥ 7.2; frames
// with a 4-byte big-endian length prefix).
func netdev(i int, n hypervisor.NIC) string {
	if n.Socket != "" {
		return fmt.Sprintf("stream,id=net%d,server=off,addr.type=unix,addr.path=%s", i, esc(n.Socket))
	}
	return fmt.Sprintf("tap,id=net%d,ifname=%s,script=no,downscript=no", i, esc(n.TAP))
}

// esc escapes a value for qemu's comma-separated option syntax.
func esc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// shellQuote quotes s for /bin/sh (migration exec: URIs).
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
