// Package api is layer 5 of Berth: frontends, and the public system service.
//
// A Frontend plugin (api-grpc; later a containerd shim frontend) serves
// users on endpoints of its own, reaching the rest of Berth only through the
// handles the core brokers to it: "system" (this package's System, served by
// the core) and, once they are configured, "lifecycle" and "images".
//
// System is also what the core serves on its own admin socket, so that
// `berth system status|stop` and `berth plugin ls` work while any plugin,
// the api plugin included, restarts.
package api

import (
	"context"
	"time"

	"github.com/berth-dev/berth/sdk/plugin"
)

// Capabilities an api plugin may declare.
const (
	CapGRPC    = "grpc"
	CapREST    = "rest"
	CapSystem  = "system"
	CapPlugins = "plugins"
)

// Endpoint is where a frontend serves: Kind "grpc" or "rest", Address a URL
// such as "unix:///run/berth/api.sock".
type Endpoint struct {
	Kind    string
	Address string
}

// Frontend is the api layer contract.
type Frontend interface {
	plugin.Base
	// Endpoints lists where the frontend serves now. It is empty until
	// Configure succeeded.
	Endpoints(ctx context.Context) ([]Endpoint, error)
}

// VersionInfo describes a build of Berth.
type VersionInfo struct {
	Version    string
	Commit     string
	GoVersion  string
	OS         string
	Arch       string
	APIVersion string
}

// Plugin health values in PluginStatus.
const (
	HealthStarting   = "starting"
	HealthHealthy    = "healthy"
	HealthUnhealthy  = "unhealthy"
	HealthRestarting = "restarting"
	HealthFailed     = "failed"
	HealthStopped    = "stopped"
)

// PluginStatus describes one configured plugin as the core supervises it.
type PluginStatus struct {
	Layer        plugin.Layer
	Name         string
	Version      string
	Platform     string
	Pid          int
	Health       string
	Path         string
	Restarts     int
	LastError    string
	Default      bool
	Capabilities []string
	StartedAt    time.Time
}

// Status describes the running daemon.
type Status struct {
	Version     VersionInfo
	Pid         int
	StartedAt   time.Time
	ConfigFile  string
	StateDir    string
	RuntimeDir  string
	AdminSocket string
	Endpoints   []Endpoint
	Plugins     []PluginStatus
}

// System is the public system service.
type System interface {
	Version(ctx context.Context) (VersionInfo, error)
	Status(ctx context.Context) (Status, error)
	Plugins(ctx context.Context) ([]PluginStatus, error)
	// Shutdown stops the daemon and its plugins; containers keep running.
	// It returns once the shutdown has begun.
	Shutdown(ctx context.Context) error
}
