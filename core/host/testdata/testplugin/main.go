// Command testplugin is a resources plugin for the host's tests. Its
// behaviour is chosen by the name it is run under (tests copy it):
//
//	resources-ok          serves normally
//	resources-hang        never completes the handshake
//	resources-crashstart  exits before the handshake
//	resources-badproto    speaks go-plugin protocol version 99
//	resources-freeze      serves, then stops itself (SIGSTOP) after 1s:
//	                      alive but not answering health checks
package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

func main() {
	mode := strings.TrimPrefix(filepath.Base(os.Args[0]), "resources-")
	switch mode {
	case "hang":
		select {}
	case "crashstart":
		os.Stderr.WriteString("testplugin: crashing on purpose\n")
		os.Exit(3)
	case "badproto":
		hs := plugin.Handshake
		hs.ProtocolVersion = 99
		goplugin.Serve(&goplugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]goplugin.PluginSet{99: {"resources": resources.NewPlugin(&controller{})}},
			GRPCServer:       sdk.NewGRPCServer,
		})
		return
	case "freeze":
		go func() {
			time.Sleep(time.Second)
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		}()
	}
	sdk.Serve(func(hclog.Logger) *controller { return &controller{groups: map[string]resources.Group{}} })
}

// controller keeps groups in memory; it is only here to be launched.
type controller struct {
	mu     sync.Mutex
	groups map[string]resources.Group
}

func (c *controller) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerResources, "test", "0.0.1", resources.CapUsage), nil
}

func (c *controller) ConfigSchema(context.Context) (*schema.Spec, error) {
	return schema.Object(map[string]*schema.Spec{
		"label": schema.Attr("label", "string", true),
	}), nil
}

func (c *controller) Configure(context.Context, plugin.ConfigureRequest) error { return nil }

func (c *controller) CreateGroup(_ context.Context, id string, l resources.Limits) (resources.Placement, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.groups[id]; ok {
		return resources.Placement{}, errdefs.AlreadyExists("group %s exists", id)
	}
	p := resources.Placement{CgroupPath: "/test/" + id}
	c.groups[id] = resources.Group{ID: id, Limits: l, Placement: p}
	return p, nil
}

func (c *controller) Attach(_ context.Context, id string, pid int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.groups[id]
	if !ok {
		return errdefs.NotFound("group %s not found", id)
	}
	g.Pids = append(g.Pids, pid)
	c.groups[id] = g
	return nil
}

func (c *controller) Update(context.Context, string, resources.Limits) error { return nil }
func (c *controller) SetPaused(context.Context, string, bool) error          { return nil }

func (c *controller) Usage(_ context.Context, id string) (resources.Usage, error) {
	return resources.Usage{Time: time.Now()}, nil
}

func (c *controller) List(context.Context) ([]resources.Group, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []resources.Group
	for _, g := range c.groups {
		out = append(out, g)
	}
	return out, nil
}

func (c *controller) Delete(_ context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.groups, id)
	return nil
}

func (c *controller) Events(ctx context.Context) (<-chan resources.LimitEvent, error) {
	ch := make(chan resources.LimitEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}
