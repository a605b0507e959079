package manager

import (
	"context"
	"io"

	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/spec"
)

// serviceImages adapts the core's image service (sdk/images) to
// ImageSource.
type serviceImages struct{ svc images.Service }

// imagesFromHandles reaches the image service through handle "images".
func imagesFromHandles(h *plugin.Handles) (ImageSource, error) {
	c, err := images.FromHandles(h)
	if err != nil {
		return nil, err
	}
	return serviceImages{svc: c}, nil
}

// NewImageSource adapts an image service.
func NewImageSource(svc images.Service) ImageSource { return serviceImages{svc: svc} }

func (s serviceImages) Resolve(ctx context.Context, ref string) (Image, error) {
	d, err := s.svc.Inspect(ctx, ref)
	if err != nil {
		return Image{}, err
	}
	img := Image{
		Digest: d.Digest,
		Config: spec.ImageConfig{
			User: d.Config.User, Env: d.Config.Env, Entrypoint: d.Config.Entrypoint, Cmd: d.Config.Cmd,
			WorkingDir: d.Config.WorkingDir, StopSignal: d.Config.StopSignal, Labels: d.Config.Labels,
			OS: d.Platform.OS,
		},
		Volumes: d.Config.Volumes,
	}
	for _, l := range d.Layers {
		img.Layers = append(img.Layers, snapshot.Layer{MediaType: l.MediaType, Digest: l.Digest, DiffID: l.DiffID, Size: l.Size})
	}
	return img, nil
}

func (s serviceImages) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	return s.svc.OpenBlob(ctx, digest)
}

func (s serviceImages) AddLease(ctx context.Context, containerID, ref string) error {
	return s.svc.AddLease(ctx, images.ContainerLease+containerID, ref)
}

func (s serviceImages) DeleteLease(ctx context.Context, containerID string) error {
	return s.svc.DeleteLease(ctx, images.ContainerLease+containerID)
}
