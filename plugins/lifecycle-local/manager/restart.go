package manager

import (
	"context"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// labelAutoRemove is sdk/api.LabelAutoRemove (run -d --rm): such a
// container is removed when it stops, so no policy can restart it.
const labelAutoRemove = "org.berth.autoremove"

// CheckRestartPolicy validates a restart policy as Docker does.
func CheckRestartPolicy(p lifecycle.RestartPolicy) error {
	switch p.Name {
	case "", "no", "always", "unless-stopped":
		if p.MaxRetries != 0 {
			return errdefs.InvalidArgument("restart policy %q takes no maximum retry count (only on-failure does)", p.Name)
		}
	case "on-failure":
		if p.MaxRetries < 0 {
			return errdefs.InvalidArgument("restart policy on-failure: the maximum retry count %d is negative", p.MaxRetries)
		}
	default:
		return errdefs.InvalidArgument("unknown restart policy %q: use no, on-failure[:N], always or unless-stopped", p.Name)
	}
	return nil
}

// SetRestartPolicy implements lifecycle.Manager: the new policy is
// persisted and applies from the container's next exit; turning the
// policy off cancels a restart already scheduled. Restarts counted so far
// stay counted (docker update keeps RestartCount too).
func (m *Manager) SetRestartPolicy(ctx context.Context, ref string, p lifecycle.RestartPolicy) (lifecycle.Container, error) {
	if err := CheckRestartPolicy(p); err != nil {
		return lifecycle.Container{}, err
	}
	if p.Name == "" {
		p.Name = "no"
	}
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	if p.Name != "no" && rec.Container.Config.Labels[labelAutoRemove] == "true" {
		return rec.Container, errdefs.InvalidArgument("container %s is removed when it stops (--rm); it cannot have restart policy %s", rec.Container.Name, p.Name)
	}
	rec, err = m.update(rec.Container.ID, func(r *store.Record) { r.Container.Config.Restart = p })
	if err != nil {
		return lifecycle.Container{}, err
	}
	if !ShouldRestart(rec) {
		m.cancelRestart(rec.Container.ID)
	}
	m.log.Info("restart policy updated", "container_id", rec.Container.ID, "policy", p.Name, "max_retries", p.MaxRetries)
	return rec.Container, nil
}

// rearmAlways makes the containers with restart policy "always" that a
// user stopped restartable again, once, when the plugin starts (the
// daemon's start): Docker restarts them then, while "unless-stopped"
// ones stay stopped. Reconciliation then applies the policy as to any
// stopped container.
func (m *Manager) rearmAlways(st *store.Store) {
	recs, err := st.List()
	if err != nil {
		m.log.Warn("restart policy always at start: list containers", "error", err)
		return
	}
	for _, r := range recs {
		if r.Creating || !r.ManualStop || r.Container.State != lifecycle.StateStopped || r.Container.Config.Restart.Name != "always" {
			continue
		}
		if _, err := st.Update(r.Container.ID, func(r *store.Record) error { r.ManualStop = false; return nil }); err != nil {
			m.log.Warn("restart policy always at start", "container_id", r.Container.ID, "error", err)
			continue
		}
		m.log.Info("restarting a container with restart policy always that was stopped before the daemon started", "container_id", r.Container.ID, "name", r.Container.Name)
	}
}

// isRestarting reports whether a stopped container will be started again
// by its restart policy: its policy says so, or a restart is scheduled or
// under way (the restart counter already counts the run being started).
func (m *Manager) isRestarting(rec store.Record) bool {
	if rec.Container.State != lifecycle.StateStopped || rec.ManualStop {
		return false
	}
	if ShouldRestart(rec) {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, pending := m.timers[rec.Container.ID]
	return pending
}
