package manager

import (
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
)

// imagesFromHandles adapts the core's image service (handle "images") to
// ImageSource. The service's Go contract (sdk/images) has no gRPC client in
// the tree yet; until it does, creating a container through the daemon
// fails with this error and nothing else is affected.
func imagesFromHandles(*plugin.Handles) (ImageSource, error) {
	return nil, errdefs.Unavailable("the image service (handle %q) has no client in this build of lifecycle-local yet", plugin.HandleImages)
}
