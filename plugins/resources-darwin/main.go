// Command resources-darwin is Berth's resources plugin for darwin sandbox
// containers, where no cgroups exist: limits are applied by a wrapper
// before exec (priority, IO policy, rlimits) and by one sampling engine
// (internal/rpolicy) that kills on the memory hard limit, backgrounds on
// the soft limit and duty-cycles CPU quotas. Run as "resources-darwin wrap
// [flags] -- command args..." it is that wrapper (see wrapper.go).
package main

import (
	"os"

	"github.com/berth-dev/berth/sdk"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == wrapCommand {
		os.Exit(runWrapper(os.Args[2:], os.Stderr))
	}
	sdk.Serve(New)
}
