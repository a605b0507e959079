package lifecycle

import (
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// NewPlugin returns the go-plugin glue serving impl.
func NewPlugin(impl Manager) *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Impl: impl, Register: register, NewClient: newClientAny}
}

// ClientPlugin returns the go-plugin glue the host dispenses clients with.
func ClientPlugin() *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Register: register, NewClient: newClientAny}
}

func register(s *grpc.Server, impl plugin.Base) {
	lifecyclev1.RegisterLifecycleServer(s, &server{impl: impl.(Manager)})
}

func newClientAny(conn *grpc.ClientConn) any { return NewClient(conn) }

// FromHandles returns the lifecycle manager the core brokered to this
// plugin (the API frontends are given it).
func FromHandles(h *plugin.Handles) (*Client, error) {
	conn, err := h.Dial(plugin.HandleLifecycle)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}
