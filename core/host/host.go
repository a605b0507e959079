// Package host launches and supervises Berth's plugins.
//
// Each configured plugin is a go-plugin child process speaking gRPC over a
// unix socket under the runtime dir. The host verifies its binary's sha256
// when the config gives one (go-plugin SecureConfig), checks its Info
// (layer, API version), decodes its config block against the schema it
// declares, configures it with its directories and its brokered handles,
// health-checks it, and restarts it with backoff when it crashes or hangs,
// telling the plugins that hold a handle to it.
//
// Plugins die with the daemon: each plugin is forked from an OS thread that
// is locked for the life of its supervisor, with Pdeathsig set, so the kernel
// kills it when the daemon dies however that happens. Nothing here keeps
// containers alive: that is the per-container supervisors' job, which is why
// a plugin restart is harmless to running containers.
package host

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// Spec is one configured plugin.
type Spec struct {
	Layer plugin.Layer
	// Name is the instance name from config ("sandbox", "overlay").
	Name string
	// Path is the plugin binary, already resolved.
	Path string
	// SHA256 is the expected checksum of Path; nil means unchecked.
	SHA256 []byte
	// Default marks the default plugin of its layer.
	Default bool
	// Snapshotter is the snapshot plugin bound to an isolation plugin.
	Snapshotter string
	// StartTimeout bounds the launch handshake; 0 means DefaultStartTimeout.
	StartTimeout time.Duration
	// DecodeConfig decodes the plugin's config block against the schema the
	// plugin declared. nil means the plugin gets an empty config.
	DecodeConfig func(*schema.Spec) (schema.Config, error)
}

// ID returns "<layer>/<name>".
func (s Spec) ID() string { return string(s.Layer) + "/" + s.Name }

// Service is a core service the host brokers to plugins as a handle
// (plugin.HandleSystem, plugin.HandleImages): it registers itself on a gRPC
// server.
type Service func(s *grpc.Server)

// Options configure a Host.
type Options struct {
	Logger hclog.Logger
	// LogLevel is passed to plugins; they log at it and the host re-emits
	// their lines on Logger.
	LogLevel string
	// StateDir and RuntimeDir are the daemon's; each plugin gets
	// <StateDir>/plugins/<layer>-<name> and <RuntimeDir>/<layer>-<name>.
	StateDir   string
	RuntimeDir string
	// Services are the core services, by handle name.
	Services map[string]Service
	// HealthInterval is how often a running plugin is pinged; 0 means 5s.
	HealthInterval time.Duration
	// RestartBackoff is the first wait before a restart, doubled on each
	// failure up to MaxRestartBackoff; 0 means 500ms and 30s.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
}

// DefaultStartTimeout bounds a plugin's launch handshake.
const DefaultStartTimeout = 30 * time.Second

// Host supervises the configured plugins.
type Host struct {
	opts Options
	log  hclog.Logger

	mu        sync.Mutex
	instances map[string]*instance // by Spec.ID()
	order     []string             // start order
	stopped   bool
}

// New returns a Host; Start launches its plugins.
func New(opts Options) *Host {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 5 * time.Second
	}
	if opts.RestartBackoff == 0 {
		opts.RestartBackoff = 500 * time.Millisecond
	}
	if opts.MaxRestartBackoff == 0 {
		opts.MaxRestartBackoff = 30 * time.Second
	}
	return &Host{opts: opts, log: opts.Logger, instances: map[string]*instance{}}
}

// Start launches specs layer by layer (resources, snapshot, isolation,
// lifecycle, api), so every plugin's handles exist when it is configured.
// It returns the first-launch errors of all plugins that failed, joined; the
// plugins that did start keep running under supervision (call Stop).
func (h *Host) Start(ctx context.Context, specs []Spec) error {
	byLayer := map[plugin.Layer][]Spec{}
	for _, s := range specs {
		if !s.Layer.Valid() {
			return errdefs.InvalidArgument("plugin %s: unknown layer %q", s.ID(), s.Layer)
		}
		byLayer[s.Layer] = append(byLayer[s.Layer], s)
	}
	var errs []error
	for _, layer := range plugin.Layers {
		var wg sync.WaitGroup
		results := make([]error, len(byLayer[layer]))
		for i, s := range byLayer[layer] {
			inst, err := h.add(s)
			if err != nil {
				results[i] = err
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = inst.start(ctx)
			}()
		}
		wg.Wait()
		errs = append(errs, results...)
	}
	return errors.Join(errs...)
}

func (h *Host) add(s Spec) (*instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil, errdefs.Unavailable("plugin host is stopped")
	}
	if _, ok := h.instances[s.ID()]; ok {
		return nil, errdefs.AlreadyExists("plugin %s is configured twice", s.ID())
	}
	if s.StartTimeout == 0 {
		s.StartTimeout = DefaultStartTimeout
	}
	inst := newInstance(h, s)
	h.instances[s.ID()] = inst
	h.order = append(h.order, s.ID())
	return inst, nil
}

// Stop stops every plugin, in reverse start order, waiting for each to exit.
// It is safe to call more than once.
func (h *Host) Stop(ctx context.Context) {
	h.mu.Lock()
	h.stopped = true
	order := slices.Clone(h.order)
	h.mu.Unlock()
	slices.Reverse(order)
	for _, id := range order {
		h.mu.Lock()
		inst := h.instances[id]
		h.mu.Unlock()
		inst.stop(ctx)
	}
}

// Client returns the live client of plugin layer/name, for the core's own
// calls into plugins. It fails with ErrUnavailable while the plugin is
// restarting and ErrNotFound when it is not configured.
func (h *Host) Client(layer plugin.Layer, name string) (plugin.Client, error) {
	inst, err := h.instance(layer, name)
	if err != nil {
		return nil, err
	}
	return inst.liveClient()
}

// Default returns the name of the default plugin of layer: the one marked
// default, or the only one. ErrNotFound when the layer has none.
func (h *Host) Default(layer plugin.Layer) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for _, id := range h.order {
		s := h.instances[id].spec
		if s.Layer != layer {
			continue
		}
		if s.Default {
			return s.Name, nil
		}
		names = append(names, s.Name)
	}
	if len(names) == 1 {
		return names[0], nil
	}
	if len(names) == 0 {
		return "", errdefs.NotFound("no %s plugin is configured", layer)
	}
	return "", errdefs.NotFound("several %s plugins are configured and none is the default", layer)
}

func (h *Host) instance(layer plugin.Layer, name string) (*instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	inst, ok := h.instances[string(layer)+"/"+name]
	if !ok {
		return nil, errdefs.NotFound("plugin %q %q is not configured", layer, name)
	}
	return inst, nil
}

// Plugins reports every configured plugin, in start order.
func (h *Host) Plugins() []api.PluginStatus {
	h.mu.Lock()
	insts := make([]*instance, 0, len(h.order))
	for _, id := range h.order {
		insts = append(insts, h.instances[id])
	}
	h.mu.Unlock()
	out := make([]api.PluginStatus, 0, len(insts))
	for _, inst := range insts {
		out = append(out, inst.status())
	}
	return out
}

// handlesFor lists the handles a plugin of spec s is given: what its layer
// depends on, among what is configured.
func (h *Host) handlesFor(s Spec) map[string]connTarget {
	h.mu.Lock()
	defer h.mu.Unlock()
	targets := map[string]connTarget{}
	addPlugin := func(handle string, id string) {
		if inst, ok := h.instances[id]; ok {
			targets[handle] = connTarget{instance: inst}
		}
	}
	addService := func(name string) {
		if svc, ok := h.opts.Services[name]; ok {
			targets[name] = connTarget{service: svc}
		}
	}
	switch s.Layer {
	case plugin.LayerLifecycle:
		for _, id := range h.order {
			t := h.instances[id].spec
			switch t.Layer {
			case plugin.LayerResources:
				if t.Default || h.countLayerLocked(plugin.LayerResources) == 1 {
					addPlugin(plugin.HandleResources, id)
				}
			case plugin.LayerIsolation:
				addPlugin(plugin.HandleIsolationPrefix+t.Name, id)
			case plugin.LayerSnapshot:
				addPlugin(plugin.HandleSnapshotPrefix+t.Name, id)
			}
		}
		addService(plugin.HandleImages)
		addService(plugin.HandleNetwork)
	case plugin.LayerAPI:
		for _, id := range h.order {
			if h.instances[id].spec.Layer == plugin.LayerLifecycle {
				addPlugin(plugin.HandleLifecycle, id)
				break
			}
		}
		addService(plugin.HandleSystem)
		addService(plugin.HandleImages)
		addService(plugin.HandleNetwork)
	}
	return targets
}

func (h *Host) countLayerLocked(l plugin.Layer) int {
	n := 0
	for _, inst := range h.instances {
		if inst.spec.Layer == l {
			n++
		}
	}
	return n
}

// dependents returns the instances holding a handle to inst, with the handle
// name they hold it under.
func (h *Host) dependents(target *instance) map[*instance]string {
	h.mu.Lock()
	insts := slices.Collect(maps.Values(h.instances))
	h.mu.Unlock()
	out := map[*instance]string{}
	for _, inst := range insts {
		for name, t := range inst.handleTargets() {
			if t.instance == target {
				out[inst] = name
			}
		}
	}
	return out
}

// pluginDirs returns (creating them) the state and runtime dirs of s.
func (h *Host) pluginDirs(s Spec) (stateDir, runtimeDir string, err error) {
	base := string(s.Layer) + "-" + s.Name
	stateDir = filepath.Join(h.opts.StateDir, "plugins", base)
	runtimeDir = filepath.Join(h.opts.RuntimeDir, base)
	for _, d := range []string{stateDir, runtimeDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", "", fmt.Errorf("plugin %s: %w", s.ID(), err)
		}
	}
	return stateDir, runtimeDir, nil
}
