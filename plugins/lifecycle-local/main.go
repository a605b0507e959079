// Command lifecycle-local is Berth's lifecycle layer (layer 4): containers
// as a persisted state machine (bbolt, under the plugin's state dir),
// created, run, paused, checkpointed and removed by driving the image
// service, snapshotters, resources and isolation through the handles the
// core brokers to it, with restart policies, reconciliation after restarts
// and an event stream.
package main

import (
	"github.com/berth-dev/berth/plugins/lifecycle-local/manager"
	"github.com/berth-dev/berth/sdk"
)

func main() { sdk.Serve(manager.New) }
