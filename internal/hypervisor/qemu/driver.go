// Package qemu is the Linux hypervisor.Driver: one qemu-system process per
// VM, controlled over QMP, started as a child of the caller that dies with
// the thread that started it (Pdeathsig).
//
// The machine is microvm on x86_64 (virtio-mmio, PVH boot of an ELF
// vmlinux; measured faster to boot than q35 here, see NOTES) and virt on
// arm64 (virtio-pci, an uncompressed arm64 Image, console ttyAMA0). KVM is
// used when /dev/kvm opens read-write, TCG otherwise; a guest of another
// architecture than the host's (Options.Arch: the arm64 guest of macOS,
// proven on an x86_64 host) always runs under TCG.
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// DefaultTBSizeMiB is the TCG translation cache used unless Options say
// otherwise: qemu 7.2's default is 1 GiB of address space of which an idle
// micro-VM touches 30-40 MB; 16 MiB keeps idle RSS down at no measurable
// cost to boot time (see NOTES for the numbers).
const DefaultTBSizeMiB = 16

// Options configure a driver. The zero value picks everything.
type Options struct {
	// Binary is the qemu-system executable (default: qemu-system-x86_64 or
	// qemu-system-aarch64 for the guest's architecture, from PATH).
	Binary string
	// Arch is the guest's architecture as GOARCH, "amd64" or "arm64"
	// (default: the host's). A foreign guest runs under TCG: Accel "kvm"
	// is refused for it.
	Arch string
	// Machine is "microvm" or "q35" on x86_64, "virt" on arm64 (default:
	// microvm / virt).
	Machine string
	// Accel is "kvm", "tcg" or "": kvm when /dev/kvm opens read-write and
	// a paused qemu starts on it (a ~0.1-0.5 s probe, once per process;
	// set Accel to skip it).
	Accel string
	// TBSizeMiB is TCG's translation cache size (default DefaultTBSizeMiB;
	// negative: qemu's own default).
	TBSizeMiB int
	// Logger receives the driver's messages (default: hclog.NewNullLogger).
	Logger hclog.Logger
}

type driver struct {
	bin string
	m   machine
	log hclog.Logger
}

var _ hypervisor.Driver = (*driver)(nil)

// New returns a driver for this host, or an error naming what is missing
// (the qemu binary, the TSC frequency microvm needs under TCG).
func New(opts Options) (hypervisor.Driver, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := machine{Arch: opts.Arch, Type: opts.Machine, Accel: opts.Accel, TBSizeMiB: opts.TBSizeMiB}
	if m.Arch == "" {
		m.Arch = runtime.GOARCH
	}
	foreign := m.Arch != runtime.GOARCH
	bin := opts.Binary
	switch m.Arch {
	case "amd64":
		if bin == "" {
			bin = "qemu-system-x86_64"
		}
		if m.Type == "" {
			m.Type = "microvm"
		}
		if m.Type != "microvm" && m.Type != "q35" {
			return nil, errdefs.InvalidArgument("qemu: machine %q: want microvm or q35 on x86_64", m.Type)
		}
	case "arm64":
		if bin == "" {
			bin = "qemu-system-aarch64"
		}
		if m.Type == "" {
			m.Type = "virt"
		}
		if m.Type != "virt" {
			return nil, errdefs.InvalidArgument("qemu: machine %q: want virt on arm64", m.Type)
		}
	default:
		return nil, errdefs.NotImplemented("qemu: guest architecture %q is not supported (want amd64 or arm64)", m.Arch)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, errdefs.Unavailable("qemu: %s not found (install the qemu-system package): %v", bin, err)
	}
	switch m.Accel {
	case "":
		m.Accel = "tcg"
		if !foreign && kvmUsable() {
			if err := probeKVM(path, m.Type); err != nil {
				log.Warn("/dev/kvm is there but qemu cannot run a vCPU on it; using TCG", "error", err)
			} else {
				m.Accel = "kvm"
			}
		}
	case "kvm":
		if foreign {
			return nil, errdefs.InvalidArgument("qemu: accel kvm cannot run an %s guest on this %s host (use tcg)", m.Arch, runtime.GOARCH)
		}
	case "tcg":
	default:
		return nil, errdefs.InvalidArgument("qemu: accel %q: want kvm or tcg", m.Accel)
	}
	if m.Accel == "tcg" {
		log.Warn("no usable /dev/kvm: qemu runs VMs under TCG emulation, which is slow")
		if m.TBSizeMiB == 0 {
			m.TBSizeMiB = DefaultTBSizeMiB
		}
		if m.Type == "microvm" {
			khz, err := hostTSCkHz()
			if err != nil {
				return nil, errdefs.Unavailable("qemu: microvm under TCG needs the host TSC frequency: %v (use machine q35)", err)
			}
			m.TSCkHz = khz
		}
	}
	m.TBSizeMiB = max(m.TBSizeMiB, 0)
	return &driver{bin: path, m: m, log: log.With("machine", m.Type, "accel", m.Accel)}, nil
}

func (d *driver) Platform() hypervisor.Platform { return d.m.platform() }

// kvmUsable reports whether /dev/kvm opens read-write.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

var (
	probeMu   sync.Mutex
	probeMemo = map[string]error{}
)

// probeKVM starts qemu on KVM with the vCPU model Start uses, paused, and
// quits it: some nested hosts offer a /dev/kvm on which qemu aborts setting
// up the vCPU (MSR 0x10a here). The answer is remembered per process.
func probeKVM(bin, machineType string) error {
	probeMu.Lock()
	defer probeMu.Unlock()
	key := bin + " " + machineType
	if err, ok := probeMemo[key]; ok {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-machine", machineType, "-accel", "kvm", "-cpu", "max", "-smp", "1", "-m", "64M",
		"-nodefaults", "-no-user-config", "-display", "none", "-S", "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		err = fmt.Errorf("qemu -accel kvm: %v: %s", err, lines[len(lines)-1])
	}
	probeMemo[key] = err
	return err
}

var cpuMHz = regexp.MustCompile(`^cpu MHz\s*:\s*([0-9.]+)`)

// hostTSCkHz reads the TSC frequency: the tsc_khz sysfs file where the
// kernel exposes it, else the first "cpu MHz" of /proc/cpuinfo (the TSC
// rate on constant-TSC CPUs and in VMs).
func hostTSCkHz() (int, error) {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_khz"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n, nil
		}
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := cpuMHz.FindStringSubmatch(s.Text()); m != nil {
			mhz, err := strconv.ParseFloat(m[1], 64)
			if err != nil || mhz <= 0 {
				return 0, fmt.Errorf("/proc/cpuinfo: bad cpu MHz %q", m[1])
			}
			return int(mhz*1000 + 0.5), nil
		}
	}
	return 0, errors.New("/proc/cpuinfo has no cpu MHz line")
}

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// check validates cfg for qemu beyond hypervisor.Config.Validate.
func (d *driver) check(cfg hypervisor.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for i, n := range cfg.NICs {
		if n.Socket == "" && !ifnameRE.MatchString(n.TAP) {
			return errdefs.InvalidArgument("vm config: nic %d: tap name %q: want an interface name of 1-15 characters (or a user-mode network socket)", i, n.TAP)
		}
	}
	return probeSockets(cfg) // usernet.go
}

func (d *driver) Start(ctx context.Context, cfg hypervisor.Config) (hypervisor.Machine, error) {
	if err := d.check(cfg); err != nil {
		return nil, err
	}
	m, err := d.launch(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (d *driver) Restore(ctx context.Context, cfg hypervisor.Config, dir string) (hypervisor.Machine, error) {
	if err := d.check(cfg); err != nil {
		return nil, err
	}
	ck, err := hypervisor.ReadCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	if err := ck.Matches(d.Platform(), cfg); err != nil {
		return nil, err
	}
	if ck.SharedRAM {
		if _, err := os.Stat(cfg.MemoryFile); err != nil {
			return nil, errdefs.InvalidArgument("restore %s: the checkpoint keeps guest RAM in the memory file: %v", dir, err)
		}
	}
	if ck.RAMBackend && !ck.SharedRAM && cfg.MemoryFile == "" {
		// Saved from a private mapping (a VM started from a template): the
		// RAM is in the state, but its block is the file backend's. A
		// private mapping of an empty sparse file gives it one.
		ram, err := emptyRAMFile(cfg)
		if err != nil {
			return nil, err
		}
		defer os.Remove(ram) // mapped by qemu once it runs
		cfg.MemoryFile, cfg.MemoryPrivate = ram, true
	}
	m, err := d.launch(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	if err := m.incoming(ctx, dir, ck); err != nil {
		m.Kill()
		m.Wait()
		if !errors.Is(err, hypervisor.ErrExited) { // else the error quotes qemu already
			err = fmt.Errorf("%w%s", err, m.stderrSuffix())
		}
		return nil, fmt.Errorf("restore %s: %w", dir, err)
	}
	return m, nil
}
