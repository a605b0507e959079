package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// configSchema declares the plugin's settings in config.hcl:
//
//	plugin "resources" "darwin" {
//	  sample_interval = "500ms" # memory checks and usage sampling
//	  cpu_tick        = "50ms"  # duty-cycle step while a group has a CPU quota
//	  rlimit_nofile   = 0       # open files per process; 0 = inherit
//	  rlimit_fsize    = 0       # largest file a process may write, bytes
//	  rlimit_cpu      = 0       # CPU seconds per process (SIGXCPU, then kill)
//	}
//
// The rlimits go into every group's wrapper command.
var configSchema = schema.Object(map[string]*schema.Spec{
	"sample_interval": schema.Default(schema.Attr("sample_interval", "string", false), schema.Literal(`"500ms"`)),
	"cpu_tick":        schema.Default(schema.Attr("cpu_tick", "string", false), schema.Literal(`"50ms"`)),
	"rlimit_nofile":   schema.Default(schema.Attr("rlimit_nofile", "number", false), schema.Literal(`0`)),
	"rlimit_fsize":    schema.Default(schema.Attr("rlimit_fsize", "number", false), schema.Literal(`0`)),
	"rlimit_cpu":      schema.Default(schema.Attr("rlimit_cpu", "number", false), schema.Literal(`0`)),
})

type settings struct {
	SampleInterval string `json:"sample_interval"`
	CPUTick        string `json:"cpu_tick"`
	RlimitNofile   uint64 `json:"rlimit_nofile"`
	RlimitFsize    uint64 `json:"rlimit_fsize"`
	RlimitCPU      uint64 `json:"rlimit_cpu"`
}

// capabilities are what the engine enforces for real. Not here: cpuset,
// swap, IO bandwidth (darwin has throttling tiers, not byte rates), pids
// (RLIMIT_NPROC is per user, not per container) and device rules.
var capabilities = []string{
	resources.CapCPUShares, resources.CapCPUQuota, resources.CapMemoryHard, resources.CapMemorySoft,
	resources.CapUsage, resources.CapEventsOOM, resources.CapEventsMemory, resources.CapEventsCPU,
}

// controller is a resources.Controller for hosts without cgroups. Groups
// are recorded in <state dir>/groups (limits, paused mark, attached
// processes) so a restarted plugin picks up where it was; the engine does
// the enforcing.
type controller struct {
	log    hclog.Logger
	broker *rpolicy.Broker
	// newSource returns the OS's stats source; nil where there is none.
	newSource func() rpolicy.Source

	mu         sync.Mutex
	configured bool
	settings   settings
	engine     *rpolicy.Engine
	store      rpolicy.Store
	records    map[string]rpolicy.Record
}

var _ resources.Controller = (*controller)(nil)

// New returns an unconfigured controller over this OS's source.
func New(log hclog.Logger) *controller {
	return &controller{log: log, broker: rpolicy.NewBroker(log), newSource: newSource, records: map[string]rpolicy.Record{}}
}

// Info implements plugin.Base. A build for an OS without a source
// declares nothing.
func (c *controller) Info(context.Context) (plugin.Info, error) {
	var caps []string
	if c.newSource() != nil {
		caps = capabilities
	}
	return plugin.HostInfo(plugin.LayerResources, "darwin", Version, caps...), nil
}

// ConfigSchema implements plugin.Base.
func (c *controller) ConfigSchema(context.Context) (*schema.Spec, error) { return configSchema, nil }

func parseDuration(name, v, def string) (time.Duration, error) {
	if v == "" {
		v = def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Millisecond {
		return 0, errdefs.InvalidArgument("resources-darwin: %s %q is not a duration of at least 10ms (write it like %q)", name, v, def)
	}
	return d, nil
}

// Configure implements plugin.Base. Called again, it restarts the engine
// over the recorded groups.
func (c *controller) Configure(_ context.Context, req plugin.ConfigureRequest) error {
	var s settings
	if err := req.Config.Decode(&s); err != nil {
		return errdefs.InvalidArgument("resources-darwin: %v", err)
	}
	sample, err := parseDuration("sample_interval", s.SampleInterval, "500ms")
	if err != nil {
		return err
	}
	tick, err := parseDuration("cpu_tick", s.CPUTick, "50ms")
	if err != nil {
		return err
	}
	src := c.newSource()
	if src == nil {
		return errdefs.NotImplemented("resources-darwin has no process statistics source on this platform")
	}
	store := rpolicy.Store{}
	if req.StateDir != "" {
		store.Dir = filepath.Join(req.StateDir, "groups")
	}
	records, err := store.Load()
	if err != nil {
		return errdefs.InvalidState("resources-darwin: %v", err)
	}
	engine := rpolicy.NewEngine(src, rpolicy.EngineOptions{SampleInterval: sample, CPUTick: tick, Publish: c.broker.Publish, Log: c.log.Named("engine")})
	for id, r := range records {
		if err := engine.Add(id, r.Limits, r.Paused); err != nil {
			engine.Close()
			return err
		}
		if err := engine.Restore(id, r.Roots); err != nil {
			c.log.Warn("cannot restore the processes of a group", "group", id, "error", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engine != nil {
		c.engine.Close()
	}
	c.engine, c.store, c.records, c.settings, c.configured = engine, store, records, s, true
	c.log.Info("configured", "groups", len(records), "sample_interval", sample, "cpu_tick", tick, "state", store.Dir)
	return nil
}

// Close stops the engine and ends every Events stream (in-process tests).
func (c *controller) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engine != nil {
		c.engine.Close()
		c.engine = nil
	}
	c.configured = false
	c.broker.Close()
}

func (c *controller) lockConfigured() error {
	c.mu.Lock()
	if !c.configured {
		c.mu.Unlock()
		return errdefs.InvalidState("resources-darwin is not configured yet")
	}
	return nil
}

// unsupported refuses limits this plugin cannot enforce.
func unsupported(l resources.Limits) error {
	fields := []struct {
		name, capability string
		set              bool
	}{
		{"CPUSetCPUs/CPUSetMems", resources.CapCPUSet, l.CPUSetCPUs != "" || l.CPUSetMems != ""},
		{"SwapBytes", resources.CapSwap, l.SwapBytes != 0},
		{"IOReadBPS/IOWriteBPS", resources.CapIOBandwidth, l.IOReadBPS != 0 || l.IOWriteBPS != 0},
		{"Pids", resources.CapPids, l.Pids != 0},
		{"Devices", resources.CapDevices, len(l.Devices) != 0},
	}
	for _, f := range fields {
		if f.set {
			return errdefs.NotImplemented("resources-darwin cannot enforce %s on this platform (no %q)", f.name, f.capability)
		}
	}
	return nil
}

func check(id string, l resources.Limits) error {
	if err := rpolicy.ValidateID(id); err != nil {
		return err
	}
	if err := rpolicy.Validate(l, 0); err != nil {
		return err
	}
	return unsupported(l)
}

// CreateGroup implements resources.Controller. The placement is the
// wrapper command: this binary in wrap mode, with the group's priority
// and IO policy.
func (c *controller) CreateGroup(_ context.Context, id string, limits resources.Limits) (resources.Placement, error) {
	if err := check(id, limits); err != nil {
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	if err := c.lockConfigured(); err != nil {
		return resources.Placement{}, err
	}
	defer c.mu.Unlock()
	if _, ok := c.records[id]; ok {
		return resources.Placement{}, errdefs.AlreadyExists("group %s already exists", id)
	}
	r := rpolicy.Record{ID: id, Limits: limits, Created: time.Now()}
	if err := c.store.Put(r); err != nil {
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	if err := c.engine.Add(id, limits, false); err != nil {
		_ = c.store.Remove(id)
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	c.records[id] = r
	return c.placement(id, limits), nil
}

// placement is the wrapper command for limits: a process group of its own,
// the configured rlimits, the nice value of the CPU shares, and for low
// shares (a quarter of the default or less) background CPU and throttled
// IO. Called with c.mu held.
func (c *controller) placement(id string, l resources.Limits) resources.Placement {
	exe, err := os.Executable()
	if err != nil {
		exe = "resources-darwin"
	}
	args := []string{exe, wrapCommand, "-group", id}
	for _, rl := range []struct {
		flag  string
		value uint64
	}{{"-rlimit-nofile", c.settings.RlimitNofile}, {"-rlimit-fsize", c.settings.RlimitFsize}, {"-rlimit-cpu", c.settings.RlimitCPU}} {
		if rl.value != 0 {
			args = append(args, rl.flag, strconv.FormatUint(rl.value, 10))
		}
	}
	if l.CPUShares != 0 {
		args = append(args, "-nice", strconv.Itoa(rpolicy.NiceForShares(l.CPUShares)))
		if l.CPUShares <= 256 {
			args = append(args, "-background", "-io-throttle")
		}
	}
	args = append(args, "--")
	return resources.Placement{Wrapper: args, Annotations: map[string]string{"berth.resources.darwin/group": id}}
}

func (c *controller) record(id string) (rpolicy.Record, error) {
	r, ok := c.records[id]
	if !ok {
		return r, errdefs.NotFound("group %s does not exist", id)
	}
	return r, nil
}

// Attach implements resources.Controller.
func (c *controller) Attach(_ context.Context, id string, pid int) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	r, err := c.record(id)
	if err != nil {
		return err
	}
	if pid <= 0 {
		return errdefs.InvalidArgument("attach to group %s: pid %d is not a process id", id, pid)
	}
	root, err := c.engine.Attach(id, pid)
	if err != nil {
		return fmt.Errorf("attach pid %d to group %s: %w", pid, id, err)
	}
	if slices.Contains(r.Roots, root) {
		return nil
	}
	before := r.Roots
	r.Roots = append(slices.DeleteFunc(slices.Clone(r.Roots), func(x rpolicy.Root) bool { return x.Pid == pid }), root)
	if err := c.store.Put(r); err != nil {
		_ = c.engine.Restore(id, before)
		return fmt.Errorf("attach pid %d to group %s: %w", pid, id, err)
	}
	c.records[id] = r
	// A process is in one group: forget it in the others' records.
	for oid, o := range c.records {
		if oid != id && slices.ContainsFunc(o.Roots, func(x rpolicy.Root) bool { return x.Pid == pid }) {
			o.Roots = slices.DeleteFunc(o.Roots, func(x rpolicy.Root) bool { return x.Pid == pid })
			if err := c.store.Put(o); err == nil {
				c.records[oid] = o
			}
		}
	}
	return nil
}

// Update implements resources.Controller. New processes started through
// the old placement keep its priority; the engine's limits change now.
func (c *controller) Update(_ context.Context, id string, limits resources.Limits) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	r, err := c.record(id)
	if err != nil {
		return err
	}
	if err := check(id, limits); err != nil {
		return fmt.Errorf("update group %s: %w", id, err)
	}
	old := r.Limits
	r.Limits = limits
	if err := c.store.Put(r); err != nil {
		return fmt.Errorf("update group %s: %w", id, err)
	}
	if err := c.engine.Update(id, limits); err != nil {
		r.Limits = old
		_ = c.store.Put(r)
		return fmt.Errorf("update group %s: %w", id, err)
	}
	c.records[id] = r
	return nil
}

// SetPaused implements resources.Controller.
func (c *controller) SetPaused(_ context.Context, id string, paused bool) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	r, err := c.record(id)
	if err != nil {
		return err
	}
	r.Paused = paused
	if err := c.store.Put(r); err != nil {
		return fmt.Errorf("mark group %s paused=%v: %w", id, paused, err)
	}
	c.records[id] = r
	return c.engine.SetPaused(id, paused)
}

// Usage implements resources.Controller.
func (c *controller) Usage(_ context.Context, id string) (resources.Usage, error) {
	if err := c.lockConfigured(); err != nil {
		return resources.Usage{}, err
	}
	defer c.mu.Unlock()
	if _, err := c.record(id); err != nil {
		return resources.Usage{}, err
	}
	return c.engine.Usage(id)
}

// List implements resources.Controller. Pids are sampled now.
func (c *controller) List(context.Context) ([]resources.Group, error) {
	if err := c.lockConfigured(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	out := make([]resources.Group, 0, len(c.records))
	for _, id := range slices.Sorted(maps.Keys(c.records)) {
		r := c.records[id]
		if _, err := c.engine.Usage(id); err != nil {
			return nil, fmt.Errorf("list group %s: %w", id, err)
		}
		pids, err := c.engine.Pids(id)
		if err != nil {
			return nil, err
		}
		out = append(out, resources.Group{ID: id, Limits: r.Limits, Placement: c.placement(id, r.Limits), Paused: r.Paused, Pids: pids})
	}
	return out, nil
}

// Delete implements resources.Controller: the group is forgotten and any
// process its CPU quota had stopped is continued (unless it is paused).
func (c *controller) Delete(_ context.Context, id string) error {
	if err := rpolicy.ValidateID(id); err != nil {
		return fmt.Errorf("delete group: %w", err)
	}
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if err := c.store.Remove(id); err != nil {
		return fmt.Errorf("delete group %s: %w", id, err)
	}
	c.engine.Remove(id)
	delete(c.records, id)
	return nil
}

// Events implements resources.Controller.
func (c *controller) Events(ctx context.Context) (<-chan resources.LimitEvent, error) {
	return c.broker.Subscribe(ctx), nil
}
