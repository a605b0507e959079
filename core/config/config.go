// Package config loads Berth's config.hcl: the daemon's own settings and the
// plugins that serve each of the five layers.
//
// # File format
//
//	berth {                                  # optional, at most one
//	  state_dir   = "/var/lib/berth"         # default shown
//	  runtime_dir = "/run/berth"             # sockets and pid file; /var/run/berth on darwin
//	  plugin_dirs = ["bin/plugins", "/usr/local/lib/berth/plugins", "/usr/lib/berth/plugins"]
//	  log_level   = "info"                   # trace, debug, info, warn, error, off
//	  log_file    = ""                       # default <state_dir>/berthd.log
//	  insecure_registries = []               # registries (host[:port]) reached over plain HTTP;
//	                                         # localhost and 127.0.0.1 always are
//	  pull_parallelism    = 4                # layers one pull downloads at once, 1..16
//	  dns_upstreams       = []               # resolvers ("IP" or "IP:PORT") the networks' DNS
//	                                         # servers forward to; empty: the host's resolv.conf
//	  default_bridge      = "berth0"         # the default network's bridge (≤ 15 characters)
//	  default_subnet      = "10.88.0.0/16"   # and its IPv4 subnet
//	  firewall            = "auto"           # auto, nftables, iptables (iptables-legacy, iptables-nft):
//	                                         # the backend of network rules; auto: nftables if usable
//	  network_datapath    = "auto"           # auto, kernel (bridge + nft, root on Linux), user (a
//	                                         # user-mode switch per network, VMs only); auto: kernel
//	                                         # when root on Linux, else user
//	}
//
//	plugin "<layer>" "<name>" {              # layer: resources, isolation, snapshot, lifecycle, api
//	  enabled       = true                   # optional, default true
//	  default       = false                  # optional; see "Defaults" below
//	  path          = ""                     # optional binary; else <layer>-<name> in plugin_dirs
//	  sha256        = ""                     # optional, 64 hex digits of the binary
//	  start_timeout = "30s"                  # optional Go duration, > 0
//	  snapshotter   = "overlay"              # isolation plugins only: the snapshot plugin bound to this mode
//	  ...                                    # anything else: the plugin's own settings
//	}
//
// The six envelope attributes above ([ReservedAttributes]) are reserved in
// every plugin block and decoded here (hcl.Body.PartialContent); all other
// attributes and blocks are the plugin's settings, kept as [Plugin.Body] and
// decoded later by [DecodePluginBody] against the schema the plugin declares
// (sdk/schema), so unknown or mistyped settings are reported at their place
// in the file even though this package knows no plugin. Envelope errors are
// found by Load, plugin-setting errors only by DecodePluginBody.
//
// # Expressions
//
// Every attribute, in the envelope and in plugin settings, is an HCL
// expression evaluated with [NewEvalContext]: the variables platform
// (runtime.GOOS), arch (runtime.GOARCH) and env (an object of the process
// environment: env.HOME, lookup(env, "X", "fallback")), and the cty standard
// library functions (upper, lower, format, join, split, concat, coalesce,
// contains, length, min, max, replace, trimspace, lookup, merge, try, can, …).
// Typical use: enabled = platform == "linux".
//
// # Rules
//
//   - Plugin names are lower-case letters, digits, '-', '_' and '.', at most
//     32 bytes (they become binary and socket names).
//   - A (layer, name) pair appears once, enabled or not.
//   - Disabled plugins (enabled = false) are fully checked for envelope
//     errors, then set aside in [Config.Disabled]; they never count for
//     defaults, snapshotter bindings or duplicates of defaults.
//   - Defaults: at most one enabled plugin per layer may say default = true.
//     The default of a layer is that plugin, else the only enabled plugin of
//     the layer, else none ([Config.Default]).
//   - snapshotter is only allowed on isolation plugins. On an enabled one it
//     must name an enabled snapshot plugin; when it is unset the snapshot
//     layer's default is used, and it is an error if several snapshot plugins
//     are enabled and none is the default ([Config.SnapshotterFor]).
//   - Relative paths (state_dir, runtime_dir, plugin_dirs, log_file, path)
//     are resolved against the directory holding config.hcl.
//   - A runtime_dir longer than [MaxRuntimeDirLen] bytes draws a warning:
//     unix socket paths must stay under 104 bytes on macOS.
//
// # Diagnostics
//
// Every problem is an hcl.Diagnostic with a Subject range. Problems inside a
// plugin block have Detail prefixed with `in plugin "<layer>" "<name>": `.
// [FormatDiagnostics] renders one line per problem
// (config.hcl:12,3-8: in plugin "snapshot" "overlay": An argument named
// "bogus" is not expected here.); [Loader.WriteDiagnostics] renders HCL's
// source snippets for humans.
package config

import (
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Layer is one of the five plugin layers.
type Layer string

// The layers, in the order the core starts them.
const (
	LayerResources Layer = "resources"
	LayerIsolation Layer = "isolation"
	LayerSnapshot  Layer = "snapshot"
	LayerLifecycle Layer = "lifecycle"
	LayerAPI       Layer = "api"
)

// Layers lists every valid layer.
var Layers = []Layer{LayerResources, LayerIsolation, LayerSnapshot, LayerLifecycle, LayerAPI}

// Defaults for the berth block and plugin envelopes.
const (
	DefaultStateDir     = "/var/lib/berth"
	DefaultLogLevel     = "info"
	DefaultStartTimeout = 30 * time.Second
	// DefaultPullParallelism is how many layers a pull downloads at once.
	DefaultPullParallelism = 4
	// MaxPullParallelism bounds berth.pull_parallelism.
	MaxPullParallelism = 16
	// MaxRuntimeDirLen is the longest runtime_dir accepted without a warning,
	// leaving room for socket names under the 104-byte macOS limit.
	MaxRuntimeDirLen = 64
)

// DefaultPluginDirs are searched, in order, when berth.plugin_dirs is unset.
var DefaultPluginDirs = []string{"bin/plugins", "/usr/local/lib/berth/plugins", "/usr/lib/berth/plugins"}

// Config is a loaded, checked config.hcl. It is only returned when loading
// produced no errors, so every field holds a valid value.
type Config struct {
	Filename string
	Berth    Berth
	// Plugins are the enabled plugins, in file order.
	Plugins []*Plugin
	// Disabled are plugin blocks with enabled = false, in file order.
	Disabled []*Plugin
}

// Berth is the daemon's own settings, defaults applied and paths absolute.
type Berth struct {
	StateDir   string
	RuntimeDir string
	PluginDirs []string
	LogLevel   string // trace, debug, info, warn, error or off
	LogFile    string
	// InsecureRegistries are registries (host[:port]) the image service
	// reaches over plain HTTP; localhost and 127.0.0.1 always are.
	InsecureRegistries []string
	// PullParallelism is how many layers one pull downloads at once.
	PullParallelism int
	// DNSUpstreams are the resolvers ("IP:PORT") every network's DNS
	// server forwards names it does not own to; empty means the host's
	// /etc/resolv.conf nameservers.
	DNSUpstreams []string
	// DefaultBridge and DefaultSubnet are the default network's bridge
	// and subnet; empty means berth0 and 10.88.0.0/16. Two daemons on
	// one host need different ones.
	DefaultBridge string
	DefaultSubnet string
	DefRange      hcl.Range // the berth block, or the file start when absent
	// Firewall is the network rules' backend (netdp.Firewall*: "auto",
	// "nftables", "iptables", "iptables-legacy", "iptables-nft"); empty
	// is auto.
	Firewall string
	// NetworkDatapath is "auto" (or empty), "kernel" or "user": the
	// datapath of every network (core/network.ChooseDatapath).
	NetworkDatapath string
}

// Plugin is one plugin block: its envelope decoded, its own settings kept
// as Body for [DecodePluginBody].
type Plugin struct {
	Layer        Layer
	Name         string
	Enabled      bool
	Default      bool          // default = true was written (see Config.Default for the resolved default)
	Path         string        // absolute binary path, "" = search Berth.PluginDirs for BinaryName()
	SHA256       string        // lower-case hex, "" = not verified
	StartTimeout time.Duration // DefaultStartTimeout when unset
	Snapshotter  string        // isolation plugins only; "" = the snapshot layer's default

	// Body holds the plugin's own settings (the envelope attributes hidden).
	Body hcl.Body
	// DeclRange covers `plugin "<layer>" "<name>"`.
	DeclRange hcl.Range

	ctx *hcl.EvalContext
}

// String names the block as the user wrote it: plugin "snapshot" "overlay".
func (p *Plugin) String() string { return fmt.Sprintf("plugin %q %q", p.Layer, p.Name) }

// BinaryName is the file name searched for in the plugin dirs: <layer>-<name>.
func (p *Plugin) BinaryName() string { return string(p.Layer) + "-" + p.Name }

// Layer returns the enabled plugins of layer l, in file order.
func (c *Config) Layer(l Layer) []*Plugin {
	var out []*Plugin
	for _, p := range c.Plugins {
		if p.Layer == l {
			out = append(out, p)
		}
	}
	return out
}

// Lookup returns the enabled plugin (l, name), or nil.
func (c *Config) Lookup(l Layer, name string) *Plugin {
	for _, p := range c.Plugins {
		if p.Layer == l && p.Name == name {
			return p
		}
	}
	return nil
}

// Default returns the default plugin of layer l: the enabled one marked
// default = true, else the only enabled one, else nil.
func (c *Config) Default(l Layer) *Plugin {
	ps := c.Layer(l)
	for _, p := range ps {
		if p.Default {
			return p
		}
	}
	if len(ps) == 1 {
		return ps[0]
	}
	return nil
}

// SnapshotterFor returns the snapshot plugin bound to the isolation plugin
// p: the one its snapshotter names, else the snapshot layer's default. It is
// nil only when no snapshot plugin is enabled (or p is not an isolation plugin).
func (c *Config) SnapshotterFor(p *Plugin) *Plugin {
	if p.Layer != LayerIsolation {
		return nil
	}
	if p.Snapshotter != "" {
		return c.Lookup(LayerSnapshot, p.Snapshotter)
	}
	return c.Default(LayerSnapshot)
}
