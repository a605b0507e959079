package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmkernel"
)

// The peer of the VM benchmark (bench/benchmarks.go, scripts/bench-vm.sh):
// a bare boot of the same kernel, with the same modules, the same machine
// and qemu options (this plugin's driver) and the same rootfs image, whose
// trivial init (internal/benchinit) runs the command and powers off.
//
//	isolation-vm bench-peer-setup -dir DIR -kernel VMLINUX -init BENCHINIT
//	isolation-vm bench-peer -dir DIR -rootfs IMAGE [-cmd sh,-c,echo hi]

func benchMain(args []string) bool {
	if len(args) == 0 {
		return false
	}
	var err error
	switch args[0] {
	case "bench-peer-setup":
		err = benchPeerSetup(args[1:])
	case "bench-peer":
		err = benchPeer(args[1:])
	default:
		return false
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolation-vm "+args[0]+":", err)
		os.Exit(1)
	}
	return true
}

// benchDefaults are the sizes of the plugin's defaults, which the
// benchmark's daemon uses too.
func benchBoot() bootConfig {
	return bootConfig{CPUs: defaultCPUs, MemoryBytes: defaultMemory, Accel: os.Getenv("BERTH_BENCH_ACCEL")}
}

func benchPeerSetup(args []string) error {
	fs := flag.NewFlagSet("bench-peer-setup", flag.ExitOnError)
	dir := fs.String("dir", "", "work dir")
	kernelImage := fs.String("kernel", "", "the kernel store's vmlinux")
	init := fs.String("init", "", "the trivial init (internal/benchinit)")
	_ = fs.Parse(args)
	drv, err := newDriver(benchBoot(), hclog.NewNullLogger())
	if err != nil {
		return err
	}
	k, err := vmkernel.OpenKernel(filepath.Dir(*kernelImage))
	if err != nil {
		return err
	}
	mods, err := guestModules(hclog.NewNullLogger(), k, drv.Platform(), false)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(*dir, "peer.cpio"))
	if err != nil {
		return err
	}
	defer f.Close()
	return vmkernel.BuildInitramfs(f, vmkernel.InitramfsSpec{Agent: *init, Modules: mods})
}

func benchPeer(args []string) error {
	fs := flag.NewFlagSet("bench-peer", flag.ExitOnError)
	dir := fs.String("dir", "", "work dir (bench-peer-setup's)")
	kernelImage := fs.String("kernel", "", "the kernel store's vmlinux")
	rootfs := fs.String("rootfs", "", "ext4 image")
	cmdline := fs.String("cmd", "/bin/echo,hi", "the command, comma-separated (no spaces: it rides the kernel command line)")
	_ = fs.Parse(args)
	drv, err := newDriver(benchBoot(), hclog.NewNullLogger())
	if err != nil {
		return err
	}
	run, err := os.MkdirTemp("", "bvmp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(run)
	console := filepath.Join(run, "console.log")
	b := benchBoot()
	cfg := hypervisor.Config{Kernel: *kernelImage, Initrd: filepath.Join(*dir, "peer.cpio"),
		Cmdline: append(append([]string(nil), tuningArgs...), "berth.cmd="+*cmdline),
		CPUs:    b.CPUs, MemoryBytes: b.MemoryBytes, Balloon: true,
		Disks:      []hypervisor.Disk{{Path: *rootfs, ReadOnly: true, Format: "raw"}},
		ConsoleLog: console, RunDir: run}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := drv.Start(ctx, cfg)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- m.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = m.Kill()
		<-done
		err = ctx.Err()
	}
	out, _ := os.ReadFile(console)
	if err != nil || !strings.Contains(string(out), "hi") {
		return fmt.Errorf("the peer VM did not print hi (%v): %s", err, lastLines(string(out), 5))
	}
	return nil
}
