// Command isolation-sandbox is Berth's sandbox isolation plugin (layer 2):
// on Linux, containers in namespaces with seccomp and Docker's default
// capabilities (internal/sandbox), each owned by a per-container
// supervisor, which is this binary started as `isolation-sandbox supervise`.
package main

import "github.com/berth-dev/berth/sdk"

func main() {
	if superviseRequested() {
		supervise()
		return
	}
	if benchRequested() {
		benchMain()
		return
	}
	sdk.Serve(newRuntime)
}
