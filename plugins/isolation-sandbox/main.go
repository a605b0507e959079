// Command isolation-sandbox is Berth's sandbox isolation plugin (layer 2):
// on Linux, containers in namespaces with seccomp and Docker's default
// capabilities (internal/sandbox); on darwin, darwin-native workloads
// confined by Seatbelt. Each task is owned by a per-container supervisor
// (internal/sandbox/supervisor: the small berth-sandbox-init binary on
// Linux, this binary started as `isolation-sandbox supervise` on darwin).
package main

import "github.com/berth-dev/berth/sdk"

func main() {
	if maybeSupervise() {
		return
	}
	if benchRequested() {
		benchMain()
		return
	}
	sdk.Serve(newRuntime)
}
