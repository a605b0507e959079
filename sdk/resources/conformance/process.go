package conformance

import (
	"os"
	"os/exec"
	"testing"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
)

// Launch starts the resources plugin binary at path as the core does (a
// separate process speaking go-plugin gRPC) and returns its client and the
// plugin's pid, so that a test can run the suite against the real process
// and look at the process itself (threads, CPU time in /proc). The process
// is stopped when t ends. env is added to the plugin's environment.
func Launch(t *testing.T, path string, env ...string) (*resources.Client, int) {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  plugin.Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{plugin.ProtocolVersion: {string(plugin.LayerResources): resources.NewPlugin(nil)}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		GRPCDialOptions:  errdefs.DialOptions(),
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: os.Stderr}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("launch plugin %s: %v", path, err)
	}
	raw, err := rpc.Dispense(string(plugin.LayerResources))
	if err != nil {
		t.Fatalf("dispense %s from %s: %v", plugin.LayerResources, path, err)
	}
	c, ok := raw.(*resources.Client)
	if !ok {
		t.Fatalf("plugin %s dispensed %T, want *resources.Client", path, raw)
	}
	return c, cmd.Process.Pid
}
