// Command resources-procfs is an example resources plugin written against
// the SDK alone: it records the resource use of the processes attached to
// its groups by reading /proc, and enforces no limits. See controller.go.
package main

import "github.com/berth-dev/berth/sdk"

func main() { sdk.Serve(New) }
