// Command isolation-sandbox is Berth's sandbox isolation plugin (layer 2):
// on Linux, containers in namespaces with seccomp and Docker's default
// capabilities (internal/sandbox), each owned by a per-container
// supervisor (internal/sandbox/supervisor, run by the small
// berth-sandbox-init binary).
package main

import "github.com/berth-dev/berth/sdk"

func main() {
	if benchRequested() {
		benchMain()
		return
	}
	sdk.Serve(newRuntime)
}
