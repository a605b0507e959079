// Command snapshot-overlay is Berth's Linux snapshotter for sandboxes
// (layer 3): one directory per snapshot, presented as overlayfs mounts.
package main

import (
	"github.com/berth-dev/berth/plugins/snapshot-overlay/overlay"
	"github.com/berth-dev/berth/sdk"
)

func main() { sdk.Serve(overlay.New) }
