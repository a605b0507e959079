//go:build !linux

package cgroupctl

import (
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/rpolicy"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// newBackend fails off Linux: cgroups exist only there. Info then declares
// no capabilities, which is how the plugin says it cannot serve this host.
func newBackend(settings, string, hclog.Logger) (backend, error) {
	return nil, errdefs.NotImplemented("resources-cgroup needs Linux cgroups; on this platform use resources \"darwin\"")
}

func newMonitor(backend, *rpolicy.Broker, time.Duration, hclog.Logger) (monitor, error) {
	return nil, errdefs.NotImplemented("resources-cgroup needs Linux cgroups")
}
