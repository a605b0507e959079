// Package cgroupctl is Berth's resources controller on Linux cgroups (v1,
// hybrid and v2, detected at Configure), served by the resources-cgroup
// plugin and meant to be embedded where the same limits must hold inside a
// VM guest. See Controller.
package cgroupctl

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/rpolicy"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// Version is the plugin's version, reported in Info.
const Version = "0.1.0"

// Controller is a resources.Controller on Linux cgroups.
//
// Each group is the cgroup <parent>/<id> in every hierarchy (v1) or in the
// unified one (v2). Limits and the paused mark are recorded in
// <state dir>/groups/<id>.json, so after a restart List and Update know what
// each group was given; Configure adopts cgroups it finds without a record
// and recreates cgroups of records whose cgroup is gone (after a reboot).
//
// One monitor (monitor_linux.go) serves every group: a single goroutine
// waits in epoll on the v1 OOM and threshold eventfds and the v2 inotify
// watch of memory.events of all groups, and samples CPU throttling of the
// groups with a CPU quota on one shared timer. Its events fan out to every
// Events subscriber through the broker.
type Controller struct {
	log hclog.Logger

	mu         sync.Mutex
	configured bool
	settings   settings
	be         backend
	store      rpolicy.Store
	records    map[string]rpolicy.Record
	mon        monitor
	broker     *rpolicy.Broker
}

// monitor watches groups for limit events; see monitor_linux.go.
type monitor interface {
	// watch starts or refreshes watching id under limits l.
	watch(id string, l resources.Limits) error
	// unwatch stops watching id; unwatching a group not watched is a no-op.
	unwatch(id string)
	// close stops the monitor and releases its descriptors.
	close()
}

var _ resources.Controller = (*Controller)(nil)

// New returns an unconfigured controller; the core (or an embedder) calls
// Configure before any layer call.
func New(log hclog.Logger) *Controller {
	return &Controller{log: log, broker: rpolicy.NewBroker(log), records: map[string]rpolicy.Record{}}
}

// Info implements plugin.Base. The capabilities are those of the hierarchy
// in use (or, before Configure, of the one auto-detection picks); a host
// without cgroups, or a build for another OS, declares none.
func (c *Controller) Info(context.Context) (plugin.Info, error) {
	c.mu.Lock()
	be := c.be
	c.mu.Unlock()
	if be == nil {
		s, _ := decodeSettings(schema.Config{})
		if b, err := newBackend(s, "", c.log); err == nil {
			be = b
		}
	}
	var caps []string
	if be != nil {
		caps = be.capabilities()
	}
	return plugin.HostInfo(plugin.LayerResources, "cgroup", Version, caps...), nil
}

// ConfigSchema implements plugin.Base.
func (c *Controller) ConfigSchema(context.Context) (*schema.Spec, error) { return configSchema, nil }

// Configure implements plugin.Base. It may be called again: groups are kept
// (they live in cgroupfs and the state dir), and the monitor is restarted
// over all of them.
func (c *Controller) Configure(_ context.Context, req plugin.ConfigureRequest) error {
	s, err := decodeSettings(req.Config)
	if err != nil {
		return err
	}
	be, err := newBackend(s, req.StateDir, c.log)
	if err != nil {
		return err
	}
	if err := be.prepare(); err != nil {
		return err
	}
	store := rpolicy.Store{}
	if req.StateDir != "" {
		store.Dir = filepath.Join(req.StateDir, "groups")
	}
	records, err := store.Load()
	if err != nil {
		return errdefs.InvalidState("resources-cgroup: %v", err)
	}
	if err := c.reconcile(be, store, records); err != nil {
		return err
	}
	mon, err := newMonitor(be, c.broker, s.interval, c.log)
	if err != nil {
		return fmt.Errorf("resources-cgroup: start the monitor: %w", err)
	}
	for id, r := range records {
		if err := mon.watch(id, r.Limits); err != nil {
			c.log.Warn("cannot monitor group", "group", id, "error", err)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mon != nil {
		c.mon.close()
	}
	c.settings, c.be, c.store, c.records, c.mon = s, be, store, records, mon
	c.configured = true
	c.log.Info("configured", "mode", be.mode(), "parent", s.Parent, "groups", len(records), "state", store.Dir, "capabilities", be.capabilities())
	return nil
}

// reconcile makes records and cgroupfs agree: a cgroup under the parent
// with no record is adopted with no limits, a record whose cgroup is gone
// gets its cgroup back.
func (c *Controller) reconcile(be backend, store rpolicy.Store, records map[string]rpolicy.Record) error {
	ids, err := be.ids()
	if err != nil {
		return fmt.Errorf("resources-cgroup: list groups: %w", err)
	}
	for _, id := range ids {
		if _, ok := records[id]; ok || rpolicy.ValidateID(id) != nil {
			continue
		}
		r := rpolicy.Record{ID: id, Created: time.Now()}
		if err := store.Put(r); err != nil {
			return fmt.Errorf("resources-cgroup: adopt group %s: %w", id, err)
		}
		records[id] = r
		c.log.Warn("adopted a cgroup that had no record", "group", id)
	}
	for id, r := range records {
		if be.exists(id) {
			continue
		}
		if err := be.create(id, r.Limits); err != nil {
			c.log.Error("cannot recreate the cgroup of a recorded group", "group", id, "error", err)
			continue
		}
		c.log.Info("recreated the cgroup of a recorded group", "group", id)
	}
	return nil
}

// Close stops the monitor and closes every Events stream; the controller
// is unconfigured after it. The plugin process never needs it; in-process
// tests do.
func (c *Controller) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mon != nil {
		c.mon.close()
		c.mon = nil
	}
	c.configured = false
	c.broker.Close()
}

// lockConfigured locks c and checks Configure ran; on error c is unlocked.
func (c *Controller) lockConfigured() error {
	c.mu.Lock()
	if !c.configured {
		c.mu.Unlock()
		return errdefs.InvalidState("resources-cgroup is not configured yet")
	}
	return nil
}

// check validates id and limits before anything is touched.
func (c *Controller) check(id string, l resources.Limits) error {
	if err := rpolicy.ValidateID(id); err != nil {
		return err
	}
	if err := rpolicy.Validate(l, 0); err != nil {
		return err
	}
	return c.be.unsupported(l)
}

// CreateGroup implements resources.Controller.
func (c *Controller) CreateGroup(_ context.Context, id string, limits resources.Limits) (resources.Placement, error) {
	if err := c.lockConfigured(); err != nil {
		return resources.Placement{}, err
	}
	defer c.mu.Unlock()
	if err := c.check(id, limits); err != nil {
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	if _, ok := c.records[id]; ok {
		return resources.Placement{}, errdefs.AlreadyExists("group %s already exists", id)
	}
	if c.be.exists(id) {
		return resources.Placement{}, errdefs.AlreadyExists("group %s: its cgroup already exists (left by another run? remove it or pick another id)", id)
	}
	if err := c.be.create(id, limits); err != nil {
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	r := rpolicy.Record{ID: id, Limits: limits, Created: time.Now()}
	if err := c.store.Put(r); err != nil {
		if rerr := c.be.remove(id); rerr != nil {
			c.log.Error("cannot undo a group whose record failed", "group", id, "error", rerr)
		}
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	c.records[id] = r
	if err := c.mon.watch(id, limits); err != nil {
		c.log.Warn("cannot monitor group", "group", id, "error", err)
	}
	return c.be.placement(id), nil
}

// record returns the record of id or ErrNotFound. Called with c.mu held.
func (c *Controller) record(id string) (rpolicy.Record, error) {
	r, ok := c.records[id]
	if !ok {
		return r, errdefs.NotFound("group %s does not exist", id)
	}
	return r, nil
}

// Attach implements resources.Controller.
func (c *Controller) Attach(_ context.Context, id string, pid int) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if _, err := c.record(id); err != nil {
		return err
	}
	if pid <= 0 {
		return errdefs.InvalidArgument("attach to group %s: pid %d is not a process id", id, pid)
	}
	if err := c.be.attach(id, pid); err != nil {
		return fmt.Errorf("attach pid %d to group %s: %w", pid, id, err)
	}
	return nil
}

// Update implements resources.Controller.
func (c *Controller) Update(_ context.Context, id string, limits resources.Limits) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	r, err := c.record(id)
	if err != nil {
		return err
	}
	if err := c.check(id, limits); err != nil {
		return fmt.Errorf("update group %s: %w", id, err)
	}
	if err := c.be.update(id, r.Limits, limits); err != nil {
		// Put back what was there, so the record stays true.
		if rerr := c.be.update(id, limits, r.Limits); rerr != nil {
			c.log.Error("cannot restore the limits of a group after a failed update", "group", id, "error", rerr)
		}
		return fmt.Errorf("update group %s: %w", id, err)
	}
	old := r.Limits
	r.Limits = limits
	if err := c.store.Put(r); err != nil {
		if rerr := c.be.update(id, limits, old); rerr != nil {
			c.log.Error("cannot restore the limits of a group after a failed update", "group", id, "error", rerr)
		}
		return fmt.Errorf("update group %s: %w", id, err)
	}
	c.records[id] = r
	if err := c.mon.watch(id, limits); err != nil {
		c.log.Warn("cannot monitor group", "group", id, "error", err)
	}
	return nil
}

// SetPaused implements resources.Controller. It records the mark only:
// freezing is the isolation layer's job, and nothing here ever thaws.
func (c *Controller) SetPaused(_ context.Context, id string, paused bool) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	r, err := c.record(id)
	if err != nil {
		return err
	}
	if r.Paused == paused {
		return nil
	}
	r.Paused = paused
	if err := c.store.Put(r); err != nil {
		return fmt.Errorf("mark group %s paused=%v: %w", id, paused, err)
	}
	c.records[id] = r
	return nil
}

// Usage implements resources.Controller.
func (c *Controller) Usage(_ context.Context, id string) (resources.Usage, error) {
	if err := c.lockConfigured(); err != nil {
		return resources.Usage{}, err
	}
	defer c.mu.Unlock()
	if _, err := c.record(id); err != nil {
		return resources.Usage{}, err
	}
	u, err := c.be.usage(id)
	if err != nil {
		return resources.Usage{}, fmt.Errorf("usage of group %s: %w", id, err)
	}
	return u, nil
}

// List implements resources.Controller.
func (c *Controller) List(context.Context) ([]resources.Group, error) {
	if err := c.lockConfigured(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	out := make([]resources.Group, 0, len(c.records))
	for _, id := range slices.Sorted(maps.Keys(c.records)) {
		r := c.records[id]
		pids, err := c.be.pids(id)
		if err != nil {
			return nil, fmt.Errorf("list group %s: %w", id, err)
		}
		out = append(out, resources.Group{ID: id, Limits: r.Limits, Placement: c.be.placement(id), Paused: r.Paused, Pids: pids})
	}
	return out, nil
}

// Delete implements resources.Controller. Processes still in the group are
// moved to the plugin's own cgroup (nothing is killed) so that the cgroup
// can go; deleting a missing group succeeds.
func (c *Controller) Delete(_ context.Context, id string) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if err := rpolicy.ValidateID(id); err != nil {
		return fmt.Errorf("delete group: %w", err)
	}
	c.mon.unwatch(id)
	if err := c.be.remove(id); err != nil {
		if r, ok := c.records[id]; ok {
			if werr := c.mon.watch(id, r.Limits); werr != nil {
				c.log.Warn("cannot monitor group", "group", id, "error", werr)
			}
		}
		return fmt.Errorf("delete group %s: %w", id, err)
	}
	if err := c.store.Remove(id); err != nil {
		return fmt.Errorf("delete group %s: %w", id, err)
	}
	delete(c.records, id)
	return nil
}

// Events implements resources.Controller.
func (c *Controller) Events(ctx context.Context) (<-chan resources.LimitEvent, error) {
	return c.broker.Subscribe(ctx), nil
}
