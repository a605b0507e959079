// Command snapshot-ext4 is Berth's block snapshotter for VMs (layer 3):
// one ext4 image per committed layer chain, built with mkfs.ext4 -d, and a
// copy-on-write disk per container (reflink, or a qcow2 overlay), handed
// out as block mount descriptors. See package ext4.
package main

import (
	"github.com/berth-dev/berth/plugins/snapshot-ext4/ext4"
	"github.com/berth-dev/berth/sdk"
)

func main() { sdk.Serve(ext4.New) }
