//go:build linux

// Command berth-sandbox-init is the first process of every Berth sandbox
// container and of every process exec'd into one. The sandbox runtime
// (internal/sandbox) starts it from a sealed in-memory copy; it sets the
// container up in runc's order and execs the workload. It is never run by
// hand.
package main

import (
	"os"
	"runtime"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/hostsys"
	_ "github.com/berth-dev/berth/internal/sandbox/nsenter" // joins namespaces before the Go runtime starts (exec)
	"github.com/berth-dev/berth/internal/sandbox/seccomp"
)

// Capabilities, no_new_privs and seccomp are per thread: everything runs on
// the main thread, which execs the workload.
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "seccomp-compile" {
		seccomp.CompileMain()
	}
	sandbox.InitMain(hostsys.Sys{})
}
