package api

import (
	pb "github.com/berth-dev/berth/sdk/internal/gen/apiv1"
	"github.com/berth-dev/berth/sdk/internal/wire"
	"github.com/berth-dev/berth/sdk/plugin"
)

func versionToPB(v VersionInfo) *pb.VersionInfo {
	return &pb.VersionInfo{Version: v.Version, Commit: v.Commit, GoVersion: v.GoVersion, Os: v.OS, Arch: v.Arch, ApiVersion: v.APIVersion}
}

func versionFromPB(v *pb.VersionInfo) VersionInfo {
	if v == nil {
		return VersionInfo{}
	}
	return VersionInfo{Version: v.Version, Commit: v.Commit, GoVersion: v.GoVersion, OS: v.Os, Arch: v.Arch, APIVersion: v.ApiVersion}
}

func endpointsToPB(es []Endpoint) []*pb.Endpoint {
	out := make([]*pb.Endpoint, 0, len(es))
	for _, e := range es {
		out = append(out, &pb.Endpoint{Kind: e.Kind, Address: e.Address})
	}
	return out
}

func endpointsFromPB(es []*pb.Endpoint) []Endpoint {
	out := make([]Endpoint, 0, len(es))
	for _, e := range es {
		out = append(out, Endpoint{Kind: e.Kind, Address: e.Address})
	}
	return out
}

func pluginsToPB(ps []PluginStatus) []*pb.PluginStatus {
	out := make([]*pb.PluginStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, &pb.PluginStatus{
			Layer: string(p.Layer), Name: p.Name, Version: p.Version, Platform: p.Platform,
			Pid: int64(p.Pid), Health: p.Health, Path: p.Path, Restarts: int32(p.Restarts),
			LastError: p.LastError, Default: p.Default, Capabilities: p.Capabilities,
			StartedUnixNano: wire.UnixNano(p.StartedAt),
		})
	}
	return out
}

func pluginsFromPB(ps []*pb.PluginStatus) []PluginStatus {
	out := make([]PluginStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, PluginStatus{
			Layer: plugin.Layer(p.Layer), Name: p.Name, Version: p.Version, Platform: p.Platform,
			Pid: int(p.Pid), Health: p.Health, Path: p.Path, Restarts: int(p.Restarts),
			LastError: p.LastError, Default: p.Default, Capabilities: p.Capabilities,
			StartedAt: wire.FromUnixNano(p.StartedUnixNano),
		})
	}
	return out
}

func statusToPB(s Status) *pb.SystemStatus {
	return &pb.SystemStatus{
		Version: versionToPB(s.Version), Pid: int64(s.Pid), StartedUnixNano: wire.UnixNano(s.StartedAt),
		ConfigFile: s.ConfigFile, StateDir: s.StateDir, RuntimeDir: s.RuntimeDir, AdminSocket: s.AdminSocket,
		Endpoints: endpointsToPB(s.Endpoints), Plugins: pluginsToPB(s.Plugins),
	}
}

func statusFromPB(s *pb.SystemStatus) Status {
	return Status{
		Version: versionFromPB(s.Version), Pid: int(s.Pid), StartedAt: wire.FromUnixNano(s.StartedUnixNano),
		ConfigFile: s.ConfigFile, StateDir: s.StateDir, RuntimeDir: s.RuntimeDir, AdminSocket: s.AdminSocket,
		Endpoints: endpointsFromPB(s.Endpoints), Plugins: pluginsFromPB(s.Plugins),
	}
}
