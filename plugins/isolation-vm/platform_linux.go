package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/qemu"
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
	waitGone(pid, 30*time.Second)
}

// waitGone returns once pid has exited (a pidfd becomes readable) or the
// deadline passes; without pidfds it polls.
func waitGone(pid int, d time.Duration) {
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, int(d.Milliseconds()))
			if !errors.Is(err, unix.EINTR) {
				return
			}
		}
	} else if errors.Is(err, unix.ESRCH) {
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			return
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
