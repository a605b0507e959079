package isolation

import (
	"encoding/json"
	"fmt"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/berth-dev/berth/sdk/internal/gen/isolationv1"
	"github.com/berth-dev/berth/sdk/internal/gen/resourcesv1"
	"github.com/berth-dev/berth/sdk/internal/wire"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/resources"
)

// The OCI spec and process travel as their canonical JSON; nil is sent as
// no bytes at all.

func ociToJSON(s *specs.Spec) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode OCI runtime spec: %w", err)
	}
	return b, nil
}

func ociFromJSON(b []byte) (*specs.Spec, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode OCI runtime spec: %w", err)
	}
	return &s, nil
}

func processToJSON(p *specs.Process) ([]byte, error) {
	if p == nil {
		return nil, nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode OCI process: %w", err)
	}
	return b, nil
}

func processFromJSON(b []byte) (*specs.Process, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode OCI process: %w", err)
	}
	return &p, nil
}

func specToPB(s Spec) (*pb.Spec, error) {
	oci, err := ociToJSON(s.OCI)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", s.ID, err)
	}
	out := &pb.Spec{
		Id:          s.ID,
		OciJson:     oci,
		Placement:   &resourcesv1.Placement{CgroupPath: s.Placement.CgroupPath, Wrapper: s.Placement.Wrapper, Annotations: s.Placement.Annotations},
		Network:     networkToPB(s.Network),
		Vm:          vmToPB(s.VM),
		LogPath:     s.LogPath,
		Annotations: s.Annotations,
	}
	for _, m := range s.Rootfs {
		out.Rootfs = append(out.Rootfs, &pb.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out, nil
}

func specFromPB(s *pb.Spec) (Spec, error) {
	if s == nil {
		return Spec{}, nil
	}
	oci, err := ociFromJSON(s.OciJson)
	if err != nil {
		return Spec{}, fmt.Errorf("task %s: %w", s.Id, err)
	}
	out := Spec{
		ID:          s.Id,
		OCI:         oci,
		Network:     networkFromPB(s.Network),
		VM:          vmFromPB(s.Vm),
		LogPath:     s.LogPath,
		Annotations: s.Annotations,
	}
	if p := s.Placement; p != nil {
		out.Placement = resources.Placement{CgroupPath: p.CgroupPath, Wrapper: p.Wrapper, Annotations: p.Annotations}
	}
	for _, m := range s.Rootfs {
		out.Rootfs = append(out.Rootfs, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out, nil
}

func networkToPB(n *NetworkAttachment) *pb.NetworkAttachment {
	if n == nil {
		return nil
	}
	out := &pb.NetworkAttachment{
		Mode:     n.Mode,
		Dns:      &pb.DNS{Servers: n.DNS.Servers, Search: n.DNS.Search, Options: n.DNS.Options},
		Hostname: n.Hostname,
	}
	for _, i := range n.Interfaces {
		out.Interfaces = append(out.Interfaces, &pb.Interface{
			Name: i.Name, Bridge: i.Bridge, Mac: i.MAC, Addresses: i.Addresses, Gateway: i.Gateway, Mtu: int64(i.MTU),
		})
	}
	for _, h := range n.Hosts {
		out.Hosts = append(out.Hosts, &pb.HostEntry{Name: h.Name, Ip: h.IP})
	}
	for _, p := range n.Ports {
		out.Ports = append(out.Ports, &pb.PortMapping{
			HostIp: p.HostIP, HostPort: uint32(p.HostPort), ContainerPort: uint32(p.ContainerPort), Protocol: p.Protocol,
		})
	}
	return out
}

func networkFromPB(n *pb.NetworkAttachment) *NetworkAttachment {
	if n == nil {
		return nil
	}
	out := &NetworkAttachment{Mode: n.Mode, Hostname: n.Hostname}
	if d := n.Dns; d != nil {
		out.DNS = DNS{Servers: d.Servers, Search: d.Search, Options: d.Options}
	}
	for _, i := range n.Interfaces {
		out.Interfaces = append(out.Interfaces, Interface{
			Name: i.Name, Bridge: i.Bridge, MAC: i.Mac, Addresses: i.Addresses, Gateway: i.Gateway, MTU: int(i.Mtu),
		})
	}
	for _, h := range n.Hosts {
		out.Hosts = append(out.Hosts, HostEntry{Name: h.Name, IP: h.Ip})
	}
	for _, p := range n.Ports {
		out.Ports = append(out.Ports, PortMapping{
			HostIP: p.HostIp, HostPort: uint16(p.HostPort), ContainerPort: uint16(p.ContainerPort), Protocol: p.Protocol,
		})
	}
	return out
}

func vmToPB(v *VMSizing) *pb.VMSizing {
	if v == nil {
		return nil
	}
	return &pb.VMSizing{Cpus: int64(v.CPUs), MemoryBytes: v.MemoryBytes, Kernel: v.Kernel, Initrd: v.Initrd, KernelArgs: v.KernelArgs}
}

func vmFromPB(v *pb.VMSizing) *VMSizing {
	if v == nil {
		return nil
	}
	return &VMSizing{CPUs: int(v.Cpus), MemoryBytes: v.MemoryBytes, Kernel: v.Kernel, Initrd: v.Initrd, KernelArgs: v.KernelArgs}
}

func exitToPB(e ExitStatus) *pb.ExitStatus {
	return &pb.ExitStatus{Code: int64(e.Code), Signal: int64(e.Signal), ExitedAtUnixNano: wire.UnixNano(e.ExitedAt), OomKilled: e.OOMKilled}
}

func exitFromPB(e *pb.ExitStatus) ExitStatus {
	if e == nil {
		return ExitStatus{}
	}
	return ExitStatus{Code: int(e.Code), Signal: syscall.Signal(e.Signal), ExitedAt: wire.FromUnixNano(e.ExitedAtUnixNano), OOMKilled: e.OomKilled}
}

func exitPtrToPB(e *ExitStatus) *pb.ExitStatus {
	if e == nil {
		return nil
	}
	return exitToPB(*e)
}

func exitPtrFromPB(e *pb.ExitStatus) *ExitStatus {
	if e == nil {
		return nil
	}
	out := exitFromPB(e)
	return &out
}

func taskToPB(t TaskInfo) (*pb.TaskInfo, error) {
	out := &pb.TaskInfo{
		Id: t.ID, Pid: int64(t.Pid), Status: string(t.Status), Exit: exitPtrToPB(t.Exit), CreatedAtUnixNano: wire.UnixNano(t.CreatedAt),
	}
	if t.Spec != nil {
		s, err := specToPB(*t.Spec)
		if err != nil {
			return nil, err
		}
		out.Spec = s
	}
	return out, nil
}

func taskFromPB(t *pb.TaskInfo) (TaskInfo, error) {
	if t == nil {
		return TaskInfo{}, nil
	}
	out := TaskInfo{
		ID: t.Id, Pid: int(t.Pid), Status: Status(t.Status), Exit: exitPtrFromPB(t.Exit), CreatedAt: wire.FromUnixNano(t.CreatedAtUnixNano),
	}
	if t.Spec != nil {
		s, err := specFromPB(t.Spec)
		if err != nil {
			return TaskInfo{}, err
		}
		out.Spec = &s
	}
	return out, nil
}

func tasksToPB(ts []TaskInfo) ([]*pb.TaskInfo, error) {
	out := make([]*pb.TaskInfo, 0, len(ts))
	for _, t := range ts {
		p, err := taskToPB(t)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func tasksFromPB(ts []*pb.TaskInfo) ([]TaskInfo, error) {
	out := make([]TaskInfo, 0, len(ts))
	for _, t := range ts {
		ti, err := taskFromPB(t)
		if err != nil {
			return nil, err
		}
		out = append(out, ti)
	}
	return out, nil
}

func statsToPB(u Stats) *resourcesv1.Usage {
	return &resourcesv1.Usage{
		TimeUnixNano: wire.UnixNano(u.Time), CpuUsageNanos: u.CPUUsageNanos,
		CpuThrottledPeriods: u.CPUThrottledPeriods, CpuThrottledNanos: u.CPUThrottledNanos,
		MemoryBytes: u.MemoryBytes, MemoryPeakBytes: u.MemoryPeakBytes, SwapBytes: u.SwapBytes,
		IoReadBytes: u.IOReadBytes, IoWriteBytes: u.IOWriteBytes, Pids: u.Pids,
	}
}

func statsFromPB(u *resourcesv1.Usage) Stats {
	if u == nil {
		return Stats{}
	}
	return Stats{
		Time: wire.FromUnixNano(u.TimeUnixNano), CPUUsageNanos: u.CpuUsageNanos,
		CPUThrottledPeriods: u.CpuThrottledPeriods, CPUThrottledNanos: u.CpuThrottledNanos,
		MemoryBytes: u.MemoryBytes, MemoryPeakBytes: u.MemoryPeakBytes, SwapBytes: u.SwapBytes,
		IOReadBytes: u.IoReadBytes, IOWriteBytes: u.IoWriteBytes, Pids: u.Pids,
	}
}

func eventToPB(e TaskEvent) *pb.TaskEvent {
	return &pb.TaskEvent{Kind: e.Kind, Id: e.ID, ExecId: e.ExecID, Exit: exitPtrToPB(e.Exit), TimeUnixNano: wire.UnixNano(e.Time)}
}

func eventFromPB(e *pb.TaskEvent) TaskEvent {
	return TaskEvent{Kind: e.Kind, ID: e.Id, ExecID: e.ExecId, Exit: exitPtrFromPB(e.Exit), Time: wire.FromUnixNano(e.TimeUnixNano)}
}
