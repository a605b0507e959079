//go:build linux

// Command berth-sandbox-init is the first process of every Berth sandbox
// container and of every process exec'd into one: the sandbox runtime
// (internal/sandbox) starts it from a protected copy (a detached read-only
// bind mount or a sealed memfd), it sets the container up in runc's order
// and execs the workload. The same small binary is each container's
// supervisor (`berth-sandbox-init supervise`, internal/sandbox/supervisor)
// and compiles seccomp profiles (`seccomp-compile`). It is never run by
// hand.
package main

import (
	"os"
	"runtime"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/hostsys"
	_ "github.com/berth-dev/berth/internal/sandbox/nsenter" // joins namespaces before the Go runtime starts (exec)
	"github.com/berth-dev/berth/internal/sandbox/seccomp"
	"github.com/berth-dev/berth/internal/sandbox/supervisor"
)

// Capabilities, no_new_privs and seccomp are per thread: everything runs on
// the main thread, which execs the workload.
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "seccomp-compile":
			seccomp.CompileMain()
		case "supervise":
			supervisor.Main(os.Args[2:])
		}
	}
	sandbox.InitMain(hostsys.Sys{})
}
