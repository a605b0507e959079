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
// ctx is cancelled by go-plugin when the plugin process exits; the client
// exposes it as Done.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, broker *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	c := p.NewClient(conn)
	if b, ok := c.(interface {
		setDispensed(context.Context, *goplugin.GRPCBroker)
	}); ok {
		b.setDispensed(ctx, broker)
	}
	return c, nil
}

// ClientBase is embedded in every layer's typed client: the plugin's Base
// contract and the raw connection (the core forwards brokered handles over
// it).
type ClientBase struct {
	*BaseClient
	conn   *grpc.ClientConn
	broker *goplugin.GRPCBroker
	done   context.Context
}

// NewClientBase wraps conn.
func NewClientBase(conn *grpc.ClientConn) ClientBase {
	return ClientBase{BaseClient: NewBaseClient(conn), conn: conn}
}

// Conn returns the connection the client uses.
func (c *ClientBase) Conn() *grpc.ClientConn { return c.conn }

// Broker returns the go-plugin broker of the plugin's connection, through
// which the core serves the plugin its handles; nil for a client that was
// not dispensed by go-plugin (a brokered handle, a test connection).
func (c *ClientBase) Broker() *goplugin.GRPCBroker { return c.broker }

// Done is closed when the plugin process exits; nil (never closed) for a
// client that was not dispensed by go-plugin.
func (c *ClientBase) Done() <-chan struct{} {
	if c.done == nil {
		return nil
	}
	return c.done.Done()
}

func (c *ClientBase) setDispensed(done context.Context, b *goplugin.GRPCBroker) {
	c.done, c.broker = done, b
}

// Client is what every layer's typed client offers besides its layer calls.
type Client interface {
	Base
	HandleWatcher
	ConfigureWithHandles(ctx context.Context, req ConfigureRequest, handleIDs map[string]uint32, info map[string]HandleInfo) error
	Conn() *grpc.ClientConn
	Broker() *goplugin.GRPCBroker
	Done() <-chan struct{}
}
