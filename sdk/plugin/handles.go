package plugin

import (
	"maps"
	"slices"
	"sync"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// Handle names the core brokers to plugins. A handle for a plugin of a layer
// with several instances carries the instance name after a slash.
const (
	// HandleResources is the resources controller.
	HandleResources = "resources"
	// HandleIsolationPrefix + mode ("isolation/sandbox") is an isolation runtime.
	HandleIsolationPrefix = "isolation/"
	// HandleSnapshotPrefix + name ("snapshot/overlay") is a snapshotter.
	HandleSnapshotPrefix = "snapshot/"
	// HandleLifecycle is the lifecycle manager.
	HandleLifecycle = "lifecycle"
	// HandleImages is the core's image service.
	HandleImages = "images"
	// HandleNetwork is the core's network service (sdk/network).
	HandleNetwork = "network"
	// HandleSystem is the core's system service (status, plugin list).
	HandleSystem = "system"
)

// Handles gives a plugin gRPC connections to the services the core brokered
// for it. Connections are opened on demand and reused; they go through the
// core, which forwards to the current process of the target plugin, so a
// connection stays usable across restarts of that plugin.
type Handles struct {
	mu     sync.Mutex
	broker *goplugin.GRPCBroker
	ids    map[string]uint32
	info   map[string]HandleInfo
	conns  map[string]*grpc.ClientConn
	errs   map[string]error
}

// HandleInfo describes the plugin a handle reaches, so that a plugin given
// several (lifecycle is given every isolation mode and every snapshotter)
// knows the default mode, which snapshotter is bound to which mode, and
// what each offers.
type HandleInfo struct {
	Layer Layer
	// Name is the plugin's instance name in config.hcl ("sandbox").
	Name    string
	Default bool
	// Snapshotter is, for an isolation plugin, the name of the snapshot
	// plugin bound to its mode (its handle is HandleSnapshotPrefix+name).
	Snapshotter  string
	Capabilities []string
}

// NewHandles is used by the SDK's server adapter; plugin code receives
// Handles in ConfigureRequest. info may be nil.
func NewHandles(broker *goplugin.GRPCBroker, ids map[string]uint32, info map[string]HandleInfo) *Handles {
	return &Handles{broker: broker, ids: ids, info: info, conns: map[string]*grpc.ClientConn{}, errs: map[string]error{}}
}

// dialAll opens every handle's connection now. go-plugin's broker keeps a
// brokered connection's address only for five seconds, so a plugin that
// dialled a handle lazily, on its first use minutes later, would find it
// gone; dialled here, during Configure, each connection is cached for the
// plugin's life. A failure is kept and returned by Dial.
func (h *Handles) dialAll() {
	for _, name := range h.Names() {
		_, _ = h.Dial(name)
	}
}

// Info describes the plugin handle name reaches; false for core services
// and unknown handles.
func (h *Handles) Info(name string) (HandleInfo, bool) {
	if h == nil {
		return HandleInfo{}, false
	}
	i, ok := h.info[name]
	return i, ok
}

// Default returns the handle of the default plugin of layer among those
// given, and false when there is none.
func (h *Handles) Default(layer Layer) (string, bool) {
	for _, name := range h.Names() {
		if i, ok := h.Info(name); ok && i.Layer == layer && i.Default {
			return name, true
		}
	}
	return "", false
}

// Names lists the handles this plugin was given, sorted.
func (h *Handles) Names() []string {
	if h == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(h.ids))
}

// Has reports whether handle name was given.
func (h *Handles) Has(name string) bool {
	if h == nil {
		return false
	}
	_, ok := h.ids[name]
	return ok
}

// Dial returns a connection to handle name. It fails with ErrNotFound when the
// core did not broker that handle (the plugin it names is not configured).
// Layer packages wrap it: resources.FromHandles, snapshot.FromHandles, ….
func (h *Handles) Dial(name string) (*grpc.ClientConn, error) {
	if h == nil {
		return nil, errdefs.NotFound("no handle %q: this plugin was given no handles", name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.conns[name]; ok {
		return c, nil
	}
	id, ok := h.ids[name]
	if !ok {
		return nil, errdefs.NotFound("no handle %q (given: %v); is that plugin configured in config.hcl?", name, h.Names())
	}
	if err, failed := h.errs[name]; failed {
		return nil, err
	}
	c, err := h.broker.DialWithOptions(id, errdefs.DialOptions()...)
	if err != nil {
		err = errdefs.Unavailable("dial handle %q: %v", name, err)
		h.errs[name] = err
		return nil, err
	}
	h.conns[name] = c
	return c, nil
}

// Close closes every connection opened by Dial.
func (h *Handles) Close() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, c := range h.conns {
		_ = c.Close()
		delete(h.conns, name)
	}
	return nil
}
