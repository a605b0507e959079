package lifecycle

import (
	"context"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
)

// NetworkConnect is a request of docker network connect.
type NetworkConnect struct {
	// Network is a network's name, ID or ID prefix.
	Network string
	// IP is the address wanted on it; empty allocates one.
	IP string
	// Aliases are further DNS names of the container on that network.
	Aliases []string
}

// NetworkConnector is implemented by managers that attach running
// containers to further networks (docker network connect/disconnect). The
// Client always implements it; a manager without it answers
// NotImplemented.
type NetworkConnector interface {
	// ConnectNetwork gives running (or paused) container ref an interface
	// and an endpoint (address, DNS names) on a further network; its
	// /etc/hosts stays as it is. AlreadyExists when it is connected
	// already; NotImplemented when its isolation mode cannot (VMs).
	ConnectNetwork(ctx context.Context, ref string, req NetworkConnect) error
	// DisconnectNetwork takes away what ConnectNetwork added: interface,
	// endpoint, address. NotFound when ref is not connected to network;
	// the network the container was created on stays until it is removed.
	DisconnectNetwork(ctx context.Context, ref, network string) error
}

var _ NetworkConnector = (*Client)(nil)

// ConnectNetwork implements NetworkConnector.
func (c *Client) ConnectNetwork(ctx context.Context, ref string, req NetworkConnect) error {
	_, err := c.c.ConnectNetwork(ctx, &pb.ConnectNetworkRequest{Ref: ref, Network: req.Network, Ip: req.IP, Aliases: req.Aliases})
	return errdefs.FromGRPC(err)
}

// DisconnectNetwork implements NetworkConnector.
func (c *Client) DisconnectNetwork(ctx context.Context, ref, network string) error {
	_, err := c.c.DisconnectNetwork(ctx, &pb.DisconnectNetworkRequest{Ref: ref, Network: network})
	return errdefs.FromGRPC(err)
}

func (s *server) ConnectNetwork(ctx context.Context, r *pb.ConnectNetworkRequest) (*pb.ConnectNetworkResponse, error) {
	nc, ok := s.impl.(NetworkConnector)
	if !ok {
		return nil, errdefs.ToGRPC(errdefs.NotImplemented("this lifecycle plugin cannot connect containers to further networks"))
	}
	if r.Ref == "" || r.Network == "" {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("connect: a container and a network are required"))
	}
	if err := nc.ConnectNetwork(ctx, r.Ref, NetworkConnect{Network: r.Network, IP: r.Ip, Aliases: r.Aliases}); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.ConnectNetworkResponse{}, nil
}

func (s *server) DisconnectNetwork(ctx context.Context, r *pb.DisconnectNetworkRequest) (*pb.DisconnectNetworkResponse, error) {
	nc, ok := s.impl.(NetworkConnector)
	if !ok {
		return nil, errdefs.ToGRPC(errdefs.NotImplemented("this lifecycle plugin cannot disconnect containers from networks"))
	}
	if r.Ref == "" || r.Network == "" {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("disconnect: a container and a network are required"))
	}
	if err := nc.DisconnectNetwork(ctx, r.Ref, r.Network); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.DisconnectNetworkResponse{}, nil
}
