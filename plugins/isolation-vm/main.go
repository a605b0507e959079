// Command isolation-vm is Berth's VM isolation plugin (layer 2, mode vm):
// every container runs in its own micro-VM (qemu on Linux, KVM when there
// is one, TCG otherwise; Virtualization.framework on macOS), whose PID 1 is
// the guest agent (plugins/isolation-vm/guest). Each task is owned by a
// per-container supervisor, this same binary started as
// `isolation-vm supervise`, which owns the VM, holds the agent connection
// and writes the container log; the plugin reaches the agent through it.
package main

import (
	"os"

	"github.com/berth-dev/berth/sdk"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		superviseMain(os.Args[2:])
		return
	}
	if benchMain(os.Args[1:]) {
		return
	}
	sdk.Serve(newRuntime)
}
