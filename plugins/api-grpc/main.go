// Command api-grpc is Berth's public API frontend (layer 5): the gRPC API on
// a unix socket, forwarding to the core and the lifecycle layer through the
// handles the core brokers to it.
package main

import "github.com/berth-dev/berth/sdk"

func main() { sdk.Serve(newFrontend) }
