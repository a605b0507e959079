// Package sdk is what a Berth plugin author imports first: Serve turns an
// implementation of one layer's contract into a plugin binary.
//
//	package main
//
//	import "github.com/berth-dev/berth/sdk"
//
//	func main() { sdk.Serve(myplugin.New) }
//
// The layer contracts live in sdk/resources, sdk/isolation, sdk/snapshot,
// sdk/lifecycle and sdk/api; the base contract every plugin answers in
// sdk/plugin; typed errors in sdk/errdefs; config schemas in sdk/schema.
package sdk

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// LogLevelEnv is the environment variable through which the core tells a
// plugin its log level (the daemon's). Plugins log hclog JSON to stderr; the
// core re-emits each line in its own log, tagged with the plugin.
const LogLevelEnv = "BERTH_PLUGIN_LOG_LEVEL"

// Serve serves the plugin that factory builds and returns when the core
// stops it. factory receives the logger the plugin must use (never
// fmt.Print: stdout belongs to the go-plugin handshake). The implementation
// must satisfy exactly one layer contract; Serve exits with a message
// otherwise. Run by hand rather than by the core, the binary says it is a
// plugin and exits.
func Serve[T plugin.Base](factory func(log hclog.Logger) T) {
	level := hclog.LevelFromString(os.Getenv(LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	log := hclog.New(&hclog.LoggerOptions{Level: level, Output: os.Stderr, JSONFormat: true})
	impl := factory(log)
	layer, glue, err := Glue(impl)
	if err != nil {
		log.Error("cannot serve plugin", "error", err)
		os.Exit(1)
	}
	watchParent()
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: plugin.Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{
			plugin.ProtocolVersion: {string(layer): glue},
		},
		GRPCServer: NewGRPCServer,
		Logger:     log,
	})
}

// NewGRPCServer returns a gRPC server with Berth's error mapping installed;
// go-plugin calls it with its own options.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, errdefs.ServerOptions()...)...)
}

// Glue returns the layer impl serves and the go-plugin glue for it. impl must
// implement exactly one layer contract.
func Glue(impl plugin.Base) (plugin.Layer, goplugin.Plugin, error) {
	type candidate struct {
		layer plugin.Layer
		glue  func() goplugin.Plugin
	}
	var found []candidate
	if c, ok := impl.(resources.Controller); ok {
		found = append(found, candidate{plugin.LayerResources, func() goplugin.Plugin { return resources.NewPlugin(c) }})
	}
	if c, ok := impl.(snapshot.Snapshotter); ok {
		found = append(found, candidate{plugin.LayerSnapshot, func() goplugin.Plugin { return snapshot.NewPlugin(c) }})
	}
	if c, ok := impl.(isolation.Runtime); ok {
		found = append(found, candidate{plugin.LayerIsolation, func() goplugin.Plugin { return isolation.NewPlugin(c) }})
	}
	if c, ok := impl.(lifecycle.Manager); ok {
		found = append(found, candidate{plugin.LayerLifecycle, func() goplugin.Plugin { return lifecycle.NewPlugin(c) }})
	}
	if c, ok := impl.(api.Frontend); ok {
		found = append(found, candidate{plugin.LayerAPI, func() goplugin.Plugin { return api.NewPlugin(c) }})
	}
	switch len(found) {
	case 0:
		return "", nil, fmt.Errorf("%T implements no layer contract (resources.Controller, snapshot.Snapshotter, isolation.Runtime, lifecycle.Manager or api.Frontend)", impl)
	case 1:
		return found[0].layer, found[0].glue(), nil
	default:
		return "", nil, fmt.Errorf("%T implements %d layer contracts; a plugin serves exactly one", impl, len(found))
	}
}

// ClientPlugins is the plugin set the core dispenses clients from: one entry
// per layer, keyed by layer name.
func ClientPlugins() goplugin.PluginSet {
	return goplugin.PluginSet{
		string(plugin.LayerResources): resources.ClientPlugin(),
		string(plugin.LayerSnapshot):  snapshot.ClientPlugin(),
		string(plugin.LayerIsolation): isolation.ClientPlugin(),
		string(plugin.LayerLifecycle): lifecycle.ClientPlugin(),
		string(plugin.LayerAPI):       api.ClientPlugin(),
	}
}
