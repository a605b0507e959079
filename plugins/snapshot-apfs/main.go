// Command snapshot-apfs is Berth's darwin snapshotter for sandboxes
// (layer 3): every snapshot is a directory, a copy-on-write clone of its
// parent (clonefile on APFS; the same code uses reflinks on Linux).
package main

import (
	"github.com/berth-dev/berth/plugins/snapshot-apfs/apfs"
	"github.com/berth-dev/berth/sdk"
)

func main() { sdk.Serve(apfs.New) }
