// Package plugin holds the contract every Berth plugin answers whatever its
// layer (Info, ConfigSchema, Configure), the go-plugin handshake and
// protocol versions, and the brokered handles through which a plugin reaches
// the plugins and core services it depends on.
//
// Plugin authors rarely import this package directly: they implement a layer
// interface (sdk/resources.Controller, sdk/snapshot.Snapshotter, …), which
// embeds Base, and call sdk.Serve from main.
package plugin

import (
	"context"
	"runtime"
	"slices"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/schema"
)

// Layer names one of Berth's five layers.
type Layer string

// The five layers, in the order they are started.
const (
	LayerResources Layer = "resources"
	LayerIsolation Layer = "isolation"
	LayerSnapshot  Layer = "snapshot"
	LayerLifecycle Layer = "lifecycle"
	LayerAPI       Layer = "api"
)

// Layers lists every layer, in start order: a layer only depends on layers
// before it.
var Layers = []Layer{LayerResources, LayerSnapshot, LayerIsolation, LayerLifecycle, LayerAPI}

// Valid reports whether l is one of the five layers.
func (l Layer) Valid() bool { return slices.Contains(Layers, l) }

// ProtocolVersion is the go-plugin wire protocol this SDK speaks. It changes
// only on a wire break; features are negotiated with API versions instead.
const ProtocolVersion = 1

// APIVersion is the newest layer API version this SDK implements. Plugins
// list every version they support in Info.APIVersions; the core picks the
// newest it shares with the plugin and passes it to Configure.
const APIVersion = "v1"

// Handshake is the go-plugin handshake shared by the core and every plugin.
// The cookie is not a security measure: it stops a plugin binary that is run
// by hand from waiting forever for a host.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "BERTH_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "4c0a3f1e9d2b4e87a5b6c7d8e9f0a1b2",
}

// Info describes a plugin. Capabilities are the layer-specific feature names
// the plugin really offers (see each layer's Cap* constants); a plugin built
// for a platform it cannot serve reports none rather than pretending.
type Info struct {
	Layer        Layer
	Name         string
	Version      string
	APIVersions  []string
	OS           string
	Arch         string
	Capabilities []string
}

// HasCapability reports whether the plugin declared capability c.
func (i Info) HasCapability(c string) bool { return slices.Contains(i.Capabilities, c) }

// Platform returns "os/arch".
func (i Info) Platform() string { return i.OS + "/" + i.Arch }

// HostInfo fills the OS and Arch of an Info with those of the running binary.
func HostInfo(layer Layer, name, version string, capabilities ...string) Info {
	return Info{
		Layer:        layer,
		Name:         name,
		Version:      version,
		APIVersions:  []string{APIVersion},
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
		Capabilities: capabilities,
	}
}

// ConfigureRequest is what the core hands a plugin once, after launch and
// after every restart, before any layer call.
type ConfigureRequest struct {
	// Config is the plugin's block of config.hcl, already decoded and
	// validated against the schema the plugin declared.
	Config schema.Config
	// APIVersion is the version negotiated from Info.APIVersions.
	APIVersion string
	// StateDir is a directory the plugin owns for persistent state
	// (<state_dir>/plugins/<layer>-<name>); it exists and survives restarts.
	StateDir string
	// RuntimeDir is a directory the plugin owns for sockets and pid files
	// (<runtime_dir>/<layer>-<name>); it exists, is short, and may be wiped
	// by a host reboot.
	RuntimeDir string
	// Handles reach the plugins and core services this plugin depends on.
	// nil when it has none.
	Handles *Handles
}

// Base is the contract every plugin answers.
type Base interface {
	// Info describes the plugin. It may be called before Configure.
	Info(ctx context.Context) (Info, error)
	// ConfigSchema declares the plugin's settings. It may be called before
	// Configure, and must not depend on configuration.
	ConfigSchema(ctx context.Context) (*schema.Spec, error)
	// Configure applies the config. The core calls it before any layer
	// call and again after a restart of the plugin; it must be safe to call
	// more than once.
	Configure(ctx context.Context, req ConfigureRequest) error
}

// HandleWatcher is implemented by plugins that want to know when a handle
// they were given goes away (its plugin crashed) or comes back (it was
// restarted). A brokered handle stays valid across such restarts: calls made
// while it is away fail with errdefs.ErrUnavailable.
type HandleWatcher interface {
	HandleChanged(ctx context.Context, change HandleChange)
}

// HandleChange reports one handle becoming unavailable or available again.
type HandleChange struct {
	Handle    string
	Available bool
	Reason    string
}
