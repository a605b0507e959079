// Package version is the build's version, shared by the berth binary and the
// in-tree plugins. Version and Commit are set at link time by the Makefile
// (-X github.com/berth-dev/berth/internal/version.Version=…).
package version

import (
	"runtime"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/plugin"
)

// Set by -ldflags at build time.
var (
	Version = "0.1.0-dev"
	Commit  = "unknown"
)

// Info returns this build's version info.
func Info() api.VersionInfo {
	return api.VersionInfo{
		Version:    Version,
		Commit:     Commit,
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		APIVersion: plugin.APIVersion,
	}
}
