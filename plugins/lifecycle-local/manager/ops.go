package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/plugins/lifecycle-local/statemachine"
	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/spec"
)

func check(rec store.Record, op statemachine.Op) error {
	return statemachine.Check(rec.Container.Name, rec.Container.State, op)
}

// isolationOf returns the isolation runtime of rec's mode.
func (m *Manager) isolationOf(rec store.Record) (isolation.Runtime, error) {
	_, layers, err := m.env()
	if err != nil {
		return nil, err
	}
	return layers.Isolation(rec.Container.Isolation)
}

// Start implements lifecycle.Manager.
func (m *Manager) Start(ctx context.Context, ref string) (lifecycle.Container, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	if err := check(rec, statemachine.Start); err != nil {
		return rec.Container, err
	}
	m.cancelRestart(rec.Container.ID)
	m.resetBackoff(rec.Container.ID)
	rec, err = m.start(ctx, rec)
	return rec.Container, err
}

// start runs a created or stopped container (lock held). A stopped
// container's old task is deleted and created again from the recorded
// spec, as is a task the isolation plugin no longer knows. A start that
// fails leaves the container stopped with Docker's exit code for it.
func (m *Manager) start(ctx context.Context, rec store.Record) (store.Record, error) {
	_, layers, err := m.env()
	if err != nil {
		return rec, err
	}
	id := rec.Container.ID
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return rec, err
	}
	if rec.Task == nil {
		return rec, errdefs.InvalidState("container %s has no task spec recorded; remove it and create it again", rec.Container.Name)
	}
	if rec.Container.State == lifecycle.StateStopped {
		if _, err := iso.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return rec, fmt.Errorf("start %s: delete the previous task: %w", rec.Container.Name, err)
		}
		info, err := iso.Create(ctx, *rec.Task)
		if err != nil {
			return m.startFailed(rec, err)
		}
		if rec, err = m.resizeVMGroup(ctx, rec, layers, info); err != nil {
			return m.startFailed(rec, err)
		}
	}
	// Taken before the process runs, so that its exit time is never
	// earlier (exitedEvent tells runs apart by it).
	startedAt := time.Now().UTC()
	pid, err := iso.Start(ctx, id)
	if errdefs.IsNotFound(err) {
		// The task is gone (the host rebooted, say): create it again.
		info, cerr := iso.Create(ctx, *rec.Task)
		if cerr != nil {
			return m.startFailed(rec, cerr)
		}
		if rec, cerr = m.resizeVMGroup(ctx, rec, layers, info); cerr != nil {
			return m.startFailed(rec, cerr)
		}
		pid, err = iso.Start(ctx, id)
	}
	if err != nil {
		return m.startFailed(rec, err)
	}
	rec, err = m.update(id, func(r *store.Record) {
		r.Container.State = lifecycle.StateRunning
		r.Container.Pid = pid
		r.Container.ExitCode = 0
		r.Container.OOMKilled = false
		r.Container.StartedAt = startedAt
		r.Container.FinishedAt = time.Time{}
		r.ManualStop = false
		r.Run++
	})
	if err != nil {
		// The process runs but its state could not be written: stop it, so
		// the record and the world agree.
		m.log.Error("started, but the store write failed; killing the process", "container_id", id, "error", err)
		_ = iso.Signal(context.Background(), id, "", syscall.SIGKILL, true)
		return rec, fmt.Errorf("start %s: %w", rec.Container.Name, err)
	}
	m.watch(rec)
	m.log.Info("container started", "container_id", id, "pid", pid, "run", rec.Run)
	m.emit(lifecycle.EventStart, rec, map[string]string{"pid": strconv.Itoa(pid)})
	return rec, nil
}

// startFailed records a start that did not run the process: the container
// is stopped with Docker's exit code (127 command not found, 126 not
// executable, 128 otherwise).
func (m *Manager) startFailed(rec store.Record, cause error) (store.Record, error) {
	code := 128
	msg := strings.ToLower(cause.Error())
	switch {
	case strings.Contains(msg, "not found") || strings.Contains(msg, "no such file"):
		code = 127
	case strings.Contains(msg, "permission denied") || strings.Contains(msg, "not executable"):
		code = 126
	}
	if err := check(rec, statemachine.StartFailed); err != nil {
		return rec, errors.Join(cause, err)
	}
	out, err := m.update(rec.Container.ID, func(r *store.Record) {
		r.Container.State = lifecycle.StateStopped
		r.Container.ExitCode = code
		r.Container.Pid = 0
		r.Container.FinishedAt = time.Now().UTC()
	})
	if err != nil {
		return rec, errors.Join(fmt.Errorf("start %s: %w", rec.Container.Name, cause), err)
	}
	m.emit(lifecycle.EventExit, out, map[string]string{"error": cause.Error()})
	return out, fmt.Errorf("start %s: %w", rec.Container.Name, cause)
}

// Stop implements lifecycle.Manager. Stopping a created, stopped or
// checkpointed container changes nothing but cancels a pending restart.
func (m *Manager) Stop(ctx context.Context, ref string, timeout time.Duration) (lifecycle.Container, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	m.cancelRestart(rec.Container.ID)
	switch rec.Container.State {
	case lifecycle.StateCreated, lifecycle.StateStopped, lifecycle.StateCheckpointed:
		if !rec.ManualStop {
			rec, err = m.update(rec.Container.ID, func(r *store.Record) { r.ManualStop = true })
		}
		return rec.Container, err
	}
	if err := check(rec, statemachine.Stop); err != nil {
		return rec.Container, err
	}
	if timeout < 0 {
		timeout = rec.Container.Config.StopTimeout
		if timeout <= 0 {
			timeout = m.settings.StopTimeout
		}
	}
	rec, err = m.stop(ctx, rec, timeout)
	return rec.Container, err
}

// stop ends a running or paused container (lock held): its stop signal,
// then SIGKILL to every process after timeout. The stop is marked manual
// first, so the restart policy leaves it stopped.
func (m *Manager) stop(ctx context.Context, rec store.Record, timeout time.Duration) (store.Record, error) {
	_, layers, err := m.env()
	if err != nil {
		return rec, err
	}
	id := rec.Container.ID
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return rec, err
	}
	if rec, err = m.update(id, func(r *store.Record) { r.ManualStop = true }); err != nil {
		return rec, err
	}
	if rec.Container.State == lifecycle.StatePaused {
		// A frozen process cannot act on its stop signal.
		if err := m.thaw(ctx, layers, rec); err != nil {
			return rec, fmt.Errorf("stop %s: resume it first: %w", rec.Container.Name, err)
		}
	}
	status, err := terminate(ctx, iso, id, stopSignal(rec), timeout)
	if err != nil {
		return rec, fmt.Errorf("stop %s: %w", rec.Container.Name, err)
	}
	rec, err = m.markExited(rec, status, nil)
	if err != nil {
		return rec, err
	}
	m.log.Info("container stopped", "container_id", id, "exit_code", status.Code)
	return rec, nil
}

// terminate sends sig to the init process, waits up to timeout for it to
// exit, then SIGKILLs every process of the task and waits for the exit.
func terminate(ctx context.Context, iso isolation.Runtime, id string, sig syscall.Signal, timeout time.Duration) (isolation.ExitStatus, error) {
	if timeout > 0 {
		if err := iso.Signal(ctx, id, "", sig, false); err != nil && !errdefs.IsNotFound(err) {
			return isolation.ExitStatus{}, fmt.Errorf("signal %d: %w", sig, err)
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := iso.Wait(wctx, id, "")
		cancel()
		if err == nil {
			return st, nil
		}
		if errdefs.IsNotFound(err) {
			return lostExit(), nil
		}
		if ctx.Err() != nil {
			return isolation.ExitStatus{}, ctx.Err()
		}
	}
	if err := iso.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
		return isolation.ExitStatus{}, fmt.Errorf("SIGKILL: %w", err)
	}
	st, err := iso.Wait(ctx, id, "")
	if errdefs.IsNotFound(err) {
		// The task is gone with its exit status (its supervisor died).
		return lostExit(), nil
	}
	return st, err
}

func lostExit() isolation.ExitStatus {
	return isolation.ExitStatus{Code: ExitCodeLost, ExitedAt: time.Now()}
}

// stopSignal is the container's stop signal: the user's, else the
// image's (both recorded in the spec), else SIGTERM.
func stopSignal(rec store.Record) syscall.Signal {
	name := rec.Container.Config.StopSignal
	if name == "" && rec.Task != nil && rec.Task.OCI != nil {
		name = rec.Task.OCI.Annotations[spec.AnnotationStopSignal]
	}
	if name == "" {
		return syscall.SIGTERM
	}
	sig, err := spec.ParseSignal(name)
	if err != nil {
		return syscall.SIGTERM
	}
	return sig
}

// Kill implements lifecycle.Manager. A signal that ends a process by
// default (KILL, TERM, INT, or the container's stop signal) counts as a
// manual stop, so the restart policy leaves the container stopped, as
// Docker does.
func (m *Manager) Kill(ctx context.Context, ref string, sig syscall.Signal) error {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return err
	}
	defer unlock()
	if err := check(rec, statemachine.Kill); err != nil {
		return err
	}
	_, layers, err := m.env()
	if err != nil {
		return err
	}
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return err
	}
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == stopSignal(rec) {
		m.cancelRestart(rec.Container.ID)
		if rec, err = m.update(rec.Container.ID, func(r *store.Record) { r.ManualStop = true }); err != nil {
			return err
		}
	}
	if err := iso.Signal(ctx, rec.Container.ID, "", sig, false); err != nil {
		return fmt.Errorf("kill %s: %w", rec.Container.Name, err)
	}
	if rec.Container.State == lifecycle.StatePaused && sig == syscall.SIGKILL {
		// SIGKILL is delivered once the task thaws.
		if err := m.thaw(ctx, layers, rec); err != nil {
			return fmt.Errorf("kill %s: resume it so the signal lands: %w", rec.Container.Name, err)
		}
	}
	return nil
}

// Pause implements lifecycle.Manager: the resources group is marked paused
// first (so nothing there thaws it), then isolation freezes the task.
func (m *Manager) Pause(ctx context.Context, ref string) (lifecycle.Container, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	if err := check(rec, statemachine.Pause); err != nil {
		return rec.Container, err
	}
	rec, err = m.pause(ctx, rec)
	return rec.Container, err
}

func (m *Manager) pause(ctx context.Context, rec store.Record) (_ store.Record, err error) {
	_, layers, err := m.env()
	if err != nil {
		return rec, err
	}
	id := rec.Container.ID
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return rec, err
	}
	if rec.Group != "" {
		res, rerr := layers.Resources()
		if rerr != nil {
			return rec, fmt.Errorf("pause %s: %w", rec.Container.Name, rerr)
		}
		if err := res.SetPaused(ctx, rec.Group, true); err != nil {
			return rec, fmt.Errorf("pause %s: mark its resource group paused: %w", rec.Container.Name, err)
		}
		defer func() {
			if err != nil {
				uctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
				defer cancel()
				if uerr := res.SetPaused(uctx, rec.Group, false); uerr != nil {
					m.log.Error("undo paused mark of resource group", "container_id", id, "error", uerr)
				}
			}
		}()
	}
	if err = iso.Pause(ctx, id); err != nil {
		err = fmt.Errorf("pause %s: %w", rec.Container.Name, err)
		return rec, err
	}
	rec, err = m.update(id, func(r *store.Record) { r.Container.State = lifecycle.StatePaused })
	if err != nil {
		_ = iso.Resume(context.Background(), id)
		return rec, err
	}
	m.emit(lifecycle.EventPause, rec, nil)
	return rec, nil
}

// Resume implements lifecycle.Manager: isolation thaws, then the group is
// no longer marked paused.
func (m *Manager) Resume(ctx context.Context, ref string) (lifecycle.Container, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	if err := check(rec, statemachine.Resume); err != nil {
		return rec.Container, err
	}
	rec, err = m.resume(ctx, rec)
	return rec.Container, err
}

func (m *Manager) resume(ctx context.Context, rec store.Record) (store.Record, error) {
	_, layers, err := m.env()
	if err != nil {
		return rec, err
	}
	if err := m.thaw(ctx, layers, rec); err != nil {
		return rec, fmt.Errorf("resume %s: %w", rec.Container.Name, err)
	}
	rec, err = m.update(rec.Container.ID, func(r *store.Record) { r.Container.State = lifecycle.StateRunning })
	if err != nil {
		return rec, err
	}
	m.emit(lifecycle.EventResume, rec, nil)
	return rec, nil
}

// thaw resumes the task, then clears the group's paused mark.
func (m *Manager) thaw(ctx context.Context, layers Layers, rec store.Record) error {
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return err
	}
	if err := iso.Resume(ctx, rec.Container.ID); err != nil {
		return err
	}
	if rec.Group != "" {
		res, err := layers.Resources()
		if err != nil {
			return err
		}
		if err := res.SetPaused(ctx, rec.Group, false); err != nil {
			return fmt.Errorf("clear the paused mark of its resource group: %w", err)
		}
	}
	return nil
}

// Checkpoint implements lifecycle.Manager: a running container is paused
// first (running → paused → checkpointed). When isolation cannot
// checkpoint, the container goes back to the state it was in and the
// error says so plainly.
func (m *Manager) Checkpoint(ctx context.Context, ref string, leaveRunning bool) (lifecycle.Container, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	if err := check(rec, statemachine.Checkpoint); err != nil {
		return rec.Container, err
	}
	_, layers, err := m.env()
	if err != nil {
		return rec.Container, err
	}
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return rec.Container, err
	}
	wasRunning := rec.Container.State == lifecycle.StateRunning
	if wasRunning {
		if rec, err = m.pause(ctx, rec); err != nil {
			return rec.Container, fmt.Errorf("checkpoint %s: %w", rec.Container.Name, err)
		}
	}
	back := func(cause error) (lifecycle.Container, error) {
		if wasRunning {
			if r, err := m.resume(context.Background(), rec); err != nil {
				m.log.Error("resume after a failed checkpoint", "container_id", rec.Container.ID, "error", err)
			} else {
				rec = r
			}
		}
		return rec.Container, cause
	}
	dir := m.checkpointDir(rec.Container.ID)
	if err := os.RemoveAll(dir); err != nil {
		return back(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return back(err)
	}
	err = iso.Checkpoint(ctx, rec.Container.ID, isolation.CheckpointOptions{Dir: dir, LeaveRunning: leaveRunning})
	if err != nil {
		_ = os.RemoveAll(dir)
		if errdefs.IsNotImplemented(err) {
			return back(errdefs.NotImplemented("container %s cannot be checkpointed: isolation mode %q does not implement checkpoint (%v)", rec.Container.Name, rec.Container.Isolation, err))
		}
		return back(fmt.Errorf("checkpoint %s: %w", rec.Container.Name, err))
	}
	if leaveRunning {
		rec, err = m.update(rec.Container.ID, func(r *store.Record) { r.Container.Checkpoint = dir })
		if err != nil {
			return rec.Container, err
		}
		m.emit(lifecycle.EventCheckpoint, rec, map[string]string{"path": dir})
		if wasRunning {
			if rec, err = m.resume(ctx, rec); err != nil {
				return rec.Container, err
			}
		}
		return rec.Container, nil
	}
	rec, err = m.update(rec.Container.ID, func(r *store.Record) {
		r.Container.State = lifecycle.StateCheckpointed
		r.Container.Checkpoint = dir
		r.Container.Pid = 0
		r.Container.FinishedAt = time.Now().UTC()
	})
	if err != nil {
		return rec.Container, err
	}
	if rec.Group != "" {
		if res, err := layers.Resources(); err == nil {
			_ = res.SetPaused(ctx, rec.Group, false)
		}
	}
	m.emit(lifecycle.EventCheckpoint, rec, map[string]string{"path": dir})
	return rec.Container, nil
}

// Restore implements lifecycle.Manager.
func (m *Manager) Restore(ctx context.Context, ref string) (lifecycle.Container, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	if err := check(rec, statemachine.Restore); err != nil {
		return rec.Container, err
	}
	_, layers, err := m.env()
	if err != nil {
		return rec.Container, err
	}
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return rec.Container, err
	}
	id := rec.Container.ID
	if _, err := iso.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return rec.Container, fmt.Errorf("restore %s: delete the checkpointed task: %w", rec.Container.Name, err)
	}
	startedAt := time.Now().UTC()
	info, err := iso.Restore(ctx, *rec.Task, rec.Container.Checkpoint)
	if err != nil {
		if errdefs.IsNotImplemented(err) {
			return rec.Container, errdefs.NotImplemented("container %s cannot be restored: isolation mode %q does not implement restore (%v)", rec.Container.Name, rec.Container.Isolation, err)
		}
		return rec.Container, fmt.Errorf("restore %s: %w", rec.Container.Name, err)
	}
	// A record made before lifecycle recorded VM sizes gets its group
	// sized now; otherwise the restored VM is the recorded one (no-op).
	if sized, err := m.resizeVMGroup(ctx, rec, layers, info); err != nil {
		m.log.Warn("restored VM's host resource group not sized", "container_id", id, "error", err)
	} else {
		rec = sized
	}
	rec, err = m.update(id, func(r *store.Record) {
		r.Container.State = lifecycle.StateRunning
		r.Container.Pid = info.Pid
		r.Container.StartedAt = startedAt
		r.Container.FinishedAt = time.Time{}
		r.ManualStop = false
		r.Run++
	})
	if err != nil {
		return rec.Container, err
	}
	m.watch(rec)
	m.emit(lifecycle.EventRestore, rec, map[string]string{"path": rec.Container.Checkpoint})
	return rec.Container, nil
}

// Delete implements lifecycle.Manager. The layers are torn down before the
// record goes, so a failure leaves a record to retry the delete with.
func (m *Manager) Delete(ctx context.Context, ref string, force bool) error {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return err
	}
	defer unlock()
	st, layers, err := m.env()
	if err != nil {
		return err
	}
	if err := check(rec, statemachine.Delete); err != nil {
		if !force || (rec.Container.State != lifecycle.StateRunning && rec.Container.State != lifecycle.StatePaused) {
			return fmt.Errorf("%w; stop it first, or remove it with force", err)
		}
		if rec, err = m.stop(ctx, rec, 0); err != nil {
			return err
		}
	}
	m.cancelRestart(rec.Container.ID)
	if err := m.teardown(ctx, layers, rec); err != nil {
		return fmt.Errorf("remove %s: %w", rec.Container.Name, err)
	}
	if err := st.Delete(rec.Container.ID); err != nil {
		return fmt.Errorf("remove %s: %w", rec.Container.Name, err)
	}
	m.forget(rec.Container.ID)
	m.log.Info("container deleted", "container_id", rec.Container.ID)
	rec.Container.State = lifecycle.StateDeleted
	m.emit(lifecycle.EventDelete, rec, nil)
	return nil
}

// Get implements lifecycle.Manager.
func (m *Manager) Get(_ context.Context, ref string) (lifecycle.Container, error) {
	st, _, err := m.env()
	if err != nil {
		return lifecycle.Container{}, err
	}
	rec, err := st.Lookup(ref)
	if err == nil && rec.Creating {
		err = errdefs.NotFound("no such container: %s (it is still being created)", ref)
	}
	c := rec.Container
	c.Restarting = m.isRestarting(rec)
	return c, err
}

// List implements lifecycle.Manager: without All only running and paused
// containers, as docker ps; newest first.
func (m *Manager) List(_ context.Context, f lifecycle.Filter) ([]lifecycle.Container, error) {
	st, _, err := m.env()
	if err != nil {
		return nil, err
	}
	recs, err := st.List()
	if err != nil {
		return nil, err
	}
	var out []lifecycle.Container
	for _, r := range recs {
		c := r.Container
		c.Restarting = m.isRestarting(r)
		if r.Creating {
			continue
		}
		if !f.All && len(f.States) == 0 && c.State != lifecycle.StateRunning && c.State != lifecycle.StatePaused {
			continue
		}
		if len(f.States) > 0 && !slices.Contains(f.States, c.State) {
			continue
		}
		if f.Name != "" && !strings.Contains(c.Name, strings.TrimPrefix(f.Name, "/")) {
			continue
		}
		if !labelsMatch(c.Config.Labels, f.Labels) {
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b lifecycle.Container) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// labelsMatch: every wanted label is present; an empty wanted value only
// asks for the key.
func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		hv, ok := have[k]
		if !ok || (v != "" && hv != v) {
			return false
		}
	}
	return true
}

// Exec implements lifecycle.Manager: the process inherits the container's
// environment, working dir and user unless cfg overrides them.
func (m *Manager) Exec(ctx context.Context, ref string, cfg lifecycle.ExecConfig) (string, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := check(rec, statemachine.Exec); err != nil {
		return "", err
	}
	if len(cfg.Cmd) == 0 {
		return "", errdefs.InvalidArgument("exec in %s: no command given", rec.Container.Name)
	}
	iso, err := m.isolationOf(rec)
	if err != nil {
		return "", err
	}
	proc, err := execProcess(rec, cfg)
	if err != nil {
		return "", err
	}
	execID := newID()[:16]
	if _, err := iso.Exec(ctx, rec.Container.ID, execID, proc); err != nil {
		return "", fmt.Errorf("exec in %s: %w", rec.Container.Name, err)
	}
	return execID, nil
}

func execProcess(rec store.Record, cfg lifecycle.ExecConfig) (*specs.Process, error) {
	base := specs.Process{Cwd: "/"}
	if rec.Task != nil && rec.Task.OCI != nil && rec.Task.OCI.Process != nil {
		base = *rec.Task.OCI.Process
	}
	p := base
	p.Args = slices.Clone(cfg.Cmd)
	p.Terminal = cfg.Tty
	p.ConsoleSize = nil
	if cfg.Tty && cfg.ConsoleSize != nil {
		p.ConsoleSize = &specs.Box{Height: uint(cfg.ConsoleSize.Height), Width: uint(cfg.ConsoleSize.Width)}
	}
	env := slices.Clone(base.Env)
	for _, kv := range cfg.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, errdefs.InvalidArgument("exec env %q is not KEY=VALUE", kv)
		}
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		env = append(env, kv)
	}
	p.Env = env
	if cfg.WorkingDir != "" {
		if !strings.HasPrefix(cfg.WorkingDir, "/") {
			return nil, errdefs.InvalidArgument("exec working dir %q is not an absolute path", cfg.WorkingDir)
		}
		p.Cwd = cfg.WorkingDir
	}
	if cfg.User != "" {
		uid, gid, err := numericUser(cfg.User)
		if err != nil {
			return nil, err
		}
		p.User = specs.User{UID: uid, GID: gid}
	}
	return &p, nil
}

// numericUser parses "uid" or "uid:gid".
func numericUser(u string) (uint32, uint32, error) {
	us, gs, hasGroup := strings.Cut(u, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return 0, 0, errdefs.InvalidArgument("exec user %q: give a numeric uid[:gid] (user names are resolved only for the container's own process)", u)
	}
	gid := uid
	if hasGroup {
		g, err := strconv.ParseUint(gs, 10, 32)
		if err != nil {
			return 0, 0, errdefs.InvalidArgument("exec user %q: give a numeric uid[:gid]", u)
		}
		gid = g
	}
	return uint32(uid), uint32(gid), nil
}

// Attach implements lifecycle.Manager.
func (m *Manager) Attach(ctx context.Context, ref, execID string, streams isolation.Streams) error {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return err
	}
	unlock() // attach lasts; it must not hold the container's lock
	if err := check(rec, statemachine.Attach); err != nil {
		return err
	}
	iso, err := m.isolationOf(rec)
	if err != nil {
		return err
	}
	return iso.Attach(ctx, rec.Container.ID, execID, streams)
}

// Resize implements lifecycle.Manager.
func (m *Manager) Resize(ctx context.Context, ref, execID string, size isolation.ConsoleSize) error {
	st, layers, err := m.env()
	if err != nil {
		return err
	}
	rec, err := st.Lookup(ref)
	if err != nil {
		return err
	}
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return err
	}
	return iso.ResizePTY(ctx, rec.Container.ID, execID, size)
}

// Wait implements lifecycle.Manager: it returns at once for a stopped
// container, else at its next exit. A container removed meanwhile is
// ErrNotFound.
func (m *Manager) Wait(ctx context.Context, ref string) (isolation.ExitStatus, error) {
	st, _, err := m.env()
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := m.events.subscribe(wctx) // before reading the state: no exit slips between
	rec, err := st.Lookup(ref)
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	if rec.Container.State == lifecycle.StateStopped {
		return exitOf(rec.Container), nil
	}
	id := rec.Container.ID
	// Events are the fast path; a subscriber that fell behind may lose
	// one, so the record is also looked at now and then.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return isolation.ExitStatus{}, ctx.Err()
		case <-tick.C:
			now, err := st.Get(id)
			if errdefs.IsNotFound(err) {
				return isolation.ExitStatus{}, errdefs.NotFound("container %s was removed while waiting", rec.Container.Name)
			}
			if err == nil && now.Container.State == lifecycle.StateStopped {
				return exitOf(now.Container), nil
			}
		case e, ok := <-events:
			if !ok {
				return isolation.ExitStatus{}, ctx.Err()
			}
			if e.ContainerID != id {
				continue
			}
			switch e.Kind {
			case lifecycle.EventExit:
				return isolation.ExitStatus{Code: e.ExitCode, ExitedAt: e.Time, OOMKilled: e.Attributes["oom_killed"] == "true"}, nil
			case lifecycle.EventDelete:
				return isolation.ExitStatus{}, errdefs.NotFound("container %s was removed while waiting", rec.Container.Name)
			}
		}
	}
}

func exitOf(c lifecycle.Container) isolation.ExitStatus {
	st := isolation.ExitStatus{Code: c.ExitCode, ExitedAt: c.FinishedAt, OOMKilled: c.OOMKilled}
	if c.ExitCode > 128 && c.ExitCode < 128+65 {
		st.Signal = syscall.Signal(c.ExitCode - 128)
	}
	return st
}

// Stats implements lifecycle.Manager: resources usage, with every field
// isolation reports (the guest's own view for VMs) taking precedence.
func (m *Manager) Stats(ctx context.Context, ref string) (isolation.Stats, error) {
	st, layers, err := m.env()
	if err != nil {
		return isolation.Stats{}, err
	}
	rec, err := st.Lookup(ref)
	if err != nil {
		return isolation.Stats{}, err
	}
	if rec.Container.State != lifecycle.StateRunning && rec.Container.State != lifecycle.StatePaused {
		return isolation.Stats{}, errdefs.InvalidState("container %s is %s; only a running or paused container has stats", rec.Container.Name, rec.Container.State)
	}
	var fromRes, fromIso isolation.Stats
	var resErr, isoErr error
	if rec.Group != "" {
		if res, err := layers.Resources(); err == nil {
			fromRes, resErr = res.Usage(ctx, rec.Group)
		} else {
			resErr = err
		}
	} else {
		resErr = errdefs.NotFound("no resource group")
	}
	if iso, err := layers.Isolation(rec.Container.Isolation); err == nil {
		fromIso, isoErr = iso.Stats(ctx, rec.Container.ID)
	} else {
		isoErr = err
	}
	if resErr != nil && isoErr != nil {
		return isolation.Stats{}, fmt.Errorf("stats of %s: resources: %v; isolation: %w", rec.Container.Name, resErr, isoErr)
	}
	return MergeStats(fromRes, fromIso), nil
}

// MergeStats overlays every non-zero field of over onto base.
func MergeStats(base, over isolation.Stats) isolation.Stats {
	out := base
	pick := func(dst *uint64, v uint64) {
		if v != 0 {
			*dst = v
		}
	}
	if !over.Time.IsZero() {
		out.Time = over.Time
	}
	pick(&out.CPUUsageNanos, over.CPUUsageNanos)
	pick(&out.CPUThrottledPeriods, over.CPUThrottledPeriods)
	pick(&out.CPUThrottledNanos, over.CPUThrottledNanos)
	pick(&out.MemoryBytes, over.MemoryBytes)
	pick(&out.MemoryPeakBytes, over.MemoryPeakBytes)
	pick(&out.SwapBytes, over.SwapBytes)
	pick(&out.IOReadBytes, over.IOReadBytes)
	pick(&out.IOWriteBytes, over.IOWriteBytes)
	pick(&out.Pids, over.Pids)
	if out.Time.IsZero() {
		out.Time = time.Now().UTC()
	}
	return out
}

// Events implements lifecycle.Manager.
func (m *Manager) Events(ctx context.Context) (<-chan lifecycle.Event, error) {
	return m.events.subscribe(ctx), nil
}

// WaitExec implements lifecycle.Manager: it forwards to the isolation
// mode's Wait for the exec, which keeps the status of an exited exec for as
// long as the task lives.
func (m *Manager) WaitExec(ctx context.Context, ref, execID string) (isolation.ExitStatus, error) {
	if execID == "" {
		return isolation.ExitStatus{}, errdefs.InvalidArgument("wait for an exec in %s: no exec ID given (use Wait for the container's own process)", ref)
	}
	st, layers, err := m.env()
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	rec, err := st.Lookup(ref)
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	iso, err := layers.Isolation(rec.Container.Isolation)
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	es, err := iso.Wait(ctx, rec.Container.ID, execID)
	if err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("wait for exec %s in %s: %w", execID, rec.Container.Name, err)
	}
	return es, nil
}

// Rename implements lifecycle.Manager: the record and the names index
// change in one store transaction, so a taken name changes nothing.
func (m *Manager) Rename(ctx context.Context, ref, newName string) error {
	if err := checkName(newName); err != nil {
		return err
	}
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return err
	}
	defer unlock()
	old := rec.Container.Name
	if old == newName {
		return nil
	}
	st, layers, err := m.env()
	if err != nil {
		return err
	}
	rec, err = st.Update(rec.Container.ID, func(r *store.Record) error {
		r.Container.Name = newName
		return nil
	})
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", old, newName, err)
	}
	if err := renameEndpoint(ctx, layers, rec.Container.ID, newName); err != nil {
		if _, uerr := st.Update(rec.Container.ID, func(r *store.Record) error { r.Container.Name = old; return nil }); uerr != nil {
			m.log.Error("undo a rename whose network endpoint could not follow", "container_id", rec.Container.ID, "error", uerr)
		}
		return fmt.Errorf("rename %s to %s: network endpoint: %w", old, newName, err)
	}
	m.log.Info("container renamed", "container_id", rec.Container.ID, "old_name", old, "name", newName)
	return nil
}

// Update implements lifecycle.Manager: the resources plugin applies the
// limits to the container's group (which lives as long as the container),
// then the record keeps them. A record that cannot be written gets the old
// limits put back on the group.
func (m *Manager) Update(ctx context.Context, ref string, limits resources.Limits) (lifecycle.Container, error) {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return lifecycle.Container{}, err
	}
	defer unlock()
	name := rec.Container.Name
	if rec.Group == "" {
		return rec.Container, errdefs.InvalidState("update %s: the container has no resource group (it was created without a resources plugin); recreate it with the limits", name)
	}
	st, layers, err := m.env()
	if err != nil {
		return rec.Container, err
	}
	res, err := layers.Resources()
	if err != nil {
		return rec.Container, fmt.Errorf("update %s: %w", name, err)
	}
	if runsInVM(layers, rec.Container.Isolation) {
		return m.updateVM(ctx, rec, res, limits)
	}
	if err := res.Update(ctx, rec.Group, limits); err != nil {
		return rec.Container, fmt.Errorf("update %s: %w", name, err)
	}
	old, group := rec.Container.Config.Limits, rec.Group
	rec, err = st.Update(rec.Container.ID, func(r *store.Record) error {
		r.Container.Config.Limits = limits
		return nil
	})
	if err != nil {
		if uerr := res.Update(ctx, group, old); uerr != nil {
			return lifecycle.Container{}, fmt.Errorf("update %s: %w (and putting the old limits back: %v)", name, err, uerr)
		}
		return lifecycle.Container{}, fmt.Errorf("update %s: %w", name, err)
	}
	m.log.Info("container limits updated", "container_id", rec.Container.ID, "name", name)
	return rec.Container, nil
}
