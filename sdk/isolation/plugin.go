package isolation

import (
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/internal/gen/isolationv1"
	"github.com/berth-dev/berth/sdk/plugin"
)

// NewPlugin returns the go-plugin glue serving impl.
func NewPlugin(impl Runtime) *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Impl: impl, Register: register, NewClient: newClientAny}
}

// ClientPlugin returns the go-plugin glue the host dispenses clients with.
func ClientPlugin() *plugin.GRPCPlugin {
	return &plugin.GRPCPlugin{Register: register, NewClient: newClientAny}
}

func register(s *grpc.Server, impl plugin.Base) {
	isolationv1.RegisterIsolationServer(s, &server{impl: impl.(Runtime)})
}

func newClientAny(conn *grpc.ClientConn) any { return NewClient(conn) }

// FromHandles returns the isolation runtime of mode ("sandbox", "vm",
// "hybrid") the core brokered to this plugin (lifecycle is given one per
// configured mode).
func FromHandles(h *plugin.Handles, mode string) (*Client, error) {
	conn, err := h.Dial(plugin.HandleIsolationPrefix + mode)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}
