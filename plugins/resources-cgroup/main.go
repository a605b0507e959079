// Command resources-cgroup is Berth's resources plugin for Linux: it puts
// each container in a cgroup (v1, hybrid or v2, detected at start), enforces
// its limits there, and reports usage and limit events through one shared
// monitor. The controller is package cgroupctl. "resources-cgroup
// bench-cycle DIR" runs one benchmark cycle instead (bench.go).
package main

import (
	"os"

	"github.com/berth-dev/berth/plugins/resources-cgroup/cgroupctl"
	"github.com/berth-dev/berth/sdk"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == benchCommand {
		os.Exit(benchMain(os.Args[2:]))
	}
	sdk.Serve(cgroupctl.New)
}
