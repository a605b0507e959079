package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// Version is the plugin's version, reported in Info.
const Version = "0.1.0"

// configSchema declares the plugin's settings in config.hcl:
//
//	plugin "resources" "procfs" {
//	  proc_root       = "/proc" # where procfs is mounted
//	  sample_interval = "2s"    # how often the shared sampler reads /proc
//	}
var configSchema = schema.Object(map[string]*schema.Spec{
	"proc_root":       schema.Default(schema.Attr("proc_root", "string", false), schema.Literal(`"/proc"`)),
	"sample_interval": schema.Default(schema.Attr("sample_interval", "string", false), schema.Literal(`"2s"`)),
})

// settings is the decoded config. Empty fields (a Configure with no config)
// take the schema's defaults.
type settings struct {
	ProcRoot       string `json:"proc_root"`
	SampleInterval string `json:"sample_interval"`
}

// controller is a resources.Controller that accounts for the processes
// attached to its groups by reading /proc, and enforces nothing.
//
// Groups live in memory and in <state dir>/groups.json, rewritten
// atomically on every change and reloaded by Configure, so the groups and
// their processes survive a restart of the plugin. CPU time seen by the
// sampler between two changes is not persisted: after a restart, a process
// that exited while the plugin was down counts the CPU time recorded at the
// last change.
//
// One sampler goroutine serves every group: every sample_interval it reads
// the stat of every attached process, so that the CPU time of a process is
// remembered after it exits (counters stay cumulative) and peak memory is
// tracked. Usage also samples its group on the spot.
type controller struct {
	log hclog.Logger

	mu         sync.Mutex
	configured bool
	procRoot   string
	interval   time.Duration
	statePath  string // "" = not persisted (no state dir)
	groups     map[string]*group
	sampling   bool
	stop       chan struct{}
}

var _ resources.Controller = (*controller)(nil)

// New returns an unconfigured controller; the core calls Configure before
// any layer call.
func New(log hclog.Logger) *controller {
	return &controller{log: log, groups: map[string]*group{}, stop: make(chan struct{})}
}

// Info implements plugin.Base. The plugin needs procfs: built for a
// platform without it, it declares no capability.
func (c *controller) Info(context.Context) (plugin.Info, error) {
	var caps []string
	if runtime.GOOS == "linux" {
		caps = append(caps, resources.CapUsage)
	}
	return plugin.HostInfo(plugin.LayerResources, "procfs", Version, caps...), nil
}

// ConfigSchema implements plugin.Base.
func (c *controller) ConfigSchema(context.Context) (*schema.Spec, error) { return configSchema, nil }

// Configure implements plugin.Base. It may be called again at any time; it
// reloads the groups from the state dir, which holds every change made so
// far, so nothing is lost.
func (c *controller) Configure(_ context.Context, req plugin.ConfigureRequest) error {
	var s settings
	if err := req.Config.Decode(&s); err != nil {
		return errdefs.InvalidArgument("resources-procfs: %v", err)
	}
	if s.ProcRoot == "" {
		s.ProcRoot = "/proc"
	}
	if s.SampleInterval == "" {
		s.SampleInterval = "2s"
	}
	interval, err := time.ParseDuration(s.SampleInterval)
	if err != nil || interval <= 0 {
		return errdefs.InvalidArgument("resources-procfs: sample_interval %q is not a positive duration (write it like \"2s\" or \"500ms\")", s.SampleInterval)
	}
	if st, err := os.Stat(s.ProcRoot); err != nil || !st.IsDir() {
		return errdefs.InvalidArgument("resources-procfs: proc_root %q is not a directory: procfs is needed (this plugin serves Linux only)", s.ProcRoot)
	}
	statePath := ""
	groups := map[string]*group{}
	if req.StateDir != "" {
		statePath = filepath.Join(req.StateDir, stateFile)
		if groups, err = loadState(statePath); err != nil {
			return err
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.procRoot, c.interval, c.statePath, c.groups = s.ProcRoot, interval, statePath, groups
	c.configured = true
	if !c.sampling {
		c.sampling = true
		go c.sampleLoop()
	}
	c.log.Info("configured", "proc_root", s.ProcRoot, "sample_interval", interval, "groups", len(groups), "state", statePath)
	return nil
}

// Close stops the sampler. The plugin process never needs it; tests that
// build controllers in process do.
func (c *controller) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
}

// unsupported returns ErrNotImplemented naming the first limit set in l:
// this plugin enforces none, and a limit it cannot enforce is refused
// rather than ignored. IODevice only says where IOReadBPS and IOWriteBPS
// apply, so it is no limit by itself.
func unsupported(l resources.Limits) error {
	fields := []struct {
		name, capability string
		set              bool
		value            any
	}{
		{"CPUShares", resources.CapCPUShares, l.CPUShares != 0, l.CPUShares},
		{"CPUs", resources.CapCPUQuota, l.CPUs != 0, l.CPUs},
		{"CPUSetCPUs", resources.CapCPUSet, l.CPUSetCPUs != "", l.CPUSetCPUs},
		{"CPUSetMems", resources.CapCPUSet, l.CPUSetMems != "", l.CPUSetMems},
		{"MemoryBytes", resources.CapMemoryHard, l.MemoryBytes != 0, l.MemoryBytes},
		{"MemorySoftBytes", resources.CapMemorySoft, l.MemorySoftBytes != 0, l.MemorySoftBytes},
		{"SwapBytes", resources.CapSwap, l.SwapBytes != 0, l.SwapBytes},
		{"IOReadBPS", resources.CapIOBandwidth, l.IOReadBPS != 0, l.IOReadBPS},
		{"IOWriteBPS", resources.CapIOBandwidth, l.IOWriteBPS != 0, l.IOWriteBPS},
		{"Pids", resources.CapPids, l.Pids != 0, l.Pids},
		{"Devices", resources.CapDevices, len(l.Devices) != 0, fmt.Sprintf("%d rules", len(l.Devices))},
	}
	for _, f := range fields {
		if f.set {
			return errdefs.NotImplemented("resources-procfs enforces no limits: %s = %v was given (use a resources plugin that declares %q)", f.name, f.value, f.capability)
		}
	}
	return nil
}

// lockConfigured locks c and checks Configure ran; on error c is unlocked.
func (c *controller) lockConfigured() error {
	c.mu.Lock()
	if !c.configured {
		c.mu.Unlock()
		return errdefs.InvalidState("resources-procfs is not configured yet")
	}
	return nil
}

// commit persists c.groups after a change; when that fails the change is
// undone (groups is restored to before), so memory and disk agree. Called
// with c.mu held.
func (c *controller) commit(before map[string]*group) error {
	if c.statePath == "" {
		return nil
	}
	if err := saveState(c.statePath, c.groups); err != nil {
		c.groups = before
		return err
	}
	return nil
}

// snapshot returns a deep copy of c.groups, to undo a change with. Called
// with c.mu held.
func (c *controller) snapshot() map[string]*group {
	out := make(map[string]*group, len(c.groups))
	for id, g := range c.groups {
		out[id] = g.clone()
	}
	return out
}

// CreateGroup implements resources.Controller.
func (c *controller) CreateGroup(_ context.Context, id string, limits resources.Limits) (resources.Placement, error) {
	if id == "" {
		return resources.Placement{}, errdefs.InvalidArgument("create group: empty id")
	}
	if err := unsupported(limits); err != nil {
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	if err := c.lockConfigured(); err != nil {
		return resources.Placement{}, err
	}
	defer c.mu.Unlock()
	if _, ok := c.groups[id]; ok {
		return resources.Placement{}, errdefs.AlreadyExists("group %s already exists", id)
	}
	before := c.snapshot()
	c.groups[id] = &group{ID: id, Created: time.Now()}
	if err := c.commit(before); err != nil {
		return resources.Placement{}, fmt.Errorf("create group %s: %w", id, err)
	}
	return placement(), nil
}

// placement is the same for every group: there is nothing to join, the
// isolation layer attaches the container's init after it starts.
func placement() resources.Placement {
	return resources.Placement{Annotations: map[string]string{"berth.resources.procfs/enforcement": "none"}}
}

// Attach implements resources.Controller. A process is in at most one
// group: attaching it elsewhere moves it, and the CPU time it used in the
// old group stays counted there.
func (c *controller) Attach(_ context.Context, id string, pid int) error {
	if pid <= 0 {
		return errdefs.InvalidArgument("attach to group %s: invalid pid %d", id, pid)
	}
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	g, ok := c.groups[id]
	if !ok {
		return errdefs.NotFound("attach pid %d: group %s not found", pid, id)
	}
	st, err := readStat(c.procRoot, pid)
	if errors.Is(err, os.ErrNotExist) || (err == nil && st.Zombie) {
		return errdefs.NotFound("attach to group %s: process %d is not running", id, pid)
	}
	if err != nil {
		return fmt.Errorf("attach pid %d to group %s: %w", pid, id, err)
	}
	for _, p := range g.Procs {
		if p.Pid == pid && p.StartTicks == st.StartTicks {
			return nil // already here
		}
	}
	before := c.snapshot()
	for _, other := range c.groups {
		other.Procs = slices.DeleteFunc(other.Procs, func(p *proc) bool {
			if p.Pid != pid {
				return false
			}
			// Moved away or, with another start time, long gone: its
			// CPU time stays with the group it was in.
			if p.StartTicks == st.StartTicks {
				p.CPUTicks = max(p.CPUTicks, st.CPUTicks)
			}
			other.ExitedCPUTicks += p.used()
			return true
		})
	}
	g = c.groups[id]
	g.Procs = append(g.Procs, &proc{Pid: pid, StartTicks: st.StartTicks, BaseTicks: st.CPUTicks, CPUTicks: st.CPUTicks})
	if err := c.commit(before); err != nil {
		return fmt.Errorf("attach pid %d to group %s: %w", pid, id, err)
	}
	return nil
}

// Update implements resources.Controller: only "no limits" is accepted.
func (c *controller) Update(_ context.Context, id string, limits resources.Limits) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if _, ok := c.groups[id]; !ok {
		return errdefs.NotFound("update group %s: not found", id)
	}
	if err := unsupported(limits); err != nil {
		return fmt.Errorf("update group %s: %w", id, err)
	}
	return nil
}

// SetPaused implements resources.Controller. Nothing here could resume a
// paused group; the flag is recorded for List.
func (c *controller) SetPaused(_ context.Context, id string, paused bool) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	g, ok := c.groups[id]
	if !ok {
		return errdefs.NotFound("set paused on group %s: not found", id)
	}
	if g.Paused == paused {
		return nil
	}
	before := c.snapshot()
	c.groups[id].Paused = paused
	if err := c.commit(before); err != nil {
		return fmt.Errorf("set paused on group %s: %w", id, err)
	}
	return nil
}

// Usage implements resources.Controller. CPU time is counted in clock
// ticks of 10ms (see clockTicks); memory is the RSS of the live processes;
// a process that exited contributes the CPU time it had used, and nothing
// else.
func (c *controller) Usage(_ context.Context, id string) (resources.Usage, error) {
	if err := c.lockConfigured(); err != nil {
		return resources.Usage{}, err
	}
	defer c.mu.Unlock()
	g, ok := c.groups[id]
	if !ok {
		return resources.Usage{}, errdefs.NotFound("usage of group %s: not found", id)
	}
	c.sampleLocked(g)
	u := resources.Usage{Time: time.Now(), CPUUsageNanos: g.ExitedCPUTicks * nanosPerTick, MemoryPeakBytes: g.PeakRSS}
	for _, p := range g.Procs {
		u.CPUUsageNanos += p.used() * nanosPerTick
		u.MemoryBytes += p.RSS
		u.Pids++
	}
	return u, nil
}

// List implements resources.Controller. Pids are the attached processes
// still running.
func (c *controller) List(context.Context) ([]resources.Group, error) {
	if err := c.lockConfigured(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	out := make([]resources.Group, 0, len(c.groups))
	for _, id := range slices.Sorted(maps.Keys(c.groups)) {
		g := c.groups[id]
		c.sampleLocked(g)
		pids := make([]int, 0, len(g.Procs))
		for _, p := range g.Procs {
			pids = append(pids, p.Pid)
		}
		out = append(out, resources.Group{ID: id, Paused: g.Paused, Placement: placement(), Pids: pids})
	}
	return out, nil
}

// Delete implements resources.Controller. Deleting a missing group
// succeeds.
func (c *controller) Delete(_ context.Context, id string) error {
	if err := c.lockConfigured(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if _, ok := c.groups[id]; !ok {
		return nil
	}
	before := c.snapshot()
	delete(c.groups, id)
	if err := c.commit(before); err != nil {
		return fmt.Errorf("delete group %s: %w", id, err)
	}
	return nil
}

// Events implements resources.Controller. This plugin enforces no limit, so
// no limit is ever hit: the stream never carries an event. It stays open
// until ctx is done, then closes, as the contract requires.
func (c *controller) Events(ctx context.Context) (<-chan resources.LimitEvent, error) {
	ch := make(chan resources.LimitEvent)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

// sampleLoop is the one sampler shared by every group.
func (c *controller) sampleLoop() {
	for {
		c.mu.Lock()
		interval := c.interval
		c.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
		c.mu.Lock()
		for _, g := range c.groups {
			c.sampleLocked(g)
		}
		c.mu.Unlock()
	}
}

// sampleLocked reads the stat and RSS of every process in g. A process
// that exited (or whose pid now names another process) leaves g.Procs,
// its CPU time folded into g.ExitedCPUTicks. Called with c.mu held; the
// change is kept in memory only (see controller).
func (c *controller) sampleLocked(g *group) {
	var total uint64
	g.Procs = slices.DeleteFunc(g.Procs, func(p *proc) bool {
		st, err := readStat(c.procRoot, p.Pid)
		if err == nil && st.StartTicks == p.StartTicks {
			p.CPUTicks = max(p.CPUTicks, st.CPUTicks)
			if !st.Zombie {
				if rss, err := readRSS(c.procRoot, p.Pid); err == nil {
					p.RSS = rss
				}
				total += p.RSS
				return false
			}
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cannot read process stat; counting it as exited", "group_id", g.ID, "pid", p.Pid, "error", err)
		}
		g.ExitedCPUTicks += p.used()
		return true
	})
	g.PeakRSS = max(g.PeakRSS, total)
}
