package manager

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/spec"
)

// Image is what the manager needs of an image: its manifest digest, the
// config a spec is built from, and its layers (base first) with the diff
// IDs that name its snapshots.
type Image struct {
	Digest string
	Config spec.ImageConfig
	Layers []snapshot.Layer
	// Volumes are the image's VOLUME paths; each gets an anonymous volume
	// unless the user mounts something there.
	Volumes []string
}

// ImageSource is the part of the core's image service (sdk/images) the
// manager uses; NewImageSource adapts the service, tests use a fake.
type ImageSource interface {
	// Resolve finds the image ref names in the store (it does not pull).
	Resolve(ctx context.Context, ref string) (Image, error)
	// OpenBlob reads a stored layer blob, for unpacking an image the image
	// service has not unpacked into the snapshotter yet.
	OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error)
	// AddLease makes container containerID hold the image ref names, so
	// the image's blobs stay while the container exists. Idempotent.
	AddLease(ctx context.Context, containerID, ref string) error
	// DeleteLease releases the container's hold; releasing an unknown
	// lease succeeds.
	DeleteLease(ctx context.Context, containerID string) error
}

// Mode is an isolation mode the manager may run containers in.
type Mode struct {
	Name string
	// Snapshotter is the snapshot plugin bound to the mode.
	Snapshotter  string
	Default      bool
	Capabilities []string
}

// Layers reaches the plugins and services the manager drives. Calls
// return errdefs.ErrNotFound for what is not configured.
type Layers interface {
	// Resources returns the resources controller; ErrNotFound when no
	// resources plugin is configured (containers then run without limits).
	Resources() (resources.Controller, error)
	Isolation(mode string) (isolation.Runtime, error)
	Snapshotter(name string) (snapshot.Snapshotter, error)
	Images() (ImageSource, error)
	// Modes lists the configured isolation modes, sorted by name.
	Modes() []Mode
}

// handleLayers are the Layers the core brokered to the plugin.
type handleLayers struct {
	h *plugin.Handles

	mu    sync.Mutex
	res   *resources.Client
	iso   map[string]*isolation.Client
	snaps map[string]*snapshot.Client
}

func newHandleLayers(h *plugin.Handles) *handleLayers {
	return &handleLayers{h: h, iso: map[string]*isolation.Client{}, snaps: map[string]*snapshot.Client{}}
}

func (l *handleLayers) Resources() (resources.Controller, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.res == nil {
		c, err := resources.FromHandles(l.h)
		if err != nil {
			return nil, err
		}
		l.res = c
	}
	return l.res, nil
}

func (l *handleLayers) Isolation(mode string) (isolation.Runtime, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.iso[mode]; ok {
		return c, nil
	}
	if !l.h.Has(plugin.HandleIsolationPrefix + mode) {
		return nil, errdefs.NotFound("isolation mode %q is not configured (configured: %s); enable its plugin in config.hcl", mode, strings.Join(modeNames(l.Modes()), ", "))
	}
	c, err := isolation.FromHandles(l.h, mode)
	if err != nil {
		return nil, err
	}
	l.iso[mode] = c
	return c, nil
}

func (l *handleLayers) Snapshotter(name string) (snapshot.Snapshotter, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.snaps[name]; ok {
		return c, nil
	}
	c, err := snapshot.FromHandles(l.h, name)
	if err != nil {
		return nil, err
	}
	l.snaps[name] = c
	return c, nil
}

func (l *handleLayers) Images() (ImageSource, error) {
	if !l.h.Has(plugin.HandleImages) {
		return nil, errdefs.NotFound("the core brokered no image service (handle %q) to lifecycle", plugin.HandleImages)
	}
	return imagesFromHandles(l.h)
}

func (l *handleLayers) Modes() []Mode {
	var out []Mode
	for _, name := range l.h.Names() {
		mode, ok := strings.CutPrefix(name, plugin.HandleIsolationPrefix)
		if !ok {
			continue
		}
		info, _ := l.h.Info(name)
		out = append(out, Mode{Name: mode, Snapshotter: info.Snapshotter, Default: info.Default, Capabilities: info.Capabilities})
	}
	return out
}

func modeNames(modes []Mode) []string {
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = m.Name
	}
	slices.Sort(names)
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// pickMode returns the mode named want, or the default mode (the only one
// when just one is configured) when want is empty.
func pickMode(modes []Mode, want string) (Mode, error) {
	if want != "" {
		for _, m := range modes {
			if m.Name == want {
				return m, nil
			}
		}
		return Mode{}, errdefs.InvalidArgument("isolation mode %q is not configured (configured: %s)", want, strings.Join(modeNames(modes), ", "))
	}
	for _, m := range modes {
		if m.Default {
			return m, nil
		}
	}
	if len(modes) == 1 {
		return modes[0], nil
	}
	if len(modes) == 0 {
		return Mode{}, errdefs.NotFound("no isolation plugin is configured; enable one in config.hcl")
	}
	return Mode{}, errdefs.InvalidArgument("several isolation modes are configured (%s) and none is the default; choose one with --isolation", strings.Join(modeNames(modes), ", "))
}
