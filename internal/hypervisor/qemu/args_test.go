package qemu

import (
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// argAfter returns every value following flag in args.
func argAfter(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

func TestArgs(t *testing.T) {
	cfg := hypervisor.Config{
		Kernel: "/k/vmlinux", Initrd: "/k/initrd", Cmdline: []string{"quiet", "console=hvc0"},
		CPUs: 2, MemoryBytes: 512 << 20,
		Disks:      []hypervisor.Disk{{Path: "/d/root,1.img", ReadOnly: true}, {Path: "/d/rw.qcow2", Format: "qcow2"}},
		Shares:     []hypervisor.Share{{Tag: "vol", Path: "/srv/vol", ReadOnly: true}},
		NICs:       []hypervisor.NIC{{TAP: "tap0", MAC: "02:00:00:00:00:01"}, {Socket: "/r/user,net.sock"}},
		ConsoleLog: "/r/console.log", RunDir: "/r", MemoryFile: "/r/ram", Balloon: true,
	}
	micro := machine{Type: "microvm", Arch: "amd64", Accel: "tcg", TBSizeMiB: 16, TSCkHz: 2596132}
	a := micro.args(cfg, true)
	for flag, want := range map[string][]string{
		"-machine": {"microvm,memory-backend=mem"},
		"-accel":   {"tcg,thread=multi,tb-size=16"},
		"-m":       {"512M"},
		"-smp":     {"2"},
		"-object":  {"memory-backend-file,id=mem,size=512M,mem-path=/r/ram,share=on"},
		"-append":  {"quiet console=hvc0 berth.agent=vport tsc_early_khz=2596132"},
		"-drive": {"file=/d/root,,1.img,if=none,id=disk0,format=raw,cache=writeback,aio=threads,discard=unmap,readonly=on",
			"file=/d/rw.qcow2,if=none,id=disk1,format=qcow2,cache=writeback,aio=threads,discard=unmap"},
		"-fsdev": {"local,id=fs0,path=/srv/vol,security_model=none,multidevs=remap,readonly=on"},
		"-netdev": {"tap,id=net0,ifname=tap0,script=no,downscript=no",
			"stream,id=net1,server=off,addr.type=unix,addr.path=/r/user,,net.sock"},
		"-incoming": {"defer"},
	} {
		if got := argAfter(a, flag); !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", flag, got, want)
		}
	}
	devs := strings.Join(argAfter(a, "-device"), " ")
	for _, d := range []string{"virtio-serial-device,id=vser", "virtserialport,bus=vser.0,chardev=agent,name=org.berth.agent",
		"virtio-blk-device,drive=disk0", "virtio-9p-device,fsdev=fs0,mount_tag=vol", "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01",
		"virtio-balloon-device,id=balloon0,free-page-reporting=on"} {
		if !strings.Contains(devs, d) {
			t.Errorf("devices %q lack %q", devs, d)
		}
	}

	q35 := machine{Type: "q35", Arch: "amd64", Accel: "kvm"}
	plain := cfg
	plain.MemoryFile, plain.Balloon = "", false
	a = q35.args(plain, false)
	if got := argAfter(a, "-machine"); !slices.Equal(got, []string{"q35"}) {
		t.Errorf("q35 machine %q", got)
	}
	if got := argAfter(a, "-accel"); !slices.Equal(got, []string{"kvm"}) {
		t.Errorf("kvm accel %q", got)
	}
	if got := argAfter(a, "-append")[0]; strings.Contains(got, "tsc_early_khz") {
		t.Errorf("q35/kvm cmdline has tsc_early_khz: %q", got)
	}
	if slices.Contains(a, "-incoming") || slices.Contains(a, "-object") {
		t.Errorf("plain start has -incoming or a memory object: %q", a)
	}
	if !strings.Contains(strings.Join(argAfter(a, "-device"), " "), "virtio-blk-pci,drive=disk0") {
		t.Errorf("q35 uses virtio-pci: %q", a)
	}
	p := q35.platform()
	if !slices.Contains(p.Modules, "virtio_pci") || slices.Contains(p.Modules, "virtio_mmio") {
		t.Errorf("q35 modules %q", p.Modules)
	}
	if p := micro.platform(); p.Name != "qemu-microvm" || !slices.Contains(p.Modules, "virtio_mmio") {
		t.Errorf("microvm platform %+v", p)
	}
}

func TestShellQuote(t *testing.T) {
	if got := shellQuote("/a b/it's"); got != `'/a b/it'\''s'` {
		t.Fatalf("got %s", got)
	}
}

// TestArgsARM64 is the arm64 guest's device model (the macOS guest, run
// under qemu-system-aarch64): virt with virtio-pci, the PL011 console, a
// cheap pointer-auth under TCG, no x86 timer arguments or power button.
func TestArgsARM64(t *testing.T) {
	virt := machine{Type: "virt", Arch: "arm64", Accel: "tcg", TBSizeMiB: 16}
	cfg := hypervisor.Config{Kernel: "/k/Image", Initrd: "/k/initrd", CPUs: 1, MemoryBytes: 256 << 20,
		Disks: []hypervisor.Disk{{Path: "/d/root.img"}}, ConsoleLog: "/r/console.log", RunDir: "/r", Balloon: true}
	a := virt.args(cfg, false)
	for flag, want := range map[string][]string{
		"-machine": {"virt,gic-version=max"},
		"-cpu":     {"max,pauth-impdef=on"},
		"-kernel":  {"/k/Image"},
		"-append":  {"console=ttyAMA0 berth.agent=vport"},
	} {
		if got := argAfter(a, flag); !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", flag, got, want)
		}
	}
	devs := strings.Join(argAfter(a, "-device"), " ")
	for _, d := range []string{"virtio-serial-pci,id=vser", "virtio-blk-pci,drive=disk0", "virtio-balloon-pci"} {
		if !strings.Contains(devs, d) {
			t.Errorf("devices %q lack %q", devs, d)
		}
	}
	if slices.Contains(a, "-global") {
		t.Errorf("virt has microvm's virtio-mmio global: %q", a)
	}
	p := virt.platform()
	if p.Name != "qemu-virt" || p.Arch != "arm64" || p.Modules[0] != "virtio_pci" || slices.Contains(p.Modules, "button") {
		t.Errorf("virt platform %+v", p)
	}
	kvm := machine{Type: "virt", Arch: "arm64", Accel: "kvm"}
	if got := argAfter(kvm.args(cfg, false), "-cpu"); !slices.Equal(got, []string{"max"}) {
		t.Errorf("virt on kvm: -cpu %q (pauth-impdef is a TCG property)", got)
	}
}

// TestNewGuestArch: a guest of another architecture than the host's runs
// under TCG (kvm is refused with a clear error), an unknown one is refused.
func TestNewGuestArch(t *testing.T) {
	foreign := "arm64"
	if runtime.GOARCH == "arm64" {
		foreign = "amd64"
	}
	_, err := New(Options{Arch: foreign, Accel: "kvm"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), foreign) {
		t.Errorf("kvm for a foreign %s guest: %v, want InvalidArgument naming it", foreign, err)
	}
	if _, err := New(Options{Arch: "riscv64"}); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("riscv64 guest: %v, want NotImplemented naming it", err)
	}
	bin := map[string]string{"arm64": "qemu-system-aarch64", "amd64": "qemu-system-x86_64"}[foreign]
	if _, err := exec.LookPath(bin); err != nil {
		t.Skipf("%s missing (scripts/install-deps.sh installs it)", bin)
	}
	d, err := New(Options{Arch: foreign})
	if err != nil {
		t.Fatal(err)
	}
	if p := d.Platform(); p.Arch != foreign || p.Accel != "tcg" {
		t.Errorf("foreign guest platform %+v: want %s under tcg", p, foreign)
	}
}
