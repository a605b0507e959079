package snapshot

import (
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/internal/gen/snapshotv1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// NewPlugin returns the go-plugin glue serving impl.
func NewPlugin(impl Snapshotter) *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Impl: impl, Register: register, NewClient: newClientAny}
}

// ClientPlugin returns the go-plugin glue the host dispenses clients with.
func ClientPlugin() *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Register: register, NewClient: newClientAny}
}

func register(s *grpc.Server, impl plugin.Base) {
	snapshotv1.RegisterSnapshotsServer(s, &server{impl: impl.(Snapshotter)})
}

func newClientAny(conn *grpc.ClientConn) any { return NewClient(conn) }

// FromHandles returns snapshotter name ("overlay", "ext4"), which the core
// brokered to this plugin (isolation and lifecycle are given the
// snapshotters bound to them).
func FromHandles(h *plugin.Handles, name string) (*Client, error) {
	conn, err := h.Dial(plugin.HandleSnapshotPrefix + name)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}
