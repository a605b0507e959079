package manager

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/lifecycle/conformance"
	"github.com/berth-dev/berth/sdk/plugin"
)

func fakeSuiteOptions() conformance.Options {
	return conformance.Options{
		Sleeper: lifecycle.Config{Image: "alpine", Cmd: []string{"sleep", "3600"}},
		Exiter: func(code int) lifecycle.Config {
			return lifecycle.Config{Image: "alpine", Cmd: []string{"exit", strconv.Itoa(code)}}
		},
		Stubborn: &lifecycle.Config{Image: "alpine", Cmd: []string{"ignore", "TERM"}},
	}
}

func configuredFake(t *testing.T) *Manager {
	m := NewWithLayers(hclog.NewNullLogger(), newFakeLayers())
	if err := m.Configure(context.Background(), plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	m.settings.RestartBackoff = 5 * time.Millisecond // the suite waits for restarts
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestConformance runs the lifecycle suite against the manager over the
// recording fakes, in process and through the gRPC adapters.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) lifecycle.Manager { return configuredFake(t) }, fakeSuiteOptions())
}

func TestConformanceOverGRPC(t *testing.T) {
	conformance.RunOverGRPC(t, configuredFake(t), fakeSuiteOptions())
}
