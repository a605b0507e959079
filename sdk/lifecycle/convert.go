package lifecycle

import (
	"syscall"
	"time"

	pb "github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
	"github.com/berth-dev/berth/sdk/internal/wire"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/resources"
)

func configToPB(c Config) *pb.Config {
	out := &pb.Config{
		Image: c.Image, Isolation: c.Isolation, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env,
		User: c.User, WorkingDir: c.WorkingDir, Hostname: c.Hostname, Labels: c.Labels,
		Tty: c.Tty, OpenStdin: c.OpenStdin, StopSignal: c.StopSignal, StopTimeoutNanos: int64(c.StopTimeout),
		Limits:         limitsToPB(c.Limits),
		Restart:        &pb.RestartPolicy{Name: c.Restart.Name, MaxRetries: int64(c.Restart.MaxRetries)},
		Network:        networkToPB(c.Network),
		ReadOnlyRootfs: c.ReadOnlyRootfs, Privileged: c.Privileged, CapAdd: c.CapAdd, CapDrop: c.CapDrop,
	}
	out.SecurityOpt, out.Init, out.OomScoreAdj = c.SecurityOpt, c.Init, int32(c.OOMScoreAdj)
	for _, u := range c.Ulimits {
		out.Ulimits = append(out.Ulimits, &pb.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	for _, d := range c.Devices {
		out.Devices = append(out.Devices, &pb.DeviceMapping{PathOnHost: d.PathOnHost, PathInContainer: d.PathInContainer, Permissions: d.Permissions})
	}
	for _, m := range c.Mounts {
		out.Mounts = append(out.Mounts, &pb.Mount{Type: m.Type, Source: m.Source, Destination: m.Destination, ReadOnly: m.ReadOnly, Options: m.Options})
	}
	if v := c.VM; v != nil {
		out.Vm = &pb.VMSizing{Cpus: int64(v.CPUs), MemoryBytes: v.MemoryBytes, Kernel: v.Kernel, Initrd: v.Initrd, KernelArgs: v.KernelArgs}
	}
	return out
}

func configFromPB(c *pb.Config) Config {
	if c == nil {
		return Config{}
	}
	out := Config{
		Image: c.Image, Isolation: c.Isolation, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env,
		User: c.User, WorkingDir: c.WorkingDir, Hostname: c.Hostname, Labels: c.Labels,
		Tty: c.Tty, OpenStdin: c.OpenStdin, StopSignal: c.StopSignal, StopTimeout: time.Duration(c.StopTimeoutNanos),
		Limits:         limitsFromPB(c.Limits),
		Network:        networkFromPB(c.Network),
		ReadOnlyRootfs: c.ReadOnlyRootfs, Privileged: c.Privileged, CapAdd: c.CapAdd, CapDrop: c.CapDrop,
	}
	if r := c.Restart; r != nil {
		out.Restart = RestartPolicy{Name: r.Name, MaxRetries: int(r.MaxRetries)}
	}
	out.SecurityOpt, out.Init, out.OOMScoreAdj = c.SecurityOpt, c.Init, int(c.OomScoreAdj)
	for _, u := range c.Ulimits {
		out.Ulimits = append(out.Ulimits, Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	for _, d := range c.Devices {
		out.Devices = append(out.Devices, DeviceMapping{PathOnHost: d.PathOnHost, PathInContainer: d.PathInContainer, Permissions: d.Permissions})
	}
	for _, m := range c.Mounts {
		out.Mounts = append(out.Mounts, Mount{Type: m.Type, Source: m.Source, Destination: m.Destination, ReadOnly: m.ReadOnly, Options: m.Options})
	}
	if v := c.Vm; v != nil {
		out.VM = &isolation.VMSizing{CPUs: int(v.Cpus), MemoryBytes: v.MemoryBytes, Kernel: v.Kernel, Initrd: v.Initrd, KernelArgs: v.KernelArgs}
	}
	return out
}

func networkToPB(n NetworkOptions) *pb.NetworkOptions {
	out := &pb.NetworkOptions{Network: n.Network, Ip: n.IP, Dns: n.DNS, DnsSearch: n.DNSSearch, Aliases: n.Aliases}
	for _, p := range n.Ports {
		out.Ports = append(out.Ports, &pb.PortMapping{HostIp: p.HostIP, HostPort: uint32(p.HostPort), ContainerPort: uint32(p.ContainerPort), Protocol: p.Protocol})
	}
	for _, h := range n.ExtraHosts {
		out.ExtraHosts = append(out.ExtraHosts, &pb.HostEntry{Name: h.Name, Ip: h.IP})
	}
	return out
}

func networkFromPB(n *pb.NetworkOptions) NetworkOptions {
	if n == nil {
		return NetworkOptions{}
	}
	out := NetworkOptions{Network: n.Network, IP: n.Ip, DNS: n.Dns, DNSSearch: n.DnsSearch, Aliases: n.Aliases}
	for _, p := range n.Ports {
		out.Ports = append(out.Ports, isolation.PortMapping{HostIP: p.HostIp, HostPort: uint16(p.HostPort), ContainerPort: uint16(p.ContainerPort), Protocol: p.Protocol})
	}
	for _, h := range n.ExtraHosts {
		out.ExtraHosts = append(out.ExtraHosts, isolation.HostEntry{Name: h.Name, IP: h.Ip})
	}
	return out
}

func limitsToPB(l resources.Limits) *pb.Limits {
	out := &pb.Limits{
		CpuShares: l.CPUShares, Cpus: l.CPUs, CpusetCpus: l.CPUSetCPUs, CpusetMems: l.CPUSetMems,
		MemoryBytes: l.MemoryBytes, MemorySoftBytes: l.MemorySoftBytes, SwapBytes: l.SwapBytes,
		IoReadBps: l.IOReadBPS, IoWriteBps: l.IOWriteBPS, IoDevice: l.IODevice, Pids: l.Pids,
	}
	for _, d := range l.Devices {
		out.Devices = append(out.Devices, &pb.DeviceRule{Allow: d.Allow, Type: d.Type, Major: d.Major, Minor: d.Minor, Access: d.Access})
	}
	return out
}

func limitsFromPB(l *pb.Limits) resources.Limits {
	if l == nil {
		return resources.Limits{}
	}
	out := resources.Limits{
		CPUShares: l.CpuShares, CPUs: l.Cpus, CPUSetCPUs: l.CpusetCpus, CPUSetMems: l.CpusetMems,
		MemoryBytes: l.MemoryBytes, MemorySoftBytes: l.MemorySoftBytes, SwapBytes: l.SwapBytes,
		IOReadBPS: l.IoReadBps, IOWriteBPS: l.IoWriteBps, IODevice: l.IoDevice, Pids: l.Pids,
	}
	for _, d := range l.Devices {
		out.Devices = append(out.Devices, resources.DeviceRule{Allow: d.Allow, Type: d.Type, Major: d.Major, Minor: d.Minor, Access: d.Access})
	}
	return out
}

func containerToPB(c Container) *pb.Container {
	return &pb.Container{
		Id: c.ID, Name: c.Name, ImageDigest: c.ImageDigest, Config: configToPB(c.Config),
		Isolation: c.Isolation, SnapshotKey: c.SnapshotKey, State: string(c.State),
		Pid: int64(c.Pid), ExitCode: int64(c.ExitCode), OomKilled: c.OOMKilled,
		Checkpoint: c.Checkpoint, RestartCount: int64(c.RestartCount), Restarting: c.Restarting,
		CreatedAtUnixNano: wire.UnixNano(c.CreatedAt), StartedAtUnixNano: wire.UnixNano(c.StartedAt),
		FinishedAtUnixNano: wire.UnixNano(c.FinishedAt),
	}
}

func containerFromPB(c *pb.Container) Container {
	if c == nil {
		return Container{}
	}
	return Container{
		ID: c.Id, Name: c.Name, ImageDigest: c.ImageDigest, Config: configFromPB(c.Config),
		Isolation: c.Isolation, SnapshotKey: c.SnapshotKey, State: State(c.State),
		Pid: int(c.Pid), ExitCode: int(c.ExitCode), OOMKilled: c.OomKilled,
		Checkpoint: c.Checkpoint, RestartCount: int(c.RestartCount), Restarting: c.Restarting,
		CreatedAt: wire.FromUnixNano(c.CreatedAtUnixNano), StartedAt: wire.FromUnixNano(c.StartedAtUnixNano),
		FinishedAt: wire.FromUnixNano(c.FinishedAtUnixNano),
	}
}

func execConfigToPB(e ExecConfig) *pb.ExecConfig {
	out := &pb.ExecConfig{Cmd: e.Cmd, Env: e.Env, User: e.User, WorkingDir: e.WorkingDir, Tty: e.Tty, OpenStdin: e.OpenStdin}
	if e.ConsoleSize != nil {
		out.ConsoleWidth, out.ConsoleHeight = uint32(e.ConsoleSize.Width), uint32(e.ConsoleSize.Height)
	}
	return out
}

func execConfigFromPB(e *pb.ExecConfig) ExecConfig {
	if e == nil {
		return ExecConfig{}
	}
	out := ExecConfig{Cmd: e.Cmd, Env: e.Env, User: e.User, WorkingDir: e.WorkingDir, Tty: e.Tty, OpenStdin: e.OpenStdin}
	if e.ConsoleWidth != 0 || e.ConsoleHeight != 0 {
		out.ConsoleSize = &isolation.ConsoleSize{Width: uint16(e.ConsoleWidth), Height: uint16(e.ConsoleHeight)}
	}
	return out
}

func eventToPB(e Event) *pb.Event {
	return &pb.Event{Kind: e.Kind, ContainerId: e.ContainerID, Name: e.Name, ExitCode: int64(e.ExitCode), TimeUnixNano: wire.UnixNano(e.Time), Attributes: e.Attributes}
}

func eventFromPB(e *pb.Event) Event {
	return Event{Kind: e.Kind, ContainerID: e.ContainerId, Name: e.Name, ExitCode: int(e.ExitCode), Time: wire.FromUnixNano(e.TimeUnixNano), Attributes: e.Attributes}
}

func filterToPB(f Filter) *pb.Filter {
	out := &pb.Filter{All: f.All, Labels: f.Labels, Name: f.Name}
	for _, s := range f.States {
		out.States = append(out.States, string(s))
	}
	return out
}

func filterFromPB(f *pb.Filter) Filter {
	if f == nil {
		return Filter{}
	}
	out := Filter{All: f.All, Labels: f.Labels, Name: f.Name}
	for _, s := range f.States {
		out.States = append(out.States, State(s))
	}
	return out
}

func exitToPB(e isolation.ExitStatus) *pb.ExitStatus {
	return &pb.ExitStatus{Code: int64(e.Code), Signal: int32(e.Signal), ExitedAtUnixNano: wire.UnixNano(e.ExitedAt), OomKilled: e.OOMKilled}
}

func exitFromPB(e *pb.ExitStatus) isolation.ExitStatus {
	if e == nil {
		return isolation.ExitStatus{}
	}
	return isolation.ExitStatus{Code: int(e.Code), Signal: syscall.Signal(e.Signal), ExitedAt: wire.FromUnixNano(e.ExitedAtUnixNano), OOMKilled: e.OomKilled}
}

func statsToPB(u isolation.Stats) *pb.Stats {
	return &pb.Stats{
		TimeUnixNano: wire.UnixNano(u.Time), CpuUsageNanos: u.CPUUsageNanos,
		CpuThrottledPeriods: u.CPUThrottledPeriods, CpuThrottledNanos: u.CPUThrottledNanos,
		MemoryBytes: u.MemoryBytes, MemoryPeakBytes: u.MemoryPeakBytes, SwapBytes: u.SwapBytes,
		IoReadBytes: u.IOReadBytes, IoWriteBytes: u.IOWriteBytes, Pids: u.Pids,
	}
}

func statsFromPB(u *pb.Stats) isolation.Stats {
	if u == nil {
		return isolation.Stats{}
	}
	return isolation.Stats{
		Time: wire.FromUnixNano(u.TimeUnixNano), CPUUsageNanos: u.CpuUsageNanos,
		CPUThrottledPeriods: u.CpuThrottledPeriods, CPUThrottledNanos: u.CpuThrottledNanos,
		MemoryBytes: u.MemoryBytes, MemoryPeakBytes: u.MemoryPeakBytes, SwapBytes: u.SwapBytes,
		IOReadBytes: u.IoReadBytes, IOWriteBytes: u.IoWriteBytes, Pids: u.Pids,
	}
}
