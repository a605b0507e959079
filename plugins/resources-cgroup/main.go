// Command resources-cgroup is Berth's resources plugin for Linux: it puts
// each container in a cgroup (v1, hybrid or v2, detected at start), enforces
// its limits there, and reports usage and limit events through one shared
// monitor. See controller.go.
package main

import "github.com/berth-dev/berth/sdk"

func main() { sdk.Serve(New) }
