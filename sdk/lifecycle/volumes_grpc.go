package lifecycle

import (
	"context"

	"github.com/berth-dev/berth/sdk/errdefs"
	pb "github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
	"github.com/berth-dev/berth/sdk/internal/wire"
)

// This file carries volumes, Top and SetRestartPolicy over gRPC, both
// ways.

// CreateVolume implements Manager.
func (c *Client) CreateVolume(ctx context.Context, name string, labels map[string]string) (Volume, error) {
	r, err := c.c.CreateVolume(ctx, &pb.CreateVolumeRequest{Name: name, Labels: labels})
	if err != nil {
		return Volume{}, errdefs.FromGRPC(err)
	}
	return volumeFromPB(r.Volume), nil
}

// ListVolumes implements Manager.
func (c *Client) ListVolumes(ctx context.Context) ([]Volume, error) {
	r, err := c.c.ListVolumes(ctx, &pb.ListVolumesRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]Volume, 0, len(r.Volumes))
	for _, v := range r.Volumes {
		out = append(out, volumeFromPB(v))
	}
	return out, nil
}

// InspectVolume implements Manager.
func (c *Client) InspectVolume(ctx context.Context, name string) (Volume, error) {
	r, err := c.c.InspectVolume(ctx, &pb.InspectVolumeRequest{Name: name})
	if err != nil {
		return Volume{}, errdefs.FromGRPC(err)
	}
	return volumeFromPB(r.Volume), nil
}

// RemoveVolume implements Manager.
func (c *Client) RemoveVolume(ctx context.Context, name string, force bool) error {
	_, err := c.c.RemoveVolume(ctx, &pb.RemoveVolumeRequest{Name: name, Force: force})
	return errdefs.FromGRPC(err)
}

// PruneVolumes implements Manager.
func (c *Client) PruneVolumes(ctx context.Context, all bool) (VolumePruneReport, error) {
	r, err := c.c.PruneVolumes(ctx, &pb.PruneVolumesRequest{All: all})
	if err != nil {
		return VolumePruneReport{}, errdefs.FromGRPC(err)
	}
	return VolumePruneReport{Removed: r.Removed, ReclaimedBytes: r.ReclaimedBytes}, nil
}

// SetRestartPolicy implements Manager.
func (c *Client) SetRestartPolicy(ctx context.Context, ref string, p RestartPolicy) (Container, error) {
	r, err := c.c.SetRestartPolicy(ctx, &pb.SetRestartPolicyRequest{Ref: ref, Policy: &pb.RestartPolicy{Name: p.Name, MaxRetries: int64(p.MaxRetries)}})
	if err != nil {
		return Container{}, errdefs.FromGRPC(err)
	}
	return containerFromPB(r.Container), nil
}

// Top implements Manager.
func (c *Client) Top(ctx context.Context, ref string, psArgs []string) (TopResult, error) {
	r, err := c.c.Top(ctx, &pb.TopRequest{Ref: ref, PsArgs: psArgs})
	if err != nil {
		return TopResult{}, errdefs.FromGRPC(err)
	}
	out := TopResult{Titles: r.Titles}
	for _, p := range r.Processes {
		out.Processes = append(out.Processes, p.Fields)
	}
	return out, nil
}

func (s *server) CreateVolume(ctx context.Context, r *pb.CreateVolumeRequest) (*pb.CreateVolumeResponse, error) {
	v, err := s.impl.CreateVolume(ctx, r.Name, r.Labels)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.CreateVolumeResponse{Volume: volumeToPB(v)}, nil
}

func (s *server) ListVolumes(ctx context.Context, _ *pb.ListVolumesRequest) (*pb.ListVolumesResponse, error) {
	vs, err := s.impl.ListVolumes(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	out := &pb.ListVolumesResponse{}
	for _, v := range vs {
		out.Volumes = append(out.Volumes, volumeToPB(v))
	}
	return out, nil
}

func (s *server) InspectVolume(ctx context.Context, r *pb.InspectVolumeRequest) (*pb.InspectVolumeResponse, error) {
	v, err := s.impl.InspectVolume(ctx, r.Name)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.InspectVolumeResponse{Volume: volumeToPB(v)}, nil
}

func (s *server) RemoveVolume(ctx context.Context, r *pb.RemoveVolumeRequest) (*pb.RemoveVolumeResponse, error) {
	if err := s.impl.RemoveVolume(ctx, r.Name, r.Force); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.RemoveVolumeResponse{}, nil
}

func (s *server) PruneVolumes(ctx context.Context, r *pb.PruneVolumesRequest) (*pb.PruneVolumesResponse, error) {
	rep, err := s.impl.PruneVolumes(ctx, r.All)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.PruneVolumesResponse{Removed: rep.Removed, ReclaimedBytes: rep.ReclaimedBytes}, nil
}

func (s *server) SetRestartPolicy(ctx context.Context, r *pb.SetRestartPolicyRequest) (*pb.SetRestartPolicyResponse, error) {
	var p RestartPolicy
	if r.Policy != nil {
		p = RestartPolicy{Name: r.Policy.Name, MaxRetries: int(r.Policy.MaxRetries)}
	}
	c, err := s.impl.SetRestartPolicy(ctx, r.Ref, p)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pb.SetRestartPolicyResponse{Container: containerToPB(c)}, nil
}

func (s *server) Top(ctx context.Context, r *pb.TopRequest) (*pb.TopResponse, error) {
	t, err := s.impl.Top(ctx, r.Ref, r.PsArgs)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	out := &pb.TopResponse{Titles: t.Titles}
	for _, p := range t.Processes {
		out.Processes = append(out.Processes, &pb.TopProcess{Fields: p})
	}
	return out, nil
}

func volumeToPB(v Volume) *pb.Volume {
	return &pb.Volume{
		Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, Labels: v.Labels,
		CreatedAtUnixNano: wire.UnixNano(v.CreatedAt), Anonymous: v.Anonymous, UsedBy: v.UsedBy,
	}
}

func volumeFromPB(v *pb.Volume) Volume {
	if v == nil {
		return Volume{}
	}
	return Volume{
		Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, Labels: v.Labels,
		CreatedAt: wire.FromUnixNano(v.CreatedAtUnixNano), Anonymous: v.Anonymous, UsedBy: v.UsedBy,
	}
}
