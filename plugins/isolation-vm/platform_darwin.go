package main

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/vz"
	"github.com/berth-dev/berth/internal/procwait"
)

// newDriver is Virtualization.framework on darwin: the VM lives inside
// the supervisor process (which must carry the
// com.apple.security.virtualization entitlement: the Makefile signs the
// plugin binary with vm.entitlements).
func newDriver(_ bootConfig, log hclog.Logger) (hypervisor.Driver, error) {
	return vz.New(log)
}

// killVM: a vz VM dies with its supervisor, so nothing outlives it; a
// supervisor still there (it should not be) is killed after checking the
// pid still runs our supervise command for taskDir.
func killVM(pid int, taskDir string) {
	out, err := exec.Command("ps", "-o", "command=", "-p", strconv.Itoa(pid)).Output()
	if err != nil || !strings.Contains(string(out), taskDir) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	procwait.Gone(pid, 30*time.Second)
}
