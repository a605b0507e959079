package manager

import (
	"context"
	"strconv"
	"time"

	"github.com/berth-dev/berth/plugins/lifecycle-local/statemachine"
	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
)

// watch starts the Wait watcher of a running container's current run,
// replacing any earlier watcher of the container (after an isolation
// plugin restart the old one may not have noticed yet). It ends at the
// exit, or quietly when the isolation plugin goes away: reconciliation
// watches again when it comes back.
func (m *Manager) watch(rec store.Record) {
	id, run, mode := rec.Container.ID, rec.Run, rec.Container.Isolation
	ctx, cancel := context.WithCancel(m.ctx)
	m.mu.Lock()
	if old, ok := m.watchers[id]; ok {
		old.cancel()
	}
	m.nextToken++
	token := m.nextToken
	m.watchers[id] = subscription{cancel: cancel, token: token}
	layers := m.layers
	m.mu.Unlock()
	m.watchEvents(mode, false)
	go func() {
		defer m.endWatch(id, token)
		iso, err := layers.Isolation(mode)
		if err != nil {
			return
		}
		st, err := iso.Wait(ctx, id, "")
		if err != nil {
			if ctx.Err() == nil {
				m.log.Debug("wait for container ended without an exit; reconciliation takes over", "container_id", id, "error", err)
			}
			return
		}
		m.exited(id, run, st)
	}()
}

func (m *Manager) endWatch(id string, token int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.watchers[id]; ok && w.token == token {
		w.cancel()
		delete(m.watchers, id)
	}
}

// subscription is a running watcher or event stream; token tells a
// replaced one from its replacement.
type subscription struct {
	cancel context.CancelFunc
	token  int
}

// subscribe registers stream key, replacing (cancelling) an existing one
// when replace is set; it returns false when one exists and is kept.
func (m *Manager) subscribe(key string, replace bool) (context.Context, func(), bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.eventSubs[key]; ok {
		if !replace {
			return nil, nil, false
		}
		old.cancel()
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.nextToken++
	token := m.nextToken
	m.eventSubs[key] = subscription{cancel: cancel, token: token}
	done := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		cancel()
		if s, ok := m.eventSubs[key]; ok && s.token == token {
			delete(m.eventSubs, key)
		}
	}
	return ctx, done, true
}

// watchEvents subscribes to isolation mode's task events (replacing an
// earlier stream when replace is set): exits feed the same path as Wait,
// OOM kills become events.
func (m *Manager) watchEvents(mode string, replace bool) {
	ctx, done, ok := m.subscribe("isolation/"+mode, replace)
	if !ok {
		return
	}
	m.mu.Lock()
	layers := m.layers
	m.mu.Unlock()
	// Subscribing may wait for the plugin (a stream's first headers come
	// through the core's proxy), so it never blocks the caller.
	go func() {
		defer done()
		iso, err := layers.Isolation(mode)
		if err != nil {
			return
		}
		events, err := iso.Events(ctx)
		if err != nil {
			m.log.Debug("isolation events unavailable", "mode", mode, "error", err)
			return
		}
		for e := range events {
			if e.ExecID != "" {
				continue
			}
			switch e.Kind {
			case isolation.EventExit:
				if e.Exit != nil {
					m.exitedEvent(e.ID, *e.Exit)
				}
			case isolation.EventOOM:
				m.oom(e.ID)
			}
		}
	}()
}

// watchResourceEvents subscribes to the resources plugin's limit events,
// for OOM kills, replacing an earlier stream.
func (m *Manager) watchResourceEvents() {
	ctx, done, _ := m.subscribe("resources", true)
	m.mu.Lock()
	layers := m.layers
	m.mu.Unlock()
	go func() {
		defer done()
		res, err := layers.Resources()
		if err != nil {
			return
		}
		events, err := res.Events(ctx)
		if err != nil {
			m.log.Debug("resources events unavailable", "error", err)
			return
		}
		for e := range events {
			if e.Kind == resources.EventOOMKill {
				m.oom(e.GroupID)
			}
		}
	}()
}

func (m *Manager) oom(id string) {
	st, _, err := m.env()
	if err != nil {
		return
	}
	rec, err := st.Get(id)
	if err != nil {
		return
	}
	m.emit(lifecycle.EventOOM, rec, nil)
}

// exitedEvent handles an exit reported by isolation events, which do not
// say which run ended: an exit from before the current run started is a
// late report of an earlier run.
func (m *Manager) exitedEvent(id string, st isolation.ExitStatus) {
	s, _, err := m.env()
	if err != nil {
		return
	}
	rec, err := s.Get(id)
	if err != nil {
		return
	}
	if !st.ExitedAt.IsZero() && st.ExitedAt.Before(rec.Container.StartedAt) {
		return
	}
	m.exited(id, rec.Run, st)
}

// exited records that run of container id ended with st, unless the
// container has moved on (another run, stopped, checkpointed), then
// applies the restart policy.
func (m *Manager) exited(id string, run int, st isolation.ExitStatus) {
	unlock := m.lock(id)
	defer unlock()
	s, layers, err := m.env()
	if err != nil {
		return
	}
	rec, err := s.Get(id)
	if err != nil || rec.Run != run || !statemachine.Exit.Allowed(rec.Container.State) {
		return
	}
	if rec.Container.State == lifecycle.StatePaused && rec.Group != "" {
		if res, err := layers.Resources(); err == nil {
			_ = res.SetPaused(m.ctx, rec.Group, false)
		}
	}
	if _, err := m.markExited(rec, st, nil); err != nil {
		m.log.Error("record exit", "container_id", id, "error", err)
	}
}

// markExited writes the stopped state with st (lock held), emits the exit
// and applies the restart policy.
func (m *Manager) markExited(rec store.Record, st isolation.ExitStatus, extra map[string]string) (store.Record, error) {
	if err := check(rec, statemachine.Exit); err != nil {
		return rec, err
	}
	finished := st.ExitedAt
	if finished.IsZero() {
		finished = time.Now()
	}
	rec, err := m.update(rec.Container.ID, func(r *store.Record) {
		r.Container.State = lifecycle.StateStopped
		r.Container.ExitCode = st.Code
		r.Container.OOMKilled = st.OOMKilled
		r.Container.Pid = 0
		r.Container.FinishedAt = finished.UTC()
	})
	if err != nil {
		return rec, err
	}
	a := map[string]string{"exit_code": strconv.Itoa(st.Code)}
	if st.OOMKilled {
		a["oom_killed"] = "true"
	}
	for k, v := range extra {
		a[k] = v
	}
	m.log.Info("container exited", "container_id", rec.Container.ID, "exit_code", st.Code, "run", rec.Run)
	m.emit(lifecycle.EventExit, rec, a)
	m.applyRestartPolicy(rec)
	return rec, nil
}

// ShouldRestart reports whether a container that just stopped is
// restarted by its policy.
func ShouldRestart(rec store.Record) bool {
	if rec.ManualStop || rec.Container.State != lifecycle.StateStopped {
		return false
	}
	p := rec.Container.Config.Restart
	switch p.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return rec.Container.ExitCode != 0 && (p.MaxRetries <= 0 || rec.Container.RestartCount < p.MaxRetries)
	default:
		return false
	}
}

// applyRestartPolicy schedules the restart of a stopped container when its
// policy says so, after the exponential backoff delay.
func (m *Manager) applyRestartPolicy(rec store.Record) {
	if !ShouldRestart(rec) {
		return
	}
	id, run := rec.Container.ID, rec.Run
	m.mu.Lock()
	delay := m.backoff[id]
	ran := rec.Container.FinishedAt.Sub(rec.Container.StartedAt)
	if delay == 0 || ran >= m.settings.RestartResetAfter {
		delay = m.settings.RestartBackoff
	}
	m.backoff[id] = min(delay*2, m.settings.MaxRestartBackoff)
	if t, ok := m.timers[id]; ok {
		t.Stop()
	}
	m.timers[id] = time.AfterFunc(delay, func() { m.restart(id, run) })
	m.mu.Unlock()
	m.log.Info("restart scheduled", "container_id", id, "policy", rec.Container.Config.Restart.Name, "restarts", rec.Container.RestartCount, "delay", delay)
}

// restart is the restart policy's timer firing for run of container id.
func (m *Manager) restart(id string, run int) {
	unlock := m.lock(id)
	defer unlock()
	// The timer's entry stays until the restart is done, so the container
	// reads as restarting (isRestarting) while it is started again.
	m.mu.Lock()
	self := m.timers[id]
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if t, ok := m.timers[id]; ok && t == self {
			delete(m.timers, id)
		}
		m.mu.Unlock()
	}()
	if m.ctx.Err() != nil {
		return
	}
	rec, err := m.update(id, func(r *store.Record) {
		if r.Run == run && ShouldRestart(*r) {
			r.Container.RestartCount++
		}
	})
	if err != nil || rec.Run != run || rec.Container.State != lifecycle.StateStopped || rec.ManualStop {
		return
	}
	if rec.Container.RestartCount == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	if rec, err = m.start(ctx, rec); err != nil {
		m.log.Warn("restart failed", "container_id", id, "error", err)
		if errdefs.IsUnavailable(err) {
			return // the isolation plugin is away; reconciliation retries
		}
		m.applyRestartPolicy(rec)
	}
}

// cancelRestart cancels a pending restart of id.
func (m *Manager) cancelRestart(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.timers[id]; ok {
		t.Stop()
		delete(m.timers, id)
	}
}

func (m *Manager) resetBackoff(id string) {
	m.mu.Lock()
	delete(m.backoff, id)
	m.mu.Unlock()
}

// forget drops what the manager keeps in memory for a deleted container.
func (m *Manager) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.timers[id]; ok {
		t.Stop()
		delete(m.timers, id)
	}
	delete(m.backoff, id)
	if w, ok := m.watchers[id]; ok {
		w.cancel()
		delete(m.watchers, id)
	}
}
