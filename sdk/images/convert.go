package images

import (
	pb "github.com/berth-dev/berth/sdk/internal/gen/imagesv1"
	"github.com/berth-dev/berth/sdk/internal/wire"
)

func platformToPB(p Platform) *pb.Platform {
	return &pb.Platform{Os: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

func platformFromPB(p *pb.Platform) Platform {
	if p == nil {
		return Platform{}
	}
	return Platform{OS: p.Os, Architecture: p.Architecture, Variant: p.Variant}
}

func imageToPB(i Image) *pb.Image {
	return &pb.Image{
		Name: i.Name, Repository: i.Repository, Tag: i.Tag, Digest: i.Digest, RepoDigest: i.RepoDigest,
		MediaType: i.MediaType, Size: i.Size, CreatedUnixNano: wire.UnixNano(i.Created), Platform: platformToPB(i.Platform),
	}
}

func imageFromPB(i *pb.Image) Image {
	if i == nil {
		return Image{}
	}
	return Image{
		Name: i.Name, Repository: i.Repository, Tag: i.Tag, Digest: i.Digest, RepoDigest: i.RepoDigest,
		MediaType: i.MediaType, Size: i.Size, Created: wire.FromUnixNano(i.CreatedUnixNano), Platform: platformFromPB(i.Platform),
	}
}

func imagesToPB(is []Image) []*pb.Image {
	out := make([]*pb.Image, 0, len(is))
	for _, i := range is {
		out = append(out, imageToPB(i))
	}
	return out
}

func imagesFromPB(is []*pb.Image) []Image {
	out := make([]Image, 0, len(is))
	for _, i := range is {
		out = append(out, imageFromPB(i))
	}
	return out
}

func configToPB(c Config) *pb.Config {
	return &pb.Config{
		User: c.User, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir,
		Labels: c.Labels, ExposedPorts: c.ExposedPorts, Volumes: c.Volumes, StopSignal: c.StopSignal,
	}
}

func configFromPB(c *pb.Config) Config {
	if c == nil {
		return Config{}
	}
	return Config{
		User: c.User, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir,
		Labels: c.Labels, ExposedPorts: c.ExposedPorts, Volumes: c.Volumes, StopSignal: c.StopSignal,
	}
}

func detailToPB(d Detail) *pb.Detail {
	layers := make([]*pb.Layer, 0, len(d.Layers))
	for _, l := range d.Layers {
		layers = append(layers, &pb.Layer{MediaType: l.MediaType, Digest: l.Digest, DiffId: l.DiffID, Size: l.Size})
	}
	return &pb.Detail{
		Image: imageToPB(d.Image), Names: d.Names, Config: configToPB(d.Config), Layers: layers,
		ConfigDigest: d.ConfigDigest, RawConfig: d.RawConfig, RawManifest: d.RawManifest,
	}
}

func detailFromPB(d *pb.Detail) Detail {
	layers := make([]Layer, 0, len(d.Layers))
	for _, l := range d.Layers {
		layers = append(layers, Layer{MediaType: l.MediaType, Digest: l.Digest, DiffID: l.DiffId, Size: l.Size})
	}
	return Detail{
		Image: imageFromPB(d.Image), Names: d.Names, Config: configFromPB(d.Config), Layers: layers,
		ConfigDigest: d.ConfigDigest, RawConfig: d.RawConfig, RawManifest: d.RawManifest,
	}
}

func removeResultToPB(r RemoveResult) *pb.RemoveResult {
	return &pb.RemoveResult{Untagged: r.Untagged, Deleted: r.Deleted, BytesFreed: r.BytesFreed}
}

func removeResultFromPB(r *pb.RemoveResult) RemoveResult {
	return RemoveResult{Untagged: r.Untagged, Deleted: r.Deleted, BytesFreed: r.BytesFreed}
}

func progressToPB(p Progress) *pb.ProgressEvent {
	return &pb.ProgressEvent{Event: &pb.ProgressEvent_Progress{Progress: &pb.Progress{Id: p.ID, Phase: p.Phase, Current: p.Current, Total: p.Total}}}
}

func progressFromPB(p *pb.Progress) Progress {
	return Progress{ID: p.Id, Phase: p.Phase, Current: p.Current, Total: p.Total}
}
