// Command lifecycleprobe is a lifecycle plugin for the host's tests. It
// uses the resources handle it is brokered and records, one line each in
// <state dir>/probe.log: the group it created through the handle at its
// first use (6 s after Configure), every HandleChanged it receives, and
// after a handle comes back the groups the restarted resources plugin lists.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

func main() { sdk.Serve(func(hclog.Logger) *probe { return &probe{} }) }

// probe answers only the base contract; the embedded nil Manager makes it a
// lifecycle plugin for go-plugin's dispatch, and its layer calls are never
// made by these tests.
type probe struct {
	lifecycle.Manager
	mu   sync.Mutex
	res  *resources.Client
	logf string
}

func (p *probe) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerLifecycle, "probe", "0.0.1", lifecycle.CapEvents), nil
}

func (p *probe) ConfigSchema(context.Context) (*schema.Spec, error) { return schema.Empty(), nil }

func (p *probe) Configure(ctx context.Context, req plugin.ConfigureRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logf = filepath.Join(req.StateDir, "probe.log")
	p.record("handles %v", req.Handles.Names())
	if i, ok := req.Handles.Info(plugin.HandleResources); ok {
		p.record("info resources layer=%s name=%s default=%v caps=%v", i.Layer, i.Name, i.Default, i.Capabilities)
	}
	// The first use of the handle comes well after Configure, as a lazy
	// plugin's would: go-plugin forgets an undialled brokered address after
	// five seconds, so this proves the SDK dialled it during Configure.
	go func() {
		time.Sleep(6 * time.Second)
		res, err := resources.FromHandles(req.Handles)
		if err != nil {
			p.mu.Lock()
			p.record("late-dial %v", err)
			p.mu.Unlock()
			return
		}
		pl, err := res.CreateGroup(context.Background(), "probe-group", resources.Limits{})
		p.mu.Lock()
		p.res = res
		p.record("create-group %s %v", pl.CgroupPath, err)
		p.mu.Unlock()
	}()
	return nil
}

func (p *probe) HandleChanged(ctx context.Context, c plugin.HandleChange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("handle-changed %s available=%v", c.Handle, c.Available)
	if c.Available && c.Handle == plugin.HandleResources && p.res != nil {
		_, err := p.res.CreateGroup(ctx, "after-restart", resources.Limits{})
		groups, lerr := p.res.List(ctx)
		p.record("after-restart create=%v list=%d %v", err, len(groups), lerr)
	}
}

func (p *probe) record(format string, args ...any) {
	f, err := os.OpenFile(p.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}
