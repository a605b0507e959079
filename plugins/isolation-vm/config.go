//go:build linux || darwin

package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/schema"
)

// settings are the plugin's block of config.hcl.
type settings struct {
	// Kernel is a kernel release in the kernel store (`berth system kernel
	// ls`) or the path of a kernel (an ELF vmlinux on x86_64, an Image on
	// arm64); empty: the store's default kernel.
	Kernel *string `json:"kernel"`
	// Initrd overrides the initramfs the plugin builds.
	Initrd *string `json:"initrd"`
	// CPUs and Memory size a VM whose container sets no limits.
	CPUs   *int    `json:"cpus"`
	Memory *string `json:"memory"`
	// Agent is the guest agent (default: berth-vm-agent next to the plugin
	// binary or in its parent dir).
	Agent *string `json:"agent"`
	// SandboxInit is the static sandbox init put into the guest (default:
	// berth-sandbox-init, found as Agent is).
	SandboxInit *string `json:"sandbox_init"`
	// Machine is "auto", "microvm" or "q35" (x86_64 qemu).
	Machine *string `json:"machine"`
	// Accel is "auto", "kvm" or "tcg".
	Accel *string `json:"accel"`
	// KernelArgs are extra kernel command-line arguments.
	KernelArgs *[]string `json:"kernel_args"`
	// BootTimeout bounds a VM's boot up to the agent's first answer.
	BootTimeout *string `json:"boot_timeout"`
	// Templates starts VMs from pre-booted templates (template.go).
	Templates *bool `json:"templates"`
}

func configSchema() *schema.Spec {
	return schema.Object(map[string]*schema.Spec{
		"kernel":       schema.Attr("kernel", "string", false),
		"initrd":       schema.Attr("initrd", "string", false),
		"cpus":         schema.Attr("cpus", "number", false),
		"memory":       schema.Attr("memory", "string", false),
		"agent":        schema.Attr("agent", "string", false),
		"sandbox_init": schema.Attr("sandbox_init", "string", false),
		"machine":      schema.Attr("machine", "string", false),
		"accel":        schema.Attr("accel", "string", false),
		"kernel_args":  schema.Attr("kernel_args", "list(string)", false),
		"boot_timeout": schema.Attr("boot_timeout", "string", false),
		"templates":    schema.Attr("templates", "bool", false), // template.go
	})
}

// Defaults of the settings.
const (
	defaultCPUs        = 2
	defaultMemory      = 512 << 20
	defaultBootTimeout = 60 * time.Second
	// vmOverhead is added to a container's memory limit to size its VM:
	// the guest kernel, the agent and the page cache the rootfs needs.
	vmOverhead = 128 << 20
	// minMemory is the smallest VM the plugin makes.
	minMemory = 128 << 20
)

// vmDefaults are the resolved settings: boot assets and sizes.
type vmDefaults struct {
	Kernel, Initrd string
	// InitrdShares is the initramfs with the modules of directory shares,
	// for tasks with bind mounts.
	InitrdShares   string
	Cmdline        []string
	CPUs           int
	MemoryBytes    int64
	Machine, Accel string
	BootTimeout    time.Duration

	// InitrdNet and InitrdSharesNet add the NIC's driver (virtio_net),
	// for tasks with a bridge attachment (network.go).
	InitrdNet, InitrdSharesNet string
}

// decodeSizes checks the sizing settings; each error names the setting.
func (s settings) decodeSizes() (vmDefaults, error) {
	d := vmDefaults{CPUs: defaultCPUs, MemoryBytes: defaultMemory, BootTimeout: defaultBootTimeout}
	if s.CPUs != nil {
		if *s.CPUs < 1 || *s.CPUs > 64 {
			return d, errdefs.InvalidArgument("isolation vm: cpus = %d: want 1..64", *s.CPUs)
		}
		d.CPUs = *s.CPUs
	}
	if s.Memory != nil {
		n, err := units.RAMInBytes(*s.Memory)
		if err != nil || n < minMemory {
			return d, errdefs.InvalidArgument("isolation vm: memory = %q: want a size of at least 128MiB (\"512MiB\", \"1GiB\")", *s.Memory)
		}
		d.MemoryBytes = roundMiB(n)
	}
	if s.BootTimeout != nil {
		t, err := time.ParseDuration(*s.BootTimeout)
		if err != nil || t <= 0 {
			return d, errdefs.InvalidArgument("isolation vm: boot_timeout = %q: want a positive duration (\"60s\")", *s.BootTimeout)
		}
		d.BootTimeout = t
	}
	for _, p := range []struct {
		name string
		v    *string
		ok   []string
	}{{"machine", s.Machine, []string{"auto", "microvm", "q35"}}, {"accel", s.Accel, []string{"auto", "kvm", "tcg"}}} {
		if p.v != nil && !slices.Contains(p.ok, *p.v) {
			return d, errdefs.InvalidArgument("isolation vm: %s = %q: want one of %s", p.name, *p.v, strings.Join(p.ok, ", "))
		}
	}
	if s.Machine != nil && *s.Machine != "auto" {
		d.Machine = *s.Machine
	}
	if s.Accel != nil && *s.Accel != "auto" {
		d.Accel = *s.Accel
	}
	if s.KernelArgs != nil {
		for _, a := range *s.KernelArgs {
			if a == "" || strings.ContainsAny(a, " \t\n\"") {
				return d, errdefs.InvalidArgument("isolation vm: kernel_args: %q is empty or holds whitespace or quotes", a)
			}
		}
	}
	return d, nil
}

func roundMiB(n int64) int64 { return (n + (1<<20 - 1)) &^ (1<<20 - 1) }

// bootFor sizes and boots spec's VM. Sizing, in order:
//   - spec.VM's fields, when set (the user asked for this VM);
//   - else the container's own limits: CPUs = its CPU quota rounded up,
//     memory = its memory limit + vmOverhead (the guest kernel and agent),
//     so the limit enforced in the guest's cgroup fits in the VM;
//   - else the plugin's defaults (cpus, memory).
func (d vmDefaults) bootFor(spec isolation.Spec) bootConfig {
	initrd := d.Initrd
	if len(bindMounts(spec)) > 0 && d.InitrdShares != "" {
		initrd = d.InitrdShares
	}
	if hasNIC(spec) && d.InitrdNet != "" { // network_user.go
		initrd = d.InitrdNet
		if len(bindMounts(spec)) > 0 && d.InitrdSharesNet != "" {
			initrd = d.InitrdSharesNet
		}
	}
	b := bootConfig{Kernel: d.Kernel, Initrd: initrd, Cmdline: slices.Clone(d.Cmdline), CPUs: d.CPUs,
		MemoryBytes: d.MemoryBytes, Machine: d.Machine, Accel: d.Accel, BootTimeout: d.BootTimeout}
	if oci := spec.OCI; oci != nil && oci.Linux != nil && oci.Linux.Resources != nil {
		res := oci.Linux.Resources
		if c := res.CPU; c != nil && c.Quota != nil && *c.Quota > 0 && c.Period != nil && *c.Period > 0 {
			b.CPUs = max(1, int(math.Ceil(float64(*c.Quota)/float64(*c.Period))))
		}
		if m := res.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
			b.MemoryBytes = max(minMemory, roundMiB(*m.Limit+vmOverhead))
		}
	}
	if vm := spec.VM; vm != nil {
		if vm.CPUs > 0 {
			b.CPUs = vm.CPUs
		}
		if vm.MemoryBytes > 0 {
			b.MemoryBytes = max(minMemory, roundMiB(vm.MemoryBytes))
		}
		if vm.Kernel != "" {
			b.Kernel = vm.Kernel
		}
		if vm.Initrd != "" {
			b.Initrd = vm.Initrd
		}
		b.Cmdline = append(b.Cmdline, vm.KernelArgs...)
	}
	return b
}

// bindMounts are the spec's bind mounts of host directories (`-v`), which
// reach the guest as directory shares.
func bindMounts(spec isolation.Spec) []specs.Mount {
	if spec.OCI == nil {
		return nil
	}
	var out []specs.Mount
	for _, m := range spec.OCI.Mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			out = append(out, m)
		}
	}
	return out
}

// shareTag names the i-th share (9p mount tag).
func shareTag(i int) string { return fmt.Sprintf("berth%d", i) }

func isReadOnly(opts []string) bool { return slices.Contains(opts, "ro") }

// guestSpec is the OCI spec as the guest runs it: bind mounts leave it
// (they are shares the agent mounts), and the host's cgroup path means
// nothing inside the VM (the agent places the container).
func guestSpec(oci *specs.Spec) *specs.Spec {
	if oci == nil {
		return nil
	}
	g := *oci
	g.Mounts = slices.DeleteFunc(slices.Clone(oci.Mounts), func(m specs.Mount) bool {
		return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
	})
	if oci.Linux != nil {
		l := *oci.Linux
		l.CgroupsPath = ""
		g.Linux = &l
	}
	return &g
}
