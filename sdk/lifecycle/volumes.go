package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// VolumeDriverLocal is the driver of volumes kept as host directories.
const VolumeDriverLocal = "local"

// LabelAnonymousVolume marks, in Volume.Labels, a volume made for one
// container (-v /path) rather than named by a user; Docker uses the same
// label name.
const LabelAnonymousVolume = "com.docker.volume.anonymous"

// Volume is a named volume: storage that outlives containers, mounted into
// them by name (docker run -v NAME:/path).
type Volume struct {
	Name   string
	Driver string
	// Mountpoint is the volume's directory on the host.
	Mountpoint string
	Labels     map[string]string
	CreatedAt  time.Time
	// Anonymous marks a volume a container made for itself.
	Anonymous bool
	// UsedBy lists the IDs of the containers that mount the volume.
	UsedBy []string
}

// VolumePruneReport is what PruneVolumes removed.
type VolumePruneReport struct {
	Removed        []string
	ReclaimedBytes uint64
}

// VolumeManager manages named volumes. A container mount of type "volume"
// names one (Mount.Source); Create makes a volume that does not exist yet,
// and an empty Source makes an anonymous one. A volume new to a container
// gets a copy of what the image holds at the mount point, as Docker does.
type VolumeManager interface {
	// CreateVolume makes a volume; an empty name gets a random 64-hex one.
	// Creating one that exists returns it unchanged.
	CreateVolume(ctx context.Context, name string, labels map[string]string) (Volume, error)
	ListVolumes(ctx context.Context) ([]Volume, error)
	InspectVolume(ctx context.Context, name string) (Volume, error)
	// RemoveVolume removes a volume and its data. A volume a container
	// (in any state) mounts is ErrInvalidState naming the containers; a
	// missing one is ErrNotFound unless force.
	RemoveVolume(ctx context.Context, name string, force bool) error
	// PruneVolumes removes the volumes no container mounts: only
	// anonymous ones unless all.
	PruneVolumes(ctx context.Context, all bool) (VolumePruneReport, error)
}

// TopResult is the process table of a container, as docker top prints it.
type TopResult struct {
	Titles    []string
	Processes [][]string
}

// RemoveAnonymousVolumes removes the anonymous volumes container c
// mounted, once c itself is deleted (docker rm -v, run --rm). A volume
// that another container still uses stays, and a missing one is skipped.
func RemoveAnonymousVolumes(ctx context.Context, m VolumeManager, c Container) error {
	var errs []error
	for _, mt := range c.Config.Mounts {
		if mt.Type != "volume" || mt.Source == "" {
			continue
		}
		v, err := m.InspectVolume(ctx, mt.Source)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", mt.Source, err))
			continue
		}
		if !v.Anonymous || len(v.UsedBy) > 0 {
			continue
		}
		if err := m.RemoveVolume(ctx, v.Name, true); err != nil && !errdefs.IsInvalidState(err) {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}
