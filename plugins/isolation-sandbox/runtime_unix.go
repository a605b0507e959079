//go:build linux || darwin

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/procwait"
	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/internal/taskevents"
	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// settings are the plugin's block of config.hcl.
type settings struct {
	// InitPath is the sandbox init binary; empty looks next to the plugin
	// (../berth-sandbox-init, then ./berth-sandbox-init) and in PATH.
	InitPath *string `json:"init_path"`
}

// runtime is the plugin side: it holds no task state of its own. Every
// task lives in its supervisor and its directory, so a restarted plugin
// finds them all (Recover).
type runtime struct {
	log hclog.Logger
	// plat is the backend: the host's (hostPlatform), or the Seatbelt one
	// run on Linux by the tests of the darwin runtime's logic.
	plat platform

	mu         sync.Mutex
	stateDir   string
	runtimeDir string
	initPath   string

	criuOnce   sync.Once
	criuReason string

	hub *taskevents.Hub
}

var _ isolation.Runtime = (*runtime)(nil)

func newRuntime(log hclog.Logger) *runtime {
	return &runtime{log: log, plat: hostPlatform{}, hub: taskevents.NewHub()}
}

// Info implements plugin.Base.
func (r *runtime) Info(context.Context) (plugin.Info, error) {
	// No CapCheckpoint: see checkpointUnavailable.
	return plugin.HostInfo(plugin.LayerIsolation, "sandbox", version.Version, r.plat.caps()...), nil
}

// ConfigSchema implements plugin.Base.
func (r *runtime) ConfigSchema(context.Context) (*schema.Spec, error) {
	return schema.Object(map[string]*schema.Spec{
		"init_path": schema.Attr("init_path", "string", false),
	}), nil
}

// Configure implements plugin.Base.
func (r *runtime) Configure(_ context.Context, req plugin.ConfigureRequest) error {
	var s settings
	if err := req.Config.Decode(&s); err != nil {
		return errdefs.InvalidArgument("isolation sandbox config: %v", err)
	}
	if req.StateDir == "" || req.RuntimeDir == "" {
		return errdefs.InvalidArgument("isolation sandbox: the core gave no state or runtime dir")
	}
	initPath, err := r.plat.findInit(s.InitPath)
	if err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(req.StateDir, "tasks"), req.RuntimeDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("isolation sandbox: %w", err)
		}
	}
	r.mu.Lock()
	r.stateDir, r.runtimeDir, r.initPath = req.StateDir, req.RuntimeDir, initPath
	r.mu.Unlock()
	r.log.Info("configured", "state_dir", req.StateDir, "init", initPath)
	return nil
}

func (r *runtime) dirs() (string, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stateDir == "" {
		return "", "", errdefs.Unavailable("isolation sandbox is not configured yet")
	}
	return r.stateDir, r.runtimeDir, nil
}

func (r *runtime) taskDir(id string) (string, error) {
	if err := isolation.CheckTaskID(id); err != nil {
		return "", err
	}
	state, _, err := r.dirs()
	if err != nil {
		return "", err
	}
	return filepath.Join(state, "tasks", id), nil
}

// Create implements isolation.Runtime.
func (r *runtime) Create(ctx context.Context, spec isolation.Spec) (isolation.TaskInfo, error) {
	dir, err := r.taskDir(spec.ID)
	if err != nil {
		return isolation.TaskInfo{}, err
	}
	_, runDir, _ := r.dirs()
	oci, err := prepareSpec(spec, r.plat)
	if err != nil {
		return isolation.TaskInfo{}, err
	}
	r.mu.Lock()
	initPath := r.initPath
	r.mu.Unlock()
	if err := addInitMount(r.plat, initPath, oci); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	spec.OCI = oci
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return isolation.TaskInfo{}, errdefs.AlreadyExists("task %s already exists", spec.ID)
		}
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := r.plat.prepareNetwork(spec, oci, dir); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	if err := atomicfile.WriteState(filepath.Join(dir, supervisor.SpecFile), spec); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	sum := sha256.Sum256([]byte(spec.ID))
	socket := filepath.Join(runDir, hex.EncodeToString(sum[:6])+".sock")
	pid, err := r.startSupervisor(ctx, dir, socket)
	if err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	// The init is created and held: its namespaces exist, nothing runs.
	if err := r.plat.attachNetwork(ctx, spec, pid); err != nil {
		ok = true // Delete removes the task, supervisor and dir
		if _, derr := r.Delete(context.WithoutCancel(ctx), spec.ID); derr != nil {
			r.log.Error("undo a task whose network failed", "container_id", spec.ID, "error", derr)
		}
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: network: %w", spec.ID, err)
	}
	ok = true
	r.watch(spec.ID, "")
	r.log.Info("task created", "container_id", spec.ID, "pid", pid)
	return isolation.TaskInfo{ID: spec.ID, Pid: pid, Status: isolation.StatusCreated, Spec: &spec, CreatedAt: time.Now().UTC()}, nil
}

// prepareSpec checks what this mode can run and applies the network
// attachment to a copy of the OCI spec.
func prepareSpec(spec isolation.Spec, plat platform) (*specs.Spec, error) {
	if spec.OCI == nil || spec.OCI.Process == nil || len(spec.OCI.Process.Args) == 0 {
		return nil, errdefs.InvalidArgument("task %s: the spec has no process to run", spec.ID)
	}
	if len(spec.Rootfs) == 0 {
		return nil, errdefs.InvalidArgument("task %s: no rootfs mounts", spec.ID)
	}
	for i, m := range spec.Rootfs {
		if m.Type != "overlay" && m.Type != "bind" {
			return nil, errdefs.InvalidArgument("task %s: rootfs mount %d has type %q; the sandbox takes overlay or bind mounts", spec.ID, i+1, m.Type)
		}
	}
	// A copy of what platformSpec changes (namespaces, hostname,
	// annotations), so the caller's spec is left as it was.
	oci := *spec.OCI
	if oci.Linux != nil {
		l := *oci.Linux
		l.Namespaces = slices.Clone(l.Namespaces)
		oci.Linux = &l
	}
	oci.Annotations = maps.Clone(oci.Annotations)
	oci.Mounts = slices.Clone(oci.Mounts)
	if err := plat.prepare(spec, &oci); err != nil {
		return nil, err
	}
	return &oci, nil
}

// startSupervisor runs `isolation-sandbox supervise` for the task in dir
// and waits for its report: the init is created (its pid) or why not.
func (r *runtime) startSupervisor(ctx context.Context, dir, socket string) (int, error) {
	r.mu.Lock()
	initPath := r.initPath
	r.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(dir, "supervisor.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	rep, repW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer rep.Close()
	cmd, err := r.plat.supervisorCommand(initPath, dir, socket)
	if err != nil {
		return 0, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{repW}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	// Its own session: the core's signals to the plugin's group never
	// reach it, and it outlives the plugin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		repW.Close()
		return 0, fmt.Errorf("start the supervisor: %w", err)
	}
	repW.Close()
	go func() { _ = cmd.Wait() }() // reap it if it ends while we run
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(rep).ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return 0, ctx.Err()
	case res := <-ch:
		line := strings.TrimSpace(res.line)
		if msg, ok := strings.CutPrefix(line, "error "); ok {
			return 0, errors.New(msg)
		}
		var pid int
		if _, err := fmt.Sscanf(line, "ok %d", &pid); err != nil {
			tail, _ := os.ReadFile(filepath.Join(dir, "supervisor.log"))
			return 0, fmt.Errorf("the supervisor ended without a report (%v): %s", res.err, lastLines(string(tail), 5))
		}
		return pid, nil
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// socketOf returns the control socket of task id, ErrNotFound when there
// is no such task.
func (r *runtime) socketOf(id string) (string, string, error) {
	dir, err := r.taskDir(id)
	if err != nil {
		return "", "", err
	}
	var st supervisor.State
	if err := atomicfile.ReadJSON(filepath.Join(dir, supervisor.StateFile), &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return "", "", errdefs.NotFound("task %s does not exist", id)
			}
			return "", "", errdefs.Unavailable("task %s is being created", id)
		}
		return "", "", err
	}
	return st.Socket, dir, nil
}

// control makes a call to task id's supervisor; a supervisor that is gone
// reads as a stopped task.
func (r *runtime) control(ctx context.Context, id string, req supervisor.Request) (supervisor.Response, error) {
	socket, _, err := r.socketOf(id)
	if err != nil {
		return supervisor.Response{}, err
	}
	resp, err := callSupervisor(ctx, socket, req)
	if errors.Is(err, supervisor.ErrGone) {
		return resp, errdefs.InvalidState("task %s has stopped (its supervisor has exited): %v", id, err)
	}
	return resp, err
}

// Start implements isolation.Runtime.
func (r *runtime) Start(ctx context.Context, id string) (int, error) {
	resp, err := r.control(ctx, id, supervisor.Request{Op: supervisor.OpStart})
	if err != nil {
		return 0, err
	}
	return resp.Pid, nil
}

// Exec implements isolation.Runtime.
func (r *runtime) Exec(ctx context.Context, id, execID string, process *specs.Process) (int, error) {
	resp, err := r.control(ctx, id, supervisor.Request{Op: supervisor.OpExec, ExecID: execID, Process: process})
	if err != nil {
		return 0, err
	}
	r.watch(id, execID)
	return resp.Pid, nil
}

// Signal implements isolation.Runtime.
func (r *runtime) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	_, err := r.control(ctx, id, supervisor.Request{Op: supervisor.OpSignal, ExecID: execID, Signal: sig, All: all})
	if errors.Is(err, errdefs.ErrInvalidState) {
		return errdefs.NotFound("task %s has exited", id)
	}
	return err
}

// Wait implements isolation.Runtime.
func (r *runtime) Wait(ctx context.Context, id, execID string) (isolation.ExitStatus, error) {
	socket, dir, err := r.socketOf(id)
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	resp, err := callSupervisor(ctx, socket, supervisor.Request{Op: supervisor.OpWait, ExecID: execID})
	if err == nil {
		return exitStatus(*resp.Exit), nil
	}
	if !errors.Is(err, supervisor.ErrGone) {
		return isolation.ExitStatus{}, err
	}
	return exitFromDisk(dir, id, execID)
}

// exitFromDisk reads an exit status the supervisor recorded.
func exitFromDisk(dir, id, execID string) (isolation.ExitStatus, error) {
	if execID != "" {
		var e supervisor.ExitStatus
		if err := atomicfile.ReadJSON(filepath.Join(dir, supervisor.ExecsDir, execID+".json"), &e); err != nil {
			return isolation.ExitStatus{}, errdefs.NotFound("task %s: no exit status for process %s (its supervisor is gone)", id, execID)
		}
		return exitStatus(e), nil
	}
	var st supervisor.State
	if err := atomicfile.ReadJSON(filepath.Join(dir, supervisor.StateFile), &st); err != nil {
		return isolation.ExitStatus{}, err
	}
	if st.Exit == nil {
		return isolation.ExitStatus{}, errdefs.Unavailable("task %s: its supervisor died before the task exited; the exit status is unknown", id)
	}
	return exitStatus(*st.Exit), nil
}

// Attach implements isolation.Runtime.
func (r *runtime) Attach(ctx context.Context, id, execID string, streams isolation.Streams) error {
	socket, _, err := r.socketOf(id)
	if err != nil {
		return err
	}
	c, err := supervisor.Dial(ctx, socket)
	if err != nil {
		return errdefs.InvalidState("task %s has stopped: %v", id, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(c).Encode(supervisor.Request{Op: supervisor.OpAttach, ExecID: execID, Stdin: streams.Stdin != nil}); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("attach to task %s: %w", id, err)
	}
	var resp supervisor.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return err
	}
	if err := mapErr(resp.Err()); err != nil {
		return err
	}
	var wmu sync.Mutex
	if streams.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := streams.Stdin.Read(buf)
				if n > 0 {
					wmu.Lock()
					werr := supervisor.WriteFrame(c, supervisor.FrameStdin, buf[:n])
					wmu.Unlock()
					if werr != nil {
						return
					}
				}
				if err != nil {
					if errors.Is(err, io.EOF) {
						wmu.Lock()
						_ = supervisor.WriteFrame(c, supervisor.FrameStdinClose, nil)
						wmu.Unlock()
					}
					return
				}
			}
		}()
	}
	for {
		kind, data, err := supervisor.ReadFrame(br)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("attach to task %s: %w", id, err)
		}
		var w io.Writer
		switch kind {
		case supervisor.FrameEnd:
			return nil
		case supervisor.FrameStdout:
			w = streams.Stdout
		case supervisor.FrameStderr:
			w = streams.Stderr
		}
		if w != nil {
			if _, err := w.Write(data); err != nil {
				return err
			}
		}
	}
}

// ResizePTY implements isolation.Runtime.
func (r *runtime) ResizePTY(ctx context.Context, id, execID string, size isolation.ConsoleSize) error {
	_, err := r.control(ctx, id, supervisor.Request{Op: supervisor.OpResize, ExecID: execID, Width: size.Width, Height: size.Height})
	return err
}

// Pause implements isolation.Runtime.
func (r *runtime) Pause(ctx context.Context, id string) error {
	_, err := r.control(ctx, id, supervisor.Request{Op: supervisor.OpPause})
	return err
}

// Resume implements isolation.Runtime.
func (r *runtime) Resume(ctx context.Context, id string) error {
	_, err := r.control(ctx, id, supervisor.Request{Op: supervisor.OpResume})
	return err
}

// checkpointUnavailable says why this plugin cannot checkpoint: CRIU's own
// reason when `criu check` fails, else that the sandbox does not drive CRIU
// yet. (CapCheckpoint is declared only once both hold.)
func (r *runtime) checkpointUnavailable() string {
	r.criuOnce.Do(func() {
		r.criuReason = r.plat.criuCheck()
		if r.criuReason == "" {
			r.criuReason = "criu check passes, but checkpoint through CRIU is not implemented by the sandbox yet"
		}
	})
	return r.criuReason
}

// Checkpoint implements isolation.Runtime.
func (r *runtime) Checkpoint(_ context.Context, id string, _ isolation.CheckpointOptions) error {
	return errdefs.NotImplemented("checkpoint of task %s: unavailable: %s", id, r.checkpointUnavailable())
}

// Restore implements isolation.Runtime.
func (r *runtime) Restore(_ context.Context, spec isolation.Spec, _ string) (isolation.TaskInfo, error) {
	return isolation.TaskInfo{}, errdefs.NotImplemented("restore of task %s: unavailable: %s", spec.ID, r.checkpointUnavailable())
}

// Stats implements isolation.Runtime.
func (r *runtime) Stats(ctx context.Context, id string) (isolation.Stats, error) {
	resp, err := r.control(ctx, id, supervisor.Request{Op: supervisor.OpStats})
	if err != nil {
		return isolation.Stats{}, err
	}
	st := resp.Stats
	return isolation.Stats{Time: st.Time, CPUUsageNanos: st.CPUUsageNanos, MemoryBytes: st.MemoryBytes,
		MemoryPeakBytes: st.MemoryPeakBytes, Pids: st.Pids}, nil
}

// Delete implements isolation.Runtime.
func (r *runtime) Delete(ctx context.Context, id string) (isolation.ExitStatus, error) {
	dir, err := r.taskDir(id)
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return isolation.ExitStatus{}, nil
	}
	var st supervisor.State
	_ = atomicfile.ReadJSON(filepath.Join(dir, supervisor.StateFile), &st)
	var exit isolation.ExitStatus
	if st.Socket != "" {
		resp, err := callSupervisor(ctx, st.Socket, supervisor.Request{Op: supervisor.OpShutdown})
		switch {
		case err == nil:
			exit = exitStatus(*resp.Exit)
		case errors.Is(err, supervisor.ErrGone):
		default:
			return isolation.ExitStatus{}, err
		}
	}
	// Whatever the supervisor left (it died, or it is on its way out).
	if st.SupervisorPid > 0 {
		procwait.Gone(st.SupervisorPid, 30*time.Second)
	}
	_ = atomicfile.ReadJSON(filepath.Join(dir, supervisor.StateFile), &st)
	if err := r.plat.killLeftovers(st); err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("delete task %s: %w", id, err)
	}
	if st.Exit != nil && exit.ExitedAt.IsZero() {
		exit = exitStatus(*st.Exit)
	}
	var spec isolation.Spec
	if err := atomicfile.ReadJSON(filepath.Join(dir, supervisor.SpecFile), &spec); err == nil {
		if err := r.plat.detachNetwork(ctx, spec); err != nil {
			return isolation.ExitStatus{}, fmt.Errorf("delete task %s: network: %w", id, err)
		}
	}
	if err := r.plat.unmountUnder(dir); err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("delete task %s: %w", id, err)
	}
	if st.Socket != "" {
		_ = os.Remove(st.Socket)
	}
	if err := os.RemoveAll(dir); err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("delete task %s: %w", id, err)
	}
	r.log.Info("task deleted", "container_id", id)
	return exit, nil
}

// info describes task id from its supervisor, or from disk when the
// supervisor is gone.
func (r *runtime) info(ctx context.Context, id string) (isolation.TaskInfo, error) {
	dir, err := r.taskDir(id)
	if err != nil {
		return isolation.TaskInfo{}, err
	}
	var spec isolation.Spec
	if err := atomicfile.ReadJSON(filepath.Join(dir, supervisor.SpecFile), &spec); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("task %s: %w", id, err)
	}
	var st supervisor.State
	if err := atomicfile.ReadJSON(filepath.Join(dir, supervisor.StateFile), &st); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("task %s: %w", id, err)
	}
	if resp, err := callSupervisor(ctx, st.Socket, supervisor.Request{Op: supervisor.OpState}); err == nil {
		st = *resp.State
	} else if st.Exit == nil {
		// The supervisor died and took the exit status with it.
		st.Status = supervisor.StatusStopped
		st.Exit = &supervisor.ExitStatus{Code: 255}
	}
	info := isolation.TaskInfo{ID: id, Pid: st.Pid, Status: isolation.Status(st.Status), Spec: &spec, CreatedAt: st.CreatedAt}
	if st.Exit != nil {
		e := exitStatus(*st.Exit)
		info.Exit = &e
	}
	return info, nil
}

// List implements isolation.Runtime.
func (r *runtime) List(ctx context.Context) ([]isolation.TaskInfo, error) {
	state, _, err := r.dirs()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(state, "tasks"))
	if err != nil {
		return nil, err
	}
	var out []isolation.TaskInfo
	for _, e := range entries {
		info, err := r.info(ctx, e.Name())
		if err != nil {
			r.log.Warn("skipping unreadable task", "container_id", e.Name(), "error", err)
			continue
		}
		out = append(out, info)
	}
	return out, nil
}

// Recover implements isolation.Runtime: the tasks are all on disk and in
// their supervisors; it lists them and watches the live ones for exits.
func (r *runtime) Recover(ctx context.Context) ([]isolation.TaskInfo, error) {
	tasks, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if t.Status != isolation.StatusStopped {
			r.watch(t.ID, "")
			if t.Spec != nil {
				if err := r.plat.recoverNetwork(ctx, *t.Spec); err != nil {
					r.log.Warn("could not restore the task's port rules", "container_id", t.ID, "error", err)
				}
			}
		}
	}
	r.log.Info("recovered tasks", "count", len(tasks))
	return tasks, nil
}

// Events implements isolation.Runtime.
func (r *runtime) Events(ctx context.Context) (<-chan isolation.TaskEvent, error) {
	return r.hub.Subscribe(ctx), nil
}

// watch publishes the exit of process execID of task id once, from a
// blocking wait on its supervisor.
func (r *runtime) watch(id, execID string) {
	r.hub.WatchExit(id, execID, func() (isolation.ExitStatus, error) { return r.Wait(context.Background(), id, execID) })
}

func exitStatus(e supervisor.ExitStatus) isolation.ExitStatus {
	return isolation.ExitStatus{Code: e.Code, Signal: e.Signal, ExitedAt: e.ExitedAt, OOMKilled: e.OOMKilled}
}

// mapErr turns a supervisor's error kinds into sdk/errdefs errors.
func mapErr(err error) error {
	var e *supervisor.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Kind {
	case supervisor.KindNotFound:
		return errdefs.NotFound("%s", e.Msg)
	case supervisor.KindAlreadyExists:
		return errdefs.AlreadyExists("%s", e.Msg)
	case supervisor.KindInvalidState:
		return errdefs.InvalidState("%s", e.Msg)
	case supervisor.KindInvalid:
		return errdefs.InvalidArgument("%s", e.Msg)
	}
	return err
}

// callSupervisor is supervisor.Call with the errors mapped.
func callSupervisor(ctx context.Context, socket string, req supervisor.Request) (supervisor.Response, error) {
	resp, err := supervisor.Call(ctx, socket, req)
	return resp, mapErr(err)
}
