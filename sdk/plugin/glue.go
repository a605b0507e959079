package plugin

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// GRPCPlugin is the go-plugin glue shared by every layer. A layer package
// fills Register (its gRPC service over an implementation) and NewClient
// (its typed client over a connection); the Base contract is served and
// dialled here, so all layers have the same shape.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served; nil on the host side.
	Impl Base
	// Register adds the layer's gRPC service for Impl to s.
	Register func(s *grpc.Server, impl Base)
	// NewClient returns the layer's typed client over conn.
	NewClient func(conn *grpc.ClientConn) any
}

var _ goplugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer implements goplugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(broker *goplugin.GRPCBroker, s *grpc.Server) error {
	RegisterBaseServer(s, p.Impl, broker)
	p.Register(s, p.Impl)
	return nil
}

// GRPCClient implements goplugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return p.NewClient(conn), nil
}

// ClientBase is embedded in every layer's typed client: the plugin's Base
// contract and the raw connection (the core forwards brokered handles over
// it).
type ClientBase struct {
	*BaseClient
	conn *grpc.ClientConn
}

// NewClientBase wraps conn.
func NewClientBase(conn *grpc.ClientConn) ClientBase {
	return ClientBase{BaseClient: NewBaseClient(conn), conn: conn}
}

// Conn returns the connection the client uses.
func (c ClientBase) Conn() *grpc.ClientConn { return c.conn }

// Client is what every layer's typed client offers besides its layer calls.
type Client interface {
	Base
	HandleWatcher
	ConfigureWithHandles(ctx context.Context, req ConfigureRequest, handleIDs map[string]uint32) error
	Conn() *grpc.ClientConn
}
