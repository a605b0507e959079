package daemon

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/host"
	coreimages "github.com/berth-dev/berth/core/images"
	"github.com/berth-dev/berth/core/unpack"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// unpackingImages is the image service as users and plugins reach it: a
// pull also unpacks the image into the snapshotter bound to the default
// isolation mode (as Docker unpacks into its default snapshotter), so the
// first `run` does not pay for it; removing an image's last name releases
// the snapshots only it used. Images that arrive otherwise (load, import)
// are unpacked by lifecycle when a container first needs them.
type unpackingImages struct {
	*coreimages.Service
	host *host.Host
	// snapshotter is the snapshot plugin bound to the default isolation
	// mode; "" when there is none (then nothing is unpacked).
	snapshotter string
	log         hclog.Logger
}

var _ images.Service = (*unpackingImages)(nil)

// newUnpackingImages wraps svc and registers the release hook.
func newUnpackingImages(svc *coreimages.Service, h *host.Host, cfg *config.Config, log hclog.Logger) *unpackingImages {
	u := &unpackingImages{Service: svc, host: h, log: log.Named("unpack")}
	if iso := cfg.Default(config.LayerIsolation); iso != nil {
		if sn := cfg.SnapshotterFor(iso); sn != nil {
			u.snapshotter = sn.Name
		}
	}
	svc.OnRelease(u.release)
	return u
}

// snapshotterClient returns the bound snapshotter, or nil when none is
// configured.
func (u *unpackingImages) snapshotterClient() (snapshot.Snapshotter, error) {
	if u.snapshotter == "" {
		return nil, nil
	}
	c, err := u.host.Client(plugin.LayerSnapshot, u.snapshotter)
	if err != nil {
		return nil, err
	}
	sn, ok := c.(snapshot.Snapshotter)
	if !ok {
		return nil, fmt.Errorf("snapshot plugin %q is not a snapshotter", u.snapshotter)
	}
	return sn, nil
}

// Pull pulls, then unpacks. A failed unpack fails the pull with an error
// saying the image itself is stored (lifecycle unpacks it again on use).
func (u *unpackingImages) Pull(ctx context.Context, ref string, opts images.PullOptions, progress images.ProgressFunc) (images.Image, error) {
	img, err := u.Service.Pull(ctx, ref, opts, progress)
	if err != nil {
		return img, err
	}
	if err := u.unpack(ctx, img.Digest, progress); err != nil {
		return img, fmt.Errorf("pulled %s, but unpacking it into snapshotter %q failed (it will be retried when a container needs it): %w", ref, u.snapshotter, err)
	}
	return img, nil
}

func (u *unpackingImages) unpack(ctx context.Context, digest string, progress images.ProgressFunc) error {
	sn, err := u.snapshotterClient()
	if sn == nil || err != nil {
		return err
	}
	detail, err := u.Service.Inspect(ctx, digest)
	if err != nil {
		return err
	}
	layers := make([]unpack.Layer, len(detail.Layers))
	for i, l := range detail.Layers {
		layers[i] = unpack.Layer{
			MediaType: l.MediaType, Digest: l.Digest, DiffID: l.DiffID, Size: l.Size,
			Open: func() (io.ReadCloser, error) { return u.Service.OpenBlob(ctx, l.Digest) },
		}
	}
	opts := unpack.Options{Logger: u.log}
	if progress != nil {
		opts.Progress = func(p unpack.Progress) {
			phase := images.PhaseUnpacking
			if p.State != unpack.StateApplying {
				phase = images.PhaseUnpacked
			}
			progress(images.Progress{ID: p.Digest, Phase: phase, Current: p.Read, Total: p.Size})
		}
	}
	res, err := unpack.Unpack(ctx, sn, layers, opts)
	if err != nil {
		return err
	}
	u.log.Info("unpacked image", "digest", digest, "snapshotter", u.snapshotter, "chain_id", res.ChainID)
	return nil
}

// release removes the snapshots of a released image's layers that no other
// image still names (the snapshotter itself refuses those under a
// container's rootfs).
func (u *unpackingImages) release(ctx context.Context, manifest string, layers []images.Layer) error {
	sn, err := u.snapshotterClient()
	if sn == nil || err != nil {
		if err != nil {
			u.log.Warn("cannot release snapshots of a removed image", "manifest", manifest, "error", err)
		}
		return nil // the image's blobs may go; unreleased snapshots are only space
	}
	chainIDs := unpack.ChainIDs(diffIDs(layers))
	inUse := map[string]bool{}
	list, err := u.Service.List(ctx)
	if err != nil {
		return err
	}
	for _, img := range list {
		if img.Digest == manifest {
			continue
		}
		d, err := u.Service.Inspect(ctx, img.Digest)
		if err != nil {
			continue
		}
		for _, c := range unpack.ChainIDs(diffIDs(d.Layers)) {
			inUse[c] = true
		}
	}
	removed, err := unpack.Release(ctx, sn, chainIDs, func(c string) bool { return inUse[c] })
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		u.log.Info("released snapshots", "manifest", manifest, "snapshotter", u.snapshotter, "count", len(removed))
	}
	return nil
}

func diffIDs(layers []images.Layer) []string {
	out := make([]string, 0, len(layers))
	for _, l := range layers {
		out = append(out, l.DiffID)
	}
	return slices.Clip(out)
}
