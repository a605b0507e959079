package resources

import (
	pb "github.com/berth-dev/berth/sdk/internal/gen/resourcesv1"
	"github.com/berth-dev/berth/sdk/internal/wire"
)

func limitsToPB(l Limits) *pb.Limits {
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

func limitsFromPB(l *pb.Limits) Limits {
	if l == nil {
		return Limits{}
	}
	out := Limits{
		CPUShares: l.CpuShares, CPUs: l.Cpus, CPUSetCPUs: l.CpusetCpus, CPUSetMems: l.CpusetMems,
		MemoryBytes: l.MemoryBytes, MemorySoftBytes: l.MemorySoftBytes, SwapBytes: l.SwapBytes,
		IOReadBPS: l.IoReadBps, IOWriteBPS: l.IoWriteBps, IODevice: l.IoDevice, Pids: l.Pids,
	}
	for _, d := range l.Devices {
		out.Devices = append(out.Devices, DeviceRule{Allow: d.Allow, Type: d.Type, Major: d.Major, Minor: d.Minor, Access: d.Access})
	}
	return out
}

func placementToPB(p Placement) *pb.Placement {
	return &pb.Placement{CgroupPath: p.CgroupPath, Wrapper: p.Wrapper, Annotations: p.Annotations}
}

func placementFromPB(p *pb.Placement) Placement {
	if p == nil {
		return Placement{}
	}
	return Placement{CgroupPath: p.CgroupPath, Wrapper: p.Wrapper, Annotations: p.Annotations}
}

func usageToPB(u Usage) *pb.Usage {
	return &pb.Usage{
		TimeUnixNano: wire.UnixNano(u.Time), CpuUsageNanos: u.CPUUsageNanos,
		CpuThrottledPeriods: u.CPUThrottledPeriods, CpuThrottledNanos: u.CPUThrottledNanos,
		MemoryBytes: u.MemoryBytes, MemoryPeakBytes: u.MemoryPeakBytes, SwapBytes: u.SwapBytes,
		IoReadBytes: u.IOReadBytes, IoWriteBytes: u.IOWriteBytes, Pids: u.Pids,
	}
}

func usageFromPB(u *pb.Usage) Usage {
	if u == nil {
		return Usage{}
	}
	return Usage{
		Time: wire.FromUnixNano(u.TimeUnixNano), CPUUsageNanos: u.CpuUsageNanos,
		CPUThrottledPeriods: u.CpuThrottledPeriods, CPUThrottledNanos: u.CpuThrottledNanos,
		MemoryBytes: u.MemoryBytes, MemoryPeakBytes: u.MemoryPeakBytes, SwapBytes: u.SwapBytes,
		IOReadBytes: u.IoReadBytes, IOWriteBytes: u.IoWriteBytes, Pids: u.Pids,
	}
}

func eventToPB(e LimitEvent) *pb.LimitEvent {
	return &pb.LimitEvent{GroupId: e.GroupID, Resource: e.Resource, Kind: e.Kind, Count: e.Count, Message: e.Message, TimeUnixNano: wire.UnixNano(e.Time)}
}

func eventFromPB(e *pb.LimitEvent) LimitEvent {
	return LimitEvent{GroupID: e.GroupId, Resource: e.Resource, Kind: e.Kind, Count: e.Count, Message: e.Message, Time: wire.FromUnixNano(e.TimeUnixNano)}
}

func groupToPB(g Group) *pb.Group {
	pids := make([]int64, len(g.Pids))
	for i, p := range g.Pids {
		pids[i] = int64(p)
	}
	return &pb.Group{Id: g.ID, Limits: limitsToPB(g.Limits), Placement: placementToPB(g.Placement), Paused: g.Paused, Pids: pids}
}

func groupFromPB(g *pb.Group) Group {
	pids := make([]int, len(g.Pids))
	for i, p := range g.Pids {
		pids[i] = int(p)
	}
	return Group{ID: g.Id, Limits: limitsFromPB(g.Limits), Placement: placementFromPB(g.Placement), Paused: g.Paused, Pids: pids}
}
