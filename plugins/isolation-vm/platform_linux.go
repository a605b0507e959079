package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/qemu"
	"github.com/berth-dev/berth/internal/procwait"
)

// newDriver is qemu on Linux: microvm unless the settings ask for q35,
// KVM when /dev/kvm is usable, TCG otherwise.
func newDriver(b bootConfig, log hclog.Logger) (hypervisor.Driver, error) {
	return qemu.New(qemu.Options{Machine: b.Machine, Accel: b.Accel, Logger: log})
}

// killVM kills a VM process a dead supervisor left behind, after checking
// the pid still is a hypervisor whose command line names the task dir
// (pids are reused).
func killVM(pid int, taskDir string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(b), taskDir) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	procwait.Gone(pid, 30*time.Second)
}
