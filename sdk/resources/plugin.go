package resources

import (
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/internal/gen/resourcesv1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// NewPlugin returns the go-plugin glue serving impl.
func NewPlugin(impl Controller) *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Impl: impl, Register: register, NewClient: newClientAny}
}

// ClientPlugin returns the go-plugin glue the host dispenses clients with.
func ClientPlugin() *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Register: register, NewClient: newClientAny}
}

func register(s *grpc.Server, impl plugin.Base) {
	resourcesv1.RegisterResourcesServer(s, &server{impl: impl.(Controller)})
}

func newClientAny(conn *grpc.ClientConn) any { return NewClient(conn) }

// FromHandles returns the resources controller the core brokered to this
// plugin (lifecycle is given one).
func FromHandles(h *plugin.Handles) (*Client, error) {
	conn, err := h.Dial(plugin.HandleResources)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}
