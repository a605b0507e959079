package rpolicy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/resources"
)

// Proc is one row of the host's process table.
type Proc struct {
	Pid, PPid, Pgid int
	// Start tells a process from a later one that reuses its pid; any
	// monotonic per-process value the OS gives (start ticks, start time).
	Start uint64
}

// ProcStat is one process's resource use.
type ProcStat struct {
	// CPU is the process's cumulative CPU time (user + system).
	CPU time.Duration
	// Footprint is its physical memory footprint in bytes (darwin's
	// ri_phys_footprint; resident set size on Linux).
	Footprint uint64
	// ReadBytes and WriteBytes are its cumulative disk IO.
	ReadBytes, WriteBytes uint64
}

// Source is what the Engine needs of an operating system: the process
// table, per-process statistics, and the two actions it takes besides
// signals. One Source serves every group.
type Source interface {
	// Table returns every process the source can see.
	Table() ([]Proc, error)
	// Stat returns pid's use now; an error wrapping os.ErrNotExist means
	// the process is gone.
	Stat(pid int) (ProcStat, error)
	// Background lowers (on) the CPU and IO priority of pid
	// (PRIO_DARWIN_BG on darwin, nice 19 on Linux) or restores it (off) to
	// what the group's CPU shares give (NiceForShares).
	Background(pid int, on bool, shares uint64) error
	// Signal sends sig to pid.
	Signal(pid int, sig syscall.Signal) error
}

// EngineOptions tune an Engine.
type EngineOptions struct {
	// SampleInterval is how often memory is checked and usage sampled;
	// 500ms when zero.
	SampleInterval time.Duration
	// CPUTick is the duty cycle's step while some group has a CPU quota;
	// 50ms when zero. The scheduler wakes this often only then.
	CPUTick time.Duration
	// Publish receives every limit event.
	Publish func(resources.LimitEvent)
	Log     hclog.Logger
}

// Engine enforces Limits by sampling, for platforms without cgroups. One
// goroutine (the scheduler) serves every group:
//
//   - membership: a group is the processes attached to it, their process
//     groups (the darwin wrapper makes each container a process group
//     leader) and their descendants, read from one process table per
//     tick for all groups;
//   - memory hard limit: when the group's footprint exceeds MemoryBytes,
//     every member is SIGKILLed and an oom_kill event is sent;
//   - memory soft limit: above MemorySoftBytes the members are put in the
//     background and a memory_pressure event is sent, nothing is killed;
//     back below, the priority is restored;
//   - CPU quota: a token bucket refilled at CPUs per second; a group out of
//     tokens is SIGSTOPped and SIGCONTinued when it has some again. A group
//     marked paused is never continued (the isolation layer froze it).
//
// Usage counters are cumulative: CPU time and IO of members that exited
// stay counted.
type Engine struct {
	src  Source
	opts EngineOptions
	log  hclog.Logger

	mu     sync.Mutex
	groups map[string]*egroup
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

type procKey struct {
	pid   int
	start uint64
}

// egroup is the engine's state of one group.
type egroup struct {
	limits resources.Limits
	roots  []procKey
	paused bool

	// members seen in the last tick.
	members []int
	// seen is each member's last reading, for cumulative counters.
	seen     map[procKey]ProcStat
	gone     ProcStat // sums of members that exited
	peak     uint64
	lastFoot uint64

	// duty cycle
	tokens     time.Duration
	lastCPU    time.Duration
	lastTick   time.Time
	stopped    bool
	throttles  uint64
	lastThrEv  time.Time
	throttleNs time.Duration

	background bool
	oomKills   uint64
	pressure   uint64
}

// NiceForShares maps a CPU weight to a nice value: the kernel's weight
// changes by about 1.25x per nice step, so shares 256 (a quarter of the
// default 1024) is nice 6. 0 means the default weight, nice 0.
func NiceForShares(shares uint64) int {
	if shares == 0 {
		return 0
	}
	n := int(math.Round(math.Log(1024/float64(shares)) / math.Log(1.25)))
	return min(max(n, -20), 19)
}

// maxBurst caps the CPU time a group can save up: enough to make up for
// time it could not run while the host was busy, not enough to let it run
// far above its quota after idling. A new group starts with none.
const maxBurst = 250 * time.Millisecond

// NewEngine starts an engine over src. Close stops it.
func NewEngine(src Source, opts EngineOptions) *Engine {
	if opts.SampleInterval <= 0 {
		opts.SampleInterval = 500 * time.Millisecond
	}
	if opts.CPUTick <= 0 {
		opts.CPUTick = 50 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.Publish == nil {
		opts.Publish = func(resources.LimitEvent) {}
	}
	e := &Engine{src: src, opts: opts, log: opts.Log, groups: map[string]*egroup{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go e.run()
	return e
}

// Close stops the scheduler, continuing processes it had stopped (unless
// their group is paused). Safe to call twice.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.mu.Unlock()
	e.poke()
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, g := range e.groups {
		e.resumeLocked(g)
	}
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Add starts enforcing l on a new group id. ErrAlreadyExists when id is
// there.
func (e *Engine) Add(id string, l resources.Limits, paused bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.groups[id]; ok {
		return errdefs.AlreadyExists("group %s already exists", id)
	}
	e.groups[id] = &egroup{limits: l, paused: paused, seen: map[procKey]ProcStat{}}
	e.poke()
	return nil
}

func (e *Engine) group(id string) (*egroup, error) {
	g, ok := e.groups[id]
	if !ok {
		return nil, errdefs.NotFound("group %s does not exist", id)
	}
	return g, nil
}

// Update replaces the limits of group id.
func (e *Engine) Update(id string, l resources.Limits) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, err := e.group(id)
	if err != nil {
		return err
	}
	g.limits = l
	if l.CPUs == 0 {
		e.resumeLocked(g)
	}
	e.poke()
	return nil
}

// Remove forgets group id, continuing processes the duty cycle stopped
// (unless the group is paused). Removing a missing group succeeds.
func (e *Engine) Remove(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if g, ok := e.groups[id]; ok {
		e.resumeLocked(g)
		if g.background {
			for _, pid := range g.members {
				_ = e.src.Background(pid, false, g.limits.CPUShares)
			}
		}
		delete(e.groups, id)
	}
}

// Attach adds pid (and, from now on, its descendants and process group)
// to group id and returns it as a Root to record. A process in another
// group moves. The process gets the priority the group's CPU shares give.
func (e *Engine) Attach(id string, pid int) (Root, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, err := e.group(id)
	if err != nil {
		return Root{}, err
	}
	key, err := e.lookup(pid)
	if err != nil {
		return Root{}, err
	}
	e.addRootLocked(g, key)
	if g.limits.CPUShares != 0 {
		if err := e.src.Background(pid, false, g.limits.CPUShares); err != nil {
			e.log.Debug("cannot set the priority of an attached process", "pid", pid, "error", err)
		}
	}
	return Root{Pid: key.pid, Start: key.start}, nil
}

func (e *Engine) addRootLocked(g *egroup, key procKey) {
	for _, other := range e.groups {
		other.roots = slices.DeleteFunc(other.roots, func(k procKey) bool { return k.pid == key.pid })
		other.members = slices.DeleteFunc(other.members, func(p int) bool { return p == key.pid })
	}
	g.roots = append(g.roots, key)
	g.members = append(g.members, key.pid)
	e.poke()
}

// Restore re-adds roots recorded before a restart; those no longer
// running (another process may have the pid now) are dropped.
func (e *Engine) Restore(id string, roots []Root) error {
	table, err := e.src.Table()
	if err != nil {
		return fmt.Errorf("read the process table: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	g, err := e.group(id)
	if err != nil {
		return err
	}
	for _, r := range roots {
		for _, p := range table {
			if p.Pid == r.Pid && p.Start == r.Start {
				e.addRootLocked(g, procKey{r.Pid, r.Start})
			}
		}
	}
	return nil
}

// lookup finds pid in the process table.
func (e *Engine) lookup(pid int) (procKey, error) {
	table, err := e.src.Table()
	if err != nil {
		return procKey{}, fmt.Errorf("read the process table: %w", err)
	}
	for _, p := range table {
		if p.Pid == pid {
			return procKey{pid, p.Start}, nil
		}
	}
	return procKey{}, errdefs.NotFound("process %d does not exist (it exited or was never started)", pid)
}

// SetPaused marks group id paused: while it is, the duty cycle never
// continues its processes.
func (e *Engine) SetPaused(id string, paused bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, err := e.group(id)
	if err != nil {
		return err
	}
	g.paused = paused
	e.poke()
	return nil
}

// Pids returns the members of group id as of the last tick.
func (e *Engine) Pids(id string) ([]int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, err := e.group(id)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(slices.Values(g.members)), nil
}

// Usage samples group id now and returns its cumulative use.
func (e *Engine) Usage(id string) (resources.Usage, error) {
	table, err := e.src.Table()
	if err != nil {
		return resources.Usage{}, fmt.Errorf("read the process table: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	g, err := e.group(id)
	if err != nil {
		return resources.Usage{}, err
	}
	e.sampleLocked(g, membership(table, g))
	u := resources.Usage{Time: time.Now(), Pids: uint64(len(g.members)), MemoryBytes: g.lastFoot, MemoryPeakBytes: g.peak,
		CPUThrottledPeriods: g.throttles, CPUThrottledNanos: uint64(g.throttleNs)}
	total := g.gone
	for _, s := range g.seen {
		total.CPU += s.CPU
		total.ReadBytes += s.ReadBytes
		total.WriteBytes += s.WriteBytes
	}
	u.CPUUsageNanos = uint64(total.CPU)
	u.IOReadBytes, u.IOWriteBytes = total.ReadBytes, total.WriteBytes
	return u, nil
}

// membership returns the live members of g: its roots still running,
// processes in a process group a root leads, and their descendants.
func membership(table []Proc, g *egroup) []Proc {
	byPid := make(map[int]Proc, len(table))
	children := map[int][]int{}
	for _, p := range table {
		byPid[p.Pid] = p
		children[p.PPid] = append(children[p.PPid], p.Pid)
	}
	in := map[int]bool{}
	var queue []int
	leaders := map[int]bool{}
	for _, r := range g.roots {
		p, ok := byPid[r.pid]
		if !ok || p.Start != r.start {
			continue
		}
		queue = append(queue, r.pid)
		if p.Pgid == p.Pid {
			leaders[p.Pid] = true
		}
	}
	for _, p := range table {
		if leaders[p.Pgid] {
			queue = append(queue, p.Pid)
		}
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if in[pid] {
			continue
		}
		in[pid] = true
		queue = append(queue, children[pid]...)
	}
	out := make([]Proc, 0, len(in))
	for pid := range in {
		out = append(out, byPid[pid])
	}
	return out
}

// sampleLocked reads every member's use and updates g's counters.
func (e *Engine) sampleLocked(g *egroup, members []Proc) {
	live := map[procKey]bool{}
	g.members = g.members[:0]
	var foot uint64
	for _, p := range members {
		st, err := e.src.Stat(p.Pid)
		if err != nil {
			continue
		}
		k := procKey{p.Pid, p.Start}
		live[k] = true
		g.seen[k] = st
		g.members = append(g.members, p.Pid)
		foot += st.Footprint
	}
	for k, s := range g.seen {
		if !live[k] {
			g.gone.CPU += s.CPU
			g.gone.ReadBytes += s.ReadBytes
			g.gone.WriteBytes += s.WriteBytes
			delete(g.seen, k)
		}
	}
	g.lastFoot = foot
	g.peak = max(g.peak, foot)
}

// cpuLocked is g's cumulative CPU time as of the last sample.
func (g *egroup) cpuLocked() time.Duration {
	total := g.gone.CPU
	for _, s := range g.seen {
		total += s.CPU
	}
	return total
}

func (e *Engine) run() {
	defer close(e.done)
	nextSample := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-e.wake:
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		quota := false
		for _, g := range e.groups {
			quota = quota || (g.limits.CPUs > 0 && !g.paused)
		}
		e.mu.Unlock()
		now := time.Now()
		full := !now.Before(nextSample)
		if full {
			nextSample = now.Add(e.opts.SampleInterval)
		}
		if quota || full {
			e.tick(now, full)
		}
		wait := time.Until(nextSample)
		if quota {
			wait = min(wait, e.opts.CPUTick)
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

// tick runs one scheduler step over every group: the quota groups always,
// every group's memory when full.
func (e *Engine) tick(now time.Time, full bool) {
	table, err := e.src.Table()
	if err != nil {
		e.log.Warn("cannot read the process table", "error", err)
		return
	}
	var events []resources.LimitEvent
	e.mu.Lock()
	for id, g := range e.groups {
		hasQuota := g.limits.CPUs > 0
		if !full && !hasQuota {
			continue
		}
		e.sampleLocked(g, membership(table, g))
		if hasQuota {
			if ev := e.dutyCycleLocked(id, g, now); ev != nil {
				events = append(events, *ev)
			}
		}
		events = append(events, e.memoryLocked(id, g, now)...)
	}
	e.mu.Unlock()
	for _, ev := range events {
		e.opts.Publish(ev)
	}
}

// dutyCycleLocked spends and refills g's CPU tokens and stops or continues
// its members.
func (e *Engine) dutyCycleLocked(id string, g *egroup, now time.Time) *resources.LimitEvent {
	cpu := g.cpuLocked()
	if g.lastTick.IsZero() {
		g.lastTick, g.lastCPU = now, cpu
		return nil
	}
	elapsed := now.Sub(g.lastTick)
	used := cpu - g.lastCPU
	g.lastTick, g.lastCPU = now, cpu
	g.tokens += time.Duration(float64(elapsed)*g.limits.CPUs) - used
	g.tokens = min(g.tokens, maxBurst)
	if g.stopped {
		g.throttleNs += elapsed
	}
	switch {
	case g.paused:
		// Frozen by the isolation layer: leave it exactly as it is.
	case g.tokens < 0 && !g.stopped:
		e.signalLocked(g, syscall.SIGSTOP)
		g.stopped = true
		g.throttles++
		if now.Sub(g.lastThrEv) >= time.Second {
			g.lastThrEv = now
			return &resources.LimitEvent{GroupID: id, Resource: resources.ResourceCPU, Kind: resources.EventCPUThrottled, Count: g.throttles, Time: now,
				Message: fmt.Sprintf("group %s used its quota of %.2f CPUs and is stopped until it has time again (%d throttles in all)", id, g.limits.CPUs, g.throttles)}
		}
	case g.tokens >= 0 && g.stopped:
		e.signalLocked(g, syscall.SIGCONT)
		g.stopped = false
	}
	return nil
}

// resumeLocked continues members the duty cycle stopped, unless g is
// paused.
func (e *Engine) resumeLocked(g *egroup) {
	if g.stopped && !g.paused {
		e.signalLocked(g, syscall.SIGCONT)
	}
	g.stopped = false
}

func (e *Engine) signalLocked(g *egroup, sig syscall.Signal) {
	for _, pid := range g.members {
		if err := e.src.Signal(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			e.log.Warn("cannot signal a group member", "pid", pid, "signal", sig, "error", err)
		}
	}
}

// memoryLocked applies the hard and soft memory limits.
func (e *Engine) memoryLocked(id string, g *egroup, now time.Time) []resources.LimitEvent {
	var out []resources.LimitEvent
	l := g.limits
	if l.MemoryBytes > 0 && g.lastFoot > uint64(l.MemoryBytes) && len(g.members) > 0 {
		killed := len(g.members)
		for _, pid := range g.members {
			_ = e.src.Signal(pid, syscall.SIGCONT)
			_ = e.src.Signal(pid, syscall.SIGKILL)
		}
		g.stopped = false
		g.oomKills += uint64(killed)
		out = append(out, resources.LimitEvent{GroupID: id, Resource: resources.ResourceMemory, Kind: resources.EventOOMKill, Count: g.oomKills, Time: now,
			Message: fmt.Sprintf("group %s used %d bytes, above its memory limit of %d bytes: killed its %d process(es)", id, g.lastFoot, l.MemoryBytes, killed)})
		return out
	}
	above := l.MemorySoftBytes > 0 && g.lastFoot > uint64(l.MemorySoftBytes)
	switch {
	case above && !g.background:
		g.background = true
		g.pressure++
		for _, pid := range g.members {
			if err := e.src.Background(pid, true, g.limits.CPUShares); err != nil {
				e.log.Debug("cannot lower a member's priority", "pid", pid, "error", err)
			}
		}
		out = append(out, resources.LimitEvent{GroupID: id, Resource: resources.ResourceMemory, Kind: resources.EventMemoryPressure, Count: g.pressure, Time: now,
			Message: fmt.Sprintf("group %s uses %d bytes, above its soft memory limit of %d bytes: moved to background priority", id, g.lastFoot, l.MemorySoftBytes)})
	case !above && g.background:
		g.background = false
		for _, pid := range g.members {
			_ = e.src.Background(pid, false, g.limits.CPUShares)
		}
	}
	return out
}
