package snapshot

import (
	pb "github.com/berth-dev/berth/sdk/internal/gen/snapshotv1"
	"github.com/berth-dev/berth/sdk/internal/wire"
	"github.com/berth-dev/berth/sdk/mount"
)

func infoToPB(i Info) *pb.Info {
	return &pb.Info{
		Kind: string(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels,
		CreatedUnixNano: wire.UnixNano(i.Created), UpdatedUnixNano: wire.UnixNano(i.Updated),
	}
}

func infoFromPB(i *pb.Info) Info {
	if i == nil {
		return Info{}
	}
	return Info{
		Kind: Kind(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels,
		Created: wire.FromUnixNano(i.CreatedUnixNano), Updated: wire.FromUnixNano(i.UpdatedUnixNano),
	}
}

func usageFromPB(u *pb.Usage) Usage {
	if u == nil {
		return Usage{}
	}
	return Usage{Size: u.Size, Inodes: u.Inodes}
}

func mountsToPB(ms []mount.Mount) []*pb.Mount {
	out := make([]*pb.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, &pb.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}

func mountsFromPB(ms []*pb.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}

func layerToPB(l Layer) *pb.Layer {
	return &pb.Layer{MediaType: l.MediaType, Digest: l.Digest, DiffId: l.DiffID, Size: l.Size}
}

func layerFromPB(l *pb.Layer) Layer {
	if l == nil {
		return Layer{}
	}
	return Layer{MediaType: l.MediaType, Digest: l.Digest, DiffID: l.DiffId, Size: l.Size}
}

// labelsOf returns the labels opts set, which is all of Info that Opts
// carry across the wire.
func labelsOf(opts []Opt) (map[string]string, error) {
	i, err := ApplyOptions(opts)
	if err != nil {
		return nil, err
	}
	return i.Labels, nil
}

// labelOpts turns labels received from the wire back into options.
func labelOpts(labels map[string]string) []Opt {
	if len(labels) == 0 {
		return nil
	}
	return []Opt{WithLabels(labels)}
}
