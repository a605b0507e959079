// Package network is the contract of Berth's network service: the core's
// owner of networks, IP address management and name records, brokered to
// plugins as the "network" handle (plugin.HandleNetwork) and served on the
// public API by api-grpc.
//
// The service decides; it wires nothing into a container. A lifecycle
// plugin asks Attach for an endpoint when it creates a container and puts
// the returned isolation.NetworkAttachment in the task's spec; the isolation
// plugin builds the datapath (veth or TAP on the network's bridge) from it.
// Detach, when the container is deleted (or its create failed), releases the
// address, the name records and the published ports.
//
// Invariants every implementation keeps:
//   - An address is never given to two endpoints at once, also across
//     restarts of the service (allocations are persisted).
//   - A network with endpoints cannot be removed; Prune never removes the
//     default network.
//   - Detach of an unknown container succeeds (it is idempotent).
//   - Errors carry sdk/errdefs kinds: an unknown network is NotFound, a
//     taken name AlreadyExists, malformed or conflicting input
//     (bad CIDR, overlapping subnet, address outside the subnet or taken,
//     host port in use, malformed port) InvalidArgument naming the input,
//     and removing a network in use InvalidState naming its containers.
//
// The package holds only Go types; the wire protocol is in sdk/proto.
package network

import (
	"context"
	"time"

	"github.com/berth-dev/berth/sdk/isolation"
)

// Network names with a meaning of their own in AttachRequest.Network and on
// the command line.
const (
	// DefaultNetwork is the network a container joins when it names none;
	// it is created on first use.
	DefaultNetwork = "bridge"
	// None gives a container only a loopback interface.
	None = "none"
	// Host shares the host's network namespace.
	Host = "host"
)

// Attachment modes (isolation.NetworkAttachment.Mode).
const (
	ModeBridge = "bridge"
	ModeNone   = "none"
	ModeHost   = "host"
)

// HostGatewayName resolves, in every container on a network, to the
// network's gateway: the host as the container sees it.
const HostGatewayName = "host.berth.internal"

// HostGateway in an extra host entry's IP ("--add-host NAME:host-gateway")
// stands for the gateway of the container's network.
const HostGateway = "host-gateway"

// CapNetwork is the capability an api plugin declares when it serves the
// network service on its public endpoint.
const CapNetwork = "networks"

// Network is one network.
type Network struct {
	// ID is 64 hex digits.
	ID   string
	Name string
	// Bridge is the host interface containers attach to ("berth0" for the
	// default network, "br-<ID[:12]>" for others).
	Bridge string
	// Subnet in CIDR form ("10.88.0.0/16") and Gateway, its first host
	// address, which is the bridge's address, the containers' default
	// route and their DNS server.
	Subnet  string
	Gateway string
	// Internal networks have no route out of the host and no NAT.
	Internal  bool
	Labels    map[string]string
	CreatedAt time.Time
	// Containers lists the IDs of the containers attached, sorted.
	Containers []string
	// Warnings say what on the host stops the network working as it
	// should (another firewall chain dropping forwarded traffic).
	Warnings []string
}

// CreateSpec describes a network to create.
type CreateSpec struct {
	// Name is required: letters, digits, '_', '.', '-', starting with a
	// letter or digit, at most 64 characters; "none" and "host" are
	// reserved.
	Name string
	// Subnet in CIDR form; empty picks the next free /24 from 10.89.0.0
	// upward. It must not overlap another network's subnet.
	Subnet   string
	Internal bool
	Labels   map[string]string
}

// AttachRequest asks for an endpoint of container ContainerID.
type AttachRequest struct {
	ContainerID string
	// Name is the container's name; with Hostname and Aliases it is what
	// other containers on the network resolve to the endpoint's address.
	Name     string
	Hostname string
	Aliases  []string
	// Network is a network's name, ID or unique ID prefix; empty is
	// DefaultNetwork. None and Host are answered without an endpoint
	// (Mode none and host) and nothing is recorded.
	Network string
	// IP is the address wanted; empty allocates the next free one.
	IP string
	// Ports to publish; a HostPort of 0 picks a free port, an empty
	// HostIP means every address (0.0.0.0), an empty Protocol "tcp".
	Ports []isolation.PortMapping
	// DNS servers the network's resolver forwards the container's
	// queries for names outside the network to (Docker's --dns; resolv.conf
	// keeps the network's resolver), and search domains.
	DNS       []string
	DNSSearch []string
	// ExtraHosts become /etc/hosts lines; an IP of HostGateway is the
	// network's gateway.
	ExtraHosts []isolation.HostEntry
}

// Endpoint is a container's place on a network.
type Endpoint struct {
	ContainerID   string
	ContainerName string
	NetworkID     string
	Network       string
	Hostname      string
	Aliases       []string
	// IP is the container's address, PrefixLen the subnet's length.
	IP        string
	PrefixLen int
	MAC       string
	Gateway   string
	// Ports are the published ports as allocated (host ports resolved).
	Ports     []isolation.PortMapping
	CreatedAt time.Time
}

// Service is the network service.
type Service interface {
	// Create creates a network: its record, its datapath (bridge, NAT
	// rules) and its helper (DNS server, port proxies).
	Create(ctx context.Context, spec CreateSpec) (Network, error)
	// List lists every network, sorted by name.
	List(ctx context.Context) ([]Network, error)
	// Inspect describes the network ref names (name, ID or unique ID
	// prefix).
	Inspect(ctx context.Context, ref string) (Network, error)
	// Remove removes a network with no endpoints, with its datapath and
	// helper. Removing the default network is allowed when unused: it
	// comes back on next use.
	Remove(ctx context.Context, ref string) error
	// Prune removes every user network without endpoints (never the
	// default one) and returns their names.
	Prune(ctx context.Context) ([]string, error)
	// Attach gives a container an endpoint and returns the attachment its
	// isolation plugin wires. A container has at most one endpoint;
	// attaching it again with the same network returns the same endpoint.
	Attach(ctx context.Context, req AttachRequest) (isolation.NetworkAttachment, error)
	// Detach releases the container's endpoint: address, records, ports.
	// Detaching a container without one succeeds.
	Detach(ctx context.Context, containerID string) error
	// Rename changes the container name the endpoint answers to in DNS
	// (a renamed container). A container without an endpoint succeeds.
	Rename(ctx context.Context, containerID, name string) error
	// Connect gives container req.ContainerID, which has an endpoint
	// (Attach) already, a further one on network req.Network (docker
	// network connect): its own address (req.IP or allocated), DNS names
	// (container name, hostname, ID[:12], req.Aliases) and no published
	// ports (req.Ports must be empty). The attachment's one interface has
	// no name (the isolation plugin picks the next ethN) and no gateway
	// (the container keeps its default route). Connecting again to the
	// same network is idempotent; to its Attach network InvalidArgument; a
	// container without an endpoint InvalidState.
	Connect(ctx context.Context, req AttachRequest) (isolation.NetworkAttachment, error)
	// Disconnect releases container containerID's endpoint on network
	// ref that Connect made (address, records). NotFound when there is
	// none; InvalidArgument for the container's Attach network (it goes
	// with Detach). Detach releases Connect's endpoints too.
	Disconnect(ctx context.Context, containerID, ref string) error
	// Endpoints lists the endpoints of the network ref names, or of every
	// network when ref is empty, sorted by network then container name.
	Endpoints(ctx context.Context, ref string) ([]Endpoint, error)
}
