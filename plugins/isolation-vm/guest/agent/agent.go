//go:build linux

// Package agent is the VM guest agent's service: it runs the containers of
// its guest with the Linux sandbox library (internal/sandbox), enforces
// their limits in the guest's cgroups (plugins/resources-cgroup/cgroupctl),
// and serves the Agent gRPC service of internal/vmagent on any
// net.Listener. The boot steps of PID 1 (mounts, modules, the channel to
// the host) are package boot's; this package also runs, without them, in
// an ordinary process (tests).
//
// State lives in memory only: the agent is the guest's init and lives as
// long as the guest. The host may disconnect and reconnect at will;
// containers, exit statuses and unread output (up to a bound) stay.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/plugins/resources-cgroup/cgroupctl"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// System is what the agent changes in the guest as a whole. The real one
// (package boot) sets the clock, the entropy pool, the hostname and powers
// off; it is only used in a VM.
type System interface {
	SetClock(t time.Time) error
	AddEntropy(b []byte) error
	SetHostname(name, machineID string) error
	// Poweroff syncs, unmounts and powers the machine off; it does not
	// return when it succeeds.
	Poweroff()
}

// Config configures an Agent.
type Config struct {
	Log hclog.Logger
	// RunDir holds one directory per container (rootfs mount point,
	// shares, files): /run/berth in a guest.
	RunDir string
	// InitPath is the sandbox init binary (/sbin/berth-sandbox-init).
	InitPath string
	// CgroupParent is the cgroup every container's group goes under
	// ("berth"; it must start with "berth").
	CgroupParent string
	// CgroupRoot and CgroupMode choose the hierarchy (empty: detect; a
	// guest has cgroup v2 at /sys/fs/cgroup).
	CgroupRoot, CgroupMode string
	// ReapAll makes the agent reap every child (it is PID 1, orphans land
	// on it); otherwise it reaps only the processes it registered. With
	// ReapAll, code in the agent must not rely on waiting for its own
	// children (os/exec's Wait loses the race with the reaper): the
	// sandbox library's waits are best-effort and tolerate it, which is why
	// the agent leaves Launcher.SeccompCacheDir unset (filling the cache
	// runs the init binary through os/exec).
	ReapAll bool
	System  System
	// Modules are the kernel modules boot loaded, reported by Info.
	Modules []string
	// NoPrestart turns off the prestarted container init
	// (prestart_linux.go).
	NoPrestart bool
}

// Agent serves the containers of one guest.
type Agent struct {
	cfg      Config
	log      hclog.Logger
	launcher *sandbox.Launcher
	cgroups  *cgroupctl.Controller
	srv      *grpc.Server
	started  time.Time

	mu         sync.Mutex
	containers map[string]*container
	byPid      map[int]*proc
	// unclaimed holds exits reaped before their pid was registered.
	unclaimed map[int]unix.WaitStatus
	events    map[chan *agentpb.Event]bool
	stopping  bool

	pre prestarter

	sigs   chan os.Signal
	cancel context.CancelFunc
	done   chan struct{}
}

// New prepares an agent: the sandbox launcher, the cgroup controller, the
// reaper. The caller becomes a child subreaper (exec'd processes are
// reparented to it).
func New(cfg Config) (*Agent, error) {
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "berth"
	}
	if cfg.RunDir == "" || cfg.InitPath == "" || cfg.System == nil {
		return nil, errors.New("agent: RunDir, InitPath and System are required")
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent run dir: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a child subreaper: %w", err)
	}
	l, err := sandbox.NewLauncher(cfg.InitPath)
	if err != nil {
		return nil, err
	}
	cg := cgroupctl.New(cfg.Log.Named("cgroups"))
	conf := fmt.Sprintf(`{"parent":%q,"mode":%q,"cgroup_root":%q}`, cfg.CgroupParent, orAuto(cfg.CgroupMode), cfg.CgroupRoot)
	if err := cg.Configure(context.Background(), plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(conf)},
		APIVersion: plugin.APIVersion, StateDir: filepath.Join(cfg.RunDir, ".cgroups")}); err != nil {
		l.Close()
		return nil, fmt.Errorf("guest cgroups: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{cfg: cfg, log: cfg.Log, launcher: l, cgroups: cg, started: time.Now(),
		containers: map[string]*container{}, byPid: map[int]*proc{}, unclaimed: map[int]unix.WaitStatus{},
		events: map[chan *agentpb.Event]bool{}, sigs: make(chan os.Signal, 16), cancel: cancel, done: make(chan struct{})}
	limitEvents, err := cg.Events(ctx)
	if err != nil {
		cancel()
		cg.Close()
		l.Close()
		return nil, err
	}
	go a.forwardLimitEvents(limitEvents)
	signal.Notify(a.sigs, unix.SIGCHLD)
	go a.reap()
	a.srv = grpc.NewServer(errdefs.ServerOptions()...)
	agentpb.RegisterAgentServer(a.srv, &service{a: a})
	if !cfg.NoPrestart {
		a.startPrestart()
		a.precompileSeccomp()
	}
	return a, nil
}

func orAuto(s string) string {
	if s == "" {
		return "auto"
	}
	return s
}

// Serve answers calls on l until Close (or l fails). The listener may
// yield one connection after another (the host reconnecting); each
// session starts with the channel handshake (vmagent.AcceptHandshake).
func (a *Agent) Serve(l net.Listener) error { return a.srv.Serve(vmagent.SyncListener(l)) }

// Close stops serving, kills every container and removes what they hold
// (mounts, cgroups). The guest's agent never calls it; tests do.
func (a *Agent) Close() {
	a.srv.Stop()
	a.stopPrestart()
	a.killAll()
	a.mu.Lock()
	ids := make([]string, 0, len(a.containers))
	for id := range a.containers {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	for _, id := range ids {
		if _, err := a.delete(id); err != nil {
			a.log.Warn("remove container at close", "container_id", id, "error", err)
		}
	}
	signal.Stop(a.sigs)
	a.cancel()
	close(a.sigs)
	<-a.done
	a.cgroups.Close()
	a.launcher.Close()
}

// Shutdown kills every container, removes what they hold, and powers the
// guest off through System (which does not return in a VM). Calls after
// the first do nothing; Create is refused from the first on.
func (a *Agent) Shutdown() {
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return
	}
	a.stopping = true
	a.mu.Unlock()
	a.log.Info("shutting down: killing the containers, then power off")
	a.stopPrestart()
	a.killAll()
	a.mu.Lock()
	ids := make([]string, 0, len(a.containers))
	for id := range a.containers {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	for _, id := range ids {
		if _, err := a.delete(id); err != nil {
			a.log.Warn("remove container before power off", "container_id", id, "error", err)
		}
	}
	a.cfg.System.Poweroff()
}

// killAll SIGKILLs every process of every container and waits (bounded)
// for their inits to exit.
func (a *Agent) killAll() {
	a.mu.Lock()
	cs := make([]*container, 0, len(a.containers))
	for _, c := range a.containers {
		cs = append(cs, c)
	}
	a.mu.Unlock()
	for _, c := range cs {
		c.killAll()
	}
	for _, c := range cs {
		if c.init != nil && c.init.pid > 0 {
			select {
			case <-c.init.exited:
			case <-time.After(10 * time.Second):
				a.log.Warn("init did not exit 10s after SIGKILL", "container_id", c.id)
			}
		}
	}
}

// reap collects exits: of every child when ReapAll (PID 1, where orphans
// land), else of the processes the agent registered.
func (a *Agent) reap() {
	defer close(a.done)
	for range a.sigs {
		a.reapOnce()
	}
}

func (a *Agent) reapOnce() {
	if a.cfg.ReapAll {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				return
			}
			a.mu.Lock()
			if p, ok := a.byPid[pid]; ok {
				a.exitedLocked(p, ws)
			} else {
				a.unclaimed[pid] = ws
				if len(a.unclaimed) > 4096 {
					clear(a.unclaimed) // orphans nobody will claim
				}
			}
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	pids := make([]int, 0, len(a.byPid))
	for pid := range a.byPid {
		pids = append(pids, pid)
	}
	a.mu.Unlock()
	for _, pid := range pids {
		a.tryReap(pid)
	}
}

// tryReap reaps pid if it exited.
func (a *Agent) tryReap(pid int) {
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	if got != pid || err != nil {
		return
	}
	a.mu.Lock()
	if p, ok := a.byPid[pid]; ok {
		a.exitedLocked(p, ws)
	} else {
		a.unclaimed[pid] = ws
	}
	a.mu.Unlock()
}

// register records p's pid and applies an exit reaped before.
func (a *Agent) register(p *proc, pid int) {
	a.mu.Lock()
	p.pid = pid
	a.byPid[pid] = p
	if ws, ok := a.unclaimed[pid]; ok {
		delete(a.unclaimed, pid)
		a.exitedLocked(p, ws)
	}
	a.mu.Unlock()
	a.tryReap(pid)
}

// exitedLocked records p's exit; the process's watcher (watchExit) does
// the rest once its output drained.
func (a *Agent) exitedLocked(p *proc, ws unix.WaitStatus) {
	select {
	case <-p.exited:
		return
	default:
	}
	e := isolation.ExitStatus{ExitedAt: time.Now().UTC()}
	switch {
	case ws.Exited():
		e.Code = ws.ExitStatus()
	case ws.Signaled():
		e.Signal = ws.Signal()
		e.Code = 128 + int(ws.Signal())
	}
	p.exit = e
	delete(a.byPid, p.pid)
	close(p.exited)
}

// subscribe returns a channel of every event from now on; unsubscribe
// releases it.
func (a *Agent) subscribe() chan *agentpb.Event {
	ch := make(chan *agentpb.Event, 64)
	a.mu.Lock()
	a.events[ch] = true
	a.mu.Unlock()
	return ch
}

func (a *Agent) unsubscribe(ch chan *agentpb.Event) {
	a.mu.Lock()
	delete(a.events, ch)
	a.mu.Unlock()
}

// publish sends e to every subscriber; one that does not keep up loses
// events rather than stalling the agent.
func (a *Agent) publish(e *agentpb.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ch := range a.events {
		select {
		case ch <- e:
		default:
			a.log.Warn("an events subscriber is not keeping up; event dropped", "kind", e.Kind, "container_id", e.Id)
		}
	}
}

// forwardLimitEvents turns the cgroup monitor's OOM kills into task
// events (isolation.EventOOM) of the container whose group it is.
func (a *Agent) forwardLimitEvents(ch <-chan resources.LimitEvent) {
	for e := range ch {
		if e.Kind != resources.EventOOMKill {
			continue
		}
		a.log.Info("container hit its memory limit", "container_id", e.GroupID, "oom_kills", e.Count)
		a.publish(&agentpb.Event{Kind: isolation.EventOOM, Id: e.GroupID, TimeUnixNanos: e.Time.UnixNano()})
	}
}
