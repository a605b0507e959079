package network

import (
	"time"

	pb "github.com/berth-dev/berth/sdk/internal/gen/networkv1"
	"github.com/berth-dev/berth/sdk/isolation"
)

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func networkToPB(n Network) *pb.NetworkInfo {
	return &pb.NetworkInfo{
		Id: n.ID, Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet, Gateway: n.Gateway,
		Internal: n.Internal, Labels: n.Labels, CreatedUnixNano: unixNano(n.CreatedAt), Containers: n.Containers,
		Warnings: n.Warnings,
	}
}

func networkFromPB(n *pb.NetworkInfo) Network {
	return Network{
		ID: n.GetId(), Name: n.GetName(), Bridge: n.GetBridge(), Subnet: n.GetSubnet(), Gateway: n.GetGateway(),
		Internal: n.GetInternal(), Labels: n.GetLabels(), CreatedAt: fromUnixNano(n.GetCreatedUnixNano()),
		Containers: n.GetContainers(), Warnings: n.GetWarnings(),
	}
}

func portsToPB(ps []isolation.PortMapping) []*pb.PortMapping {
	var out []*pb.PortMapping
	for _, p := range ps {
		out = append(out, &pb.PortMapping{HostIp: p.HostIP, HostPort: uint32(p.HostPort), ContainerPort: uint32(p.ContainerPort), Protocol: p.Protocol})
	}
	return out
}

func portsFromPB(ps []*pb.PortMapping) []isolation.PortMapping {
	var out []isolation.PortMapping
	for _, p := range ps {
		out = append(out, isolation.PortMapping{HostIP: p.GetHostIp(), HostPort: uint16(p.GetHostPort()), ContainerPort: uint16(p.GetContainerPort()), Protocol: p.GetProtocol()})
	}
	return out
}

func hostsToPB(hs []isolation.HostEntry) []*pb.HostEntry {
	var out []*pb.HostEntry
	for _, h := range hs {
		out = append(out, &pb.HostEntry{Name: h.Name, Ip: h.IP})
	}
	return out
}

func hostsFromPB(hs []*pb.HostEntry) []isolation.HostEntry {
	var out []isolation.HostEntry
	for _, h := range hs {
		out = append(out, isolation.HostEntry{Name: h.GetName(), IP: h.GetIp()})
	}
	return out
}

func attachRequestToPB(r AttachRequest) *pb.AttachRequest {
	return &pb.AttachRequest{
		ContainerId: r.ContainerID, Name: r.Name, Hostname: r.Hostname, Aliases: r.Aliases, Network: r.Network,
		Ip: r.IP, Ports: portsToPB(r.Ports), Dns: r.DNS, DnsSearch: r.DNSSearch, ExtraHosts: hostsToPB(r.ExtraHosts),
	}
}

func attachRequestFromPB(r *pb.AttachRequest) AttachRequest {
	return AttachRequest{
		ContainerID: r.GetContainerId(), Name: r.GetName(), Hostname: r.GetHostname(), Aliases: r.GetAliases(),
		Network: r.GetNetwork(), IP: r.GetIp(), Ports: portsFromPB(r.GetPorts()), DNS: r.GetDns(),
		DNSSearch: r.GetDnsSearch(), ExtraHosts: hostsFromPB(r.GetExtraHosts()),
	}
}

func attachmentToPB(a isolation.NetworkAttachment) *pb.Attachment {
	out := &pb.Attachment{
		Mode: a.Mode, Hosts: hostsToPB(a.Hosts), Ports: portsToPB(a.Ports), Hostname: a.Hostname,
		Dns: &pb.DNS{Servers: a.DNS.Servers, Search: a.DNS.Search, Options: a.DNS.Options},
	}
	for _, i := range a.Interfaces {
		out.Interfaces = append(out.Interfaces, &pb.Interface{
			Name: i.Name, Bridge: i.Bridge, Mac: i.MAC, Addresses: i.Addresses, Gateway: i.Gateway, Mtu: int64(i.MTU),
		})
	}
	return out
}

func attachmentFromPB(a *pb.Attachment) isolation.NetworkAttachment {
	out := isolation.NetworkAttachment{
		Mode: a.GetMode(), Hosts: hostsFromPB(a.GetHosts()), Ports: portsFromPB(a.GetPorts()), Hostname: a.GetHostname(),
		DNS: isolation.DNS{Servers: a.GetDns().GetServers(), Search: a.GetDns().GetSearch(), Options: a.GetDns().GetOptions()},
	}
	for _, i := range a.GetInterfaces() {
		out.Interfaces = append(out.Interfaces, isolation.Interface{
			Name: i.GetName(), Bridge: i.GetBridge(), MAC: i.GetMac(), Addresses: i.GetAddresses(), Gateway: i.GetGateway(), MTU: int(i.GetMtu()),
		})
	}
	return out
}

func endpointToPB(e Endpoint) *pb.Endpoint {
	return &pb.Endpoint{
		ContainerId: e.ContainerID, ContainerName: e.ContainerName, NetworkId: e.NetworkID, Network: e.Network,
		Hostname: e.Hostname, Aliases: e.Aliases, Ip: e.IP, PrefixLen: int64(e.PrefixLen), Mac: e.MAC,
		Gateway: e.Gateway, Ports: portsToPB(e.Ports), CreatedUnixNano: unixNano(e.CreatedAt),
	}
}

func endpointFromPB(e *pb.Endpoint) Endpoint {
	return Endpoint{
		ContainerID: e.GetContainerId(), ContainerName: e.GetContainerName(), NetworkID: e.GetNetworkId(),
		Network: e.GetNetwork(), Hostname: e.GetHostname(), Aliases: e.GetAliases(), IP: e.GetIp(),
		PrefixLen: int(e.GetPrefixLen()), MAC: e.GetMac(), Gateway: e.GetGateway(), Ports: portsFromPB(e.GetPorts()),
		CreatedAt: fromUnixNano(e.GetCreatedUnixNano()),
	}
}
