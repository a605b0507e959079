package manager

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// ExitCodeLost is the exit code of a container whose task vanished
// without an exit status (the host rebooted, its supervisor was killed):
// the code Docker reports for a container it finds gone.
const ExitCodeLost = 255

// reconcile matches the records of isolation mode with the tasks its
// plugin recovers:
//   - a record whose Create never finished is undone (task, group,
//     snapshot, record);
//   - a running or paused container whose task still runs stays so, with
//     its pid refreshed, and is watched again;
//   - one whose task exited meanwhile is stopped with the task's real exit
//     status, and one whose task is gone with ExitCodeLost; the restart
//     policy then applies;
//   - a stopped container whose restart was pending when the previous
//     process died is scheduled again;
//   - a task no record knows (its container was removed while the plugin
//     was away) is killed and deleted.
func (m *Manager) reconcile(ctx context.Context, mode string) error {
	st, layers, err := m.env()
	if err != nil {
		return err
	}
	iso, err := layers.Isolation(mode)
	if err != nil {
		return err
	}
	tasks, err := iso.Recover(ctx)
	if errdefs.IsNotImplemented(err) {
		tasks, err = iso.List(ctx)
	}
	if err != nil {
		return fmt.Errorf("recover tasks of isolation %s: %w", mode, err)
	}
	byID := map[string]isolation.TaskInfo{}
	for _, t := range tasks {
		byID[t.ID] = t
	}
	recs, err := st.List()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, r := range recs {
		known[r.Container.ID] = true
		if r.Container.Isolation != mode {
			continue
		}
		task, found := byID[r.Container.ID]
		if err := m.reconcileOne(ctx, layers, r.Container.ID, task, found); err != nil {
			m.log.Error("reconcile container", "container_id", r.Container.ID, "error", err)
		}
	}
	for id, t := range byID {
		if known[id] || !IsContainerID(id) {
			continue
		}
		m.log.Warn("removing a task no container record knows", "mode", mode, "task_id", id, "pid", t.Pid)
		if err := iso.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
			m.log.Warn("kill unknown task", "task_id", id, "error", err)
		}
		if t.Status != isolation.StatusCreated {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _ = iso.Wait(wctx, id, "")
			cancel()
		}
		if _, err := iso.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			m.log.Warn("delete unknown task", "task_id", id, "error", err)
		}
	}
	m.watchEvents(mode, false)
	return nil
}

func (m *Manager) reconcileOne(ctx context.Context, layers Layers, id string, task isolation.TaskInfo, found bool) error {
	unlock := m.lock(id)
	defer unlock()
	st, _, err := m.env()
	if err != nil {
		return err
	}
	rec, err := st.Get(id) // re-read under the lock
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Creating {
		return m.undoCreate(ctx, layers, st, rec)
	}
	switch rec.Container.State {
	case lifecycle.StateRunning, lifecycle.StatePaused:
		if !found {
			_, err := m.markExited(rec, isolation.ExitStatus{Code: ExitCodeLost, ExitedAt: time.Now()}, map[string]string{"reason": "task lost"})
			return err
		}
		switch task.Status {
		case isolation.StatusStopped:
			exit := isolation.ExitStatus{Code: ExitCodeLost, ExitedAt: time.Now()}
			if task.Exit != nil {
				exit = *task.Exit
			}
			_, err := m.markExited(rec, exit, nil)
			return err
		case isolation.StatusRunning, isolation.StatusPaused:
			state := lifecycle.StateRunning
			if task.Status == isolation.StatusPaused {
				state = lifecycle.StatePaused
			}
			if state != rec.Container.State || task.Pid != rec.Container.Pid {
				if rec, err = m.update(id, func(r *store.Record) {
					r.Container.State = state
					r.Container.Pid = task.Pid
				}); err != nil {
					return err
				}
			}
			m.watch(rec)
			return nil
		default: // created: the process never ran
			_, err := m.markExited(rec, isolation.ExitStatus{Code: ExitCodeLost, ExitedAt: time.Now()}, map[string]string{"reason": "task not started"})
			return err
		}
	case lifecycle.StateCreated, lifecycle.StateStopped:
		if found && (task.Status == isolation.StatusRunning || task.Status == isolation.StatusPaused) {
			// Started, but the plugin died before the store said so:
			// adopt the running process rather than forget it.
			return m.adopt(rec, task)
		}
		if rec.Container.State != lifecycle.StateStopped {
			return nil
		}
		m.mu.Lock()
		_, pending := m.timers[id]
		m.mu.Unlock()
		if !pending {
			m.applyRestartPolicy(rec)
		}
	}
	return nil
}

// adopt records a task found running for a container the store has as
// created or stopped (lock held).
func (m *Manager) adopt(rec store.Record, task isolation.TaskInfo) error {
	state := lifecycle.StateRunning
	if task.Status == isolation.StatusPaused {
		state = lifecycle.StatePaused
	}
	m.log.Warn("adopting a running task the store did not know was started", "container_id", rec.Container.ID, "pid", task.Pid)
	rec, err := m.update(rec.Container.ID, func(r *store.Record) {
		r.Container.State = state
		r.Container.Pid = task.Pid
		r.Container.ExitCode = 0
		r.Container.StartedAt = time.Now().UTC()
		r.Container.FinishedAt = time.Time{}
		r.Run++
	})
	if err != nil {
		return err
	}
	m.watch(rec)
	m.emit(lifecycle.EventStart, rec, map[string]string{"pid": strconv.Itoa(task.Pid), "reason": "adopted"})
	return nil
}

// undoCreate removes what an interrupted Create left: the task, the
// group (named by the container ID), the rootfs snapshot and the record.
func (m *Manager) undoCreate(ctx context.Context, layers Layers, st *store.Store, rec store.Record) error {
	m.log.Warn("undoing a create that did not finish", "container_id", rec.Container.ID, "name", rec.Container.Name)
	if _, err := layers.Resources(); err == nil {
		rec.Group = rec.Container.ID
	}
	if err := m.teardown(ctx, layers, rec); err != nil {
		return err
	}
	return st.Delete(rec.Container.ID)
}
