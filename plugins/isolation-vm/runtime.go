//go:build linux || darwin

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/procwait"
	"github.com/berth-dev/berth/internal/taskevents"
	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// runtime is the plugin side of mode vm. It holds no task state of its
// own: every task lives in its supervisor (which owns the VM) and its
// directory, so a restarted plugin finds them all (Recover).
type runtime struct {
	log hclog.Logger

	mu         sync.Mutex
	stateDir   string
	runtimeDir string
	defaults   vmDefaults
	// bootErr says why no VM can boot (no kernel installed); nil when
	// the boot assets are there.
	bootErr error
	// supervisorExe is the binary run as `supervise` (default: this one;
	// in-process tests point it at the built plugin).
	supervisorExe string
	// templates: start VMs from pre-booted templates (template.go).
	templates bool

	hub *taskevents.Hub
	// oomWatches are the live agent-events subscriptions (oomwatch.go).
	oomMu      sync.Mutex
	oomWatches map[string]*oomWatch
}

var _ isolation.Runtime = (*runtime)(nil)

func newRuntime(log hclog.Logger) *runtime {
	return &runtime{log: log, hub: taskevents.NewHub()}
}

// Info implements plugin.Base.
func (r *runtime) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerIsolation, "vm", version.Version, capabilities()...), nil
}

// capabilities are what mode vm offers: a block-device rootfs, exec and
// terminals through the guest agent, pause and checkpoint of the whole VM,
// recovery from the supervisors.
func capabilities() []string {
	return append([]string{isolation.CapRootfsBlock, isolation.CapExec, isolation.CapTTY, isolation.CapPause,
		isolation.CapCheckpoint, isolation.CapRecover, isolation.CapVM}, networkCaps()...) // network.go
}

// ConfigSchema implements plugin.Base.
func (r *runtime) ConfigSchema(context.Context) (*schema.Spec, error) {
	return configSchema(), nil
}

// Configure implements plugin.Base: it resolves the kernel and builds (or
// reuses, by content hash) the initramfs in the state dir.
func (r *runtime) Configure(ctx context.Context, req plugin.ConfigureRequest) error {
	var s settings
	if err := req.Config.Decode(&s); err != nil {
		return errdefs.InvalidArgument("isolation vm config: %v", err)
	}
	if req.StateDir == "" || req.RuntimeDir == "" {
		return errdefs.InvalidArgument("isolation vm: the core gave no state or runtime dir")
	}
	for _, d := range []string{filepath.Join(req.StateDir, "tasks"), req.RuntimeDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("isolation vm: %w", err)
		}
	}
	defaults, err := resolveDefaults(ctx, r.log, s, req.StateDir)
	var bootErr error
	if errdefs.IsNotFound(err) {
		// No kernel installed yet (or no agent built): the plugin serves
		// (Recover, List, Delete), and Create says what to do.
		r.log.Warn("VM containers cannot start until this is fixed", "error", err)
		bootErr, err = err, nil
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.stateDir, r.runtimeDir, r.defaults, r.bootErr = req.StateDir, req.RuntimeDir, defaults, bootErr
	r.templates = templatesEnabled(req.Config)
	r.mu.Unlock()
	r.log.Info("configured", "state_dir", req.StateDir, "kernel", defaults.Kernel, "initrd", defaults.Initrd,
		"cpus", defaults.CPUs, "memory", defaults.MemoryBytes)
	return nil
}

func (r *runtime) dirs() (string, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stateDir == "" {
		return "", "", errdefs.Unavailable("isolation vm is not configured yet")
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

// shortName is the first 12 hex digits of sha256(id): the task's socket and
// run dir names, short enough for unix socket paths.
func shortName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

// Create implements isolation.Runtime: it boots the task's VM under a new
// supervisor and creates the container in it.
func (r *runtime) Create(ctx context.Context, spec isolation.Spec) (isolation.TaskInfo, error) {
	return r.create(ctx, spec, "")
}

// Restore implements isolation.Runtime: a new supervisor restores the VM
// from dir (written by Checkpoint), re-attaches to the container and lets
// it run on.
func (r *runtime) Restore(ctx context.Context, spec isolation.Spec, dir string) (isolation.TaskInfo, error) {
	if _, err := os.Stat(filepath.Join(dir, checkpointTask)); err != nil {
		return isolation.TaskInfo{}, errdefs.InvalidArgument("restore task %s: %s is not a checkpoint of mode vm: %v", spec.ID, dir, err)
	}
	return r.create(ctx, spec, dir)
}

func (r *runtime) create(ctx context.Context, spec isolation.Spec, restore string) (isolation.TaskInfo, error) {
	began := time.Now()
	dir, err := r.taskDir(spec.ID)
	if err != nil {
		return isolation.TaskInfo{}, err
	}
	_, runDir, _ := r.dirs()
	if err := checkSpec(spec); err != nil {
		return isolation.TaskInfo{}, err
	}
	r.mu.Lock()
	boot, bootErr := r.defaults.bootFor(spec), r.bootErr
	r.mu.Unlock()
	if bootErr != nil && (spec.VM == nil || spec.VM.Kernel == "" || spec.VM.Initrd == "") {
		return isolation.TaskInfo{}, errdefs.Unavailable("task %s: no VM can boot: %v", spec.ID, bootErr)
	}
	boot.Restore = restore
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
	if err := writeJSON(filepath.Join(dir, specFile), spec); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	if err := writeJSON(filepath.Join(dir, bootFile), boot); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	r.chooseTemplate(dir, boot, spec) // template.go
	// The host side of a bridge attachment: TAP and published ports (network.go).
	undoNet, err := attachNetwork(ctx, spec)
	if err != nil {
		return isolation.TaskInfo{}, err
	}
	defer func() {
		if !ok {
			undoNet()
		}
	}()
	name := shortName(spec.ID)
	socket := filepath.Join(runDir, name+".sock")
	vmRun := filepath.Join(runDir, name)
	pid, err := r.startSupervisor(ctx, dir, socket, vmRun, boot.BootTimeout)
	if err != nil {
		verb := "create"
		if restore != "" {
			verb = "restore"
		}
		return isolation.TaskInfo{}, fmt.Errorf("%s task %s: %w", verb, spec.ID, err)
	}
	ok = true
	r.watch(spec.ID)
	status := isolation.StatusCreated
	if restore != "" {
		status = isolation.StatusRunning
	}
	r.log.Info("task created", "container_id", spec.ID, "pid", pid, "restored", restore != "", "took", time.Since(began).Round(time.Millisecond).String())
	return isolation.TaskInfo{ID: spec.ID, Pid: pid, Status: status, Spec: reportedSpec(spec, boot), CreatedAt: time.Now().UTC()}, nil
}

// checkSpec refuses what mode vm cannot run.
func checkSpec(spec isolation.Spec) error {
	if spec.OCI == nil || spec.OCI.Process == nil || len(spec.OCI.Process.Args) == 0 {
		return errdefs.InvalidArgument("task %s: the spec has no process to run", spec.ID)
	}
	if dest, ok := spec.OCI.Annotations[isolation.AnnotationInit]; ok {
		if err := isolation.CheckInitPath(dest); err != nil {
			return fmt.Errorf("task %s: %w", spec.ID, err)
		}
	}
	if len(spec.Rootfs) != 1 {
		return errdefs.InvalidArgument("task %s: %d rootfs mounts; mode vm takes one block image (snapshotter ext4)", spec.ID, len(spec.Rootfs))
	}
	m := spec.Rootfs[0]
	if !filepath.IsAbs(m.Source) {
		return errdefs.InvalidArgument("task %s: rootfs source %q: want the absolute path of a block image", spec.ID, m.Source)
	}
	if fi, err := os.Stat(m.Source); err != nil || !fi.Mode().IsRegular() {
		return errdefs.InvalidArgument("task %s: rootfs image %s: not a regular file (%v); mode vm takes a block image (snapshotter ext4)", spec.ID, m.Source, err)
	}
	for _, o := range m.Options {
		if f, ok := strings.CutPrefix(o, "format="); ok && f != "raw" && f != "qcow2" {
			return errdefs.InvalidArgument("task %s: rootfs image format %q: want raw or qcow2", spec.ID, f)
		}
	}
	for _, b := range bindMounts(spec) {
		if fi, err := os.Stat(b.Source); err != nil || !fi.IsDir() {
			return errdefs.InvalidArgument("task %s: bind mount %s → %s: mode vm shares directories only (%v)", spec.ID, b.Source, b.Destination, err)
		}
	}
	if err := checkNetwork(spec); err != nil { // network.go
		return err
	}
	return nil
}

// startSupervisor runs `isolation-vm supervise` for the task in dir and
// waits for its report: the container is created (its pid) or why not.
// The supervisor bounds its own boot; bootTimeout bounds the wait here.
func (r *runtime) startSupervisor(ctx context.Context, dir, socket, vmRun string, bootTimeout time.Duration) (int, error) {
	exe := r.supervisorExe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return 0, err
		}
	}
	logf, err := os.OpenFile(filepath.Join(dir, supervisorLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	rep, repW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer rep.Close()
	cmd := exec.Command(exe, "supervise", "-dir", dir, "-socket", socket, "-rundir", vmRun)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{repW}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	// Its own session: the core's signals to the plugin's group never reach
	// it, and it (with its VM) outlives the plugin.
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
	timer := time.NewTimer(bootTimeout + 30*time.Second)
	defer timer.Stop()
	kill := func() {
		// SIGTERM: the supervisor takes its VM down with it.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		procwait.Gone(cmd.Process.Pid, 20*time.Second)
		_ = cmd.Process.Kill()
		_ = os.RemoveAll(vmRun)
		_ = os.Remove(socket)
	}
	select {
	case <-ctx.Done():
		kill()
		return 0, ctx.Err()
	case <-timer.C:
		kill()
		return 0, fmt.Errorf("the supervisor did not report within %s: %s", bootTimeout+30*time.Second, tailFile(filepath.Join(dir, supervisorLog)))
	case res := <-ch:
		line := strings.TrimSpace(res.line)
		if msg, ok := strings.CutPrefix(line, "error "); ok {
			procwait.Gone(cmd.Process.Pid, 20*time.Second)
			return 0, errors.New(msg)
		}
		var pid int
		if _, err := fmt.Sscanf(line, "ok %d", &pid); err != nil {
			procwait.Gone(cmd.Process.Pid, 20*time.Second)
			_ = os.RemoveAll(vmRun)
			_ = os.Remove(socket)
			return 0, fmt.Errorf("the supervisor ended without a report (%v): %s", res.err, tailFile(filepath.Join(dir, supervisorLog)))
		}
		return pid, nil
	}
}

func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	return lastLines(string(b), 5)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// readState reads task id's state.json; ErrNotFound when there is no such
// task, ErrUnavailable while it is being created.
func (r *runtime) readState(id string) (State, string, error) {
	dir, err := r.taskDir(id)
	if err != nil {
		return State{}, "", err
	}
	var st State
	if err := readJSON(filepath.Join(dir, stateFile), &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return State{}, "", errdefs.NotFound("task %s does not exist", id)
			}
			return State{}, "", errdefs.Unavailable("task %s is being created", id)
		}
		return State{}, "", err
	}
	return st, dir, nil
}

// conn connects to task id's supervisor. The caller closes it.
func (r *runtime) conn(id string) (*grpc.ClientConn, State, error) {
	st, _, err := r.readState(id)
	if err != nil {
		return nil, st, err
	}
	if _, err := os.Stat(st.Socket); err != nil {
		return nil, st, fmt.Errorf("%w: %s", errGone, st.Socket)
	}
	cc, err := dialSupervisor(st.Socket)
	return cc, st, err
}

// control calls a control method of task id's supervisor; a supervisor
// that is gone reads as a stopped task.
func (r *runtime) control(ctx context.Context, id, method string, req, resp any) error {
	cc, _, err := r.conn(id)
	if err != nil {
		if errors.Is(err, errGone) {
			return errdefs.InvalidState("task %s has stopped (its supervisor has exited)", id)
		}
		return err
	}
	defer cc.Close()
	err = callControl(ctx, cc, method, req, resp)
	if errors.Is(err, errGone) {
		return errdefs.InvalidState("task %s has stopped (its supervisor has exited): %v", id, err)
	}
	return err
}

// agent calls the guest agent of task id through its supervisor.
func (r *runtime) agent(id string, call func(*vmagent.Client) error) error {
	cc, _, err := r.conn(id)
	if err != nil {
		if errors.Is(err, errGone) {
			return errdefs.InvalidState("task %s has stopped (its supervisor has exited)", id)
		}
		return err
	}
	defer cc.Close()
	return call(vmagent.NewClientConn(cc))
}

// Start implements isolation.Runtime.
func (r *runtime) Start(ctx context.Context, id string) (int, error) {
	var resp pidReply
	if err := r.control(ctx, id, "Start", &empty{}, &resp); err != nil {
		return 0, err
	}
	return resp.Pid, nil
}

// Exec implements isolation.Runtime.
func (r *runtime) Exec(ctx context.Context, id, execID string, process *specs.Process) (int, error) {
	st, _, err := r.readState(id)
	if err != nil {
		return 0, err
	}
	if st.Status != isolation.StatusRunning {
		return 0, errdefs.InvalidState("task %s is %s: exec needs a running task", id, st.Status)
	}
	var pid int
	err = r.agent(id, func(c *vmagent.Client) (err error) {
		pid, err = c.Exec(ctx, id, execID, process)
		return err
	})
	return pid, err
}

// Signal implements isolation.Runtime.
func (r *runtime) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	st, _, err := r.readState(id)
	if err != nil {
		return err
	}
	if execID == "" && st.Status == isolation.StatusStopped {
		return errdefs.NotFound("task %s has exited", id)
	}
	err = r.agent(id, func(c *vmagent.Client) error { return c.Signal(ctx, id, execID, sig, all) })
	if errors.Is(err, errdefs.ErrInvalidState) && execID == "" {
		return errdefs.NotFound("task %s has exited", id)
	}
	return err
}

// Wait implements isolation.Runtime.
func (r *runtime) Wait(ctx context.Context, id, execID string) (isolation.ExitStatus, error) {
	if execID != "" {
		var e isolation.ExitStatus
		err := r.agent(id, func(c *vmagent.Client) (err error) {
			e, err = c.Wait(ctx, id, execID)
			return err
		})
		return e, err
	}
	var resp exitReply
	err := r.control(ctx, id, "Wait", &empty{}, &resp)
	if err == nil {
		return resp.Exit, nil
	}
	if !errors.Is(err, errdefs.ErrInvalidState) {
		return isolation.ExitStatus{}, err
	}
	// The supervisor is gone: what it recorded.
	st, _, rerr := r.readState(id)
	if rerr != nil {
		return isolation.ExitStatus{}, rerr
	}
	if st.Exit == nil {
		return isolation.ExitStatus{}, errdefs.Unavailable("task %s: its supervisor died before the task exited; the exit status is unknown", id)
	}
	return *st.Exit, nil
}

// Attach implements isolation.Runtime.
func (r *runtime) Attach(ctx context.Context, id, execID string, streams isolation.Streams) error {
	return r.agent(id, func(c *vmagent.Client) error { return c.Attach(ctx, id, execID, streams) })
}

// ResizePTY implements isolation.Runtime.
func (r *runtime) ResizePTY(ctx context.Context, id, execID string, size isolation.ConsoleSize) error {
	return r.agent(id, func(c *vmagent.Client) error { return c.ResizePTY(ctx, id, execID, size) })
}

// Pause implements isolation.Runtime: the whole VM stops (QMP stop).
func (r *runtime) Pause(ctx context.Context, id string) error {
	return r.control(ctx, id, "Pause", &empty{}, &empty{})
}

// Resume implements isolation.Runtime.
func (r *runtime) Resume(ctx context.Context, id string) error {
	return r.control(ctx, id, "Resume", &empty{}, &empty{})
}

// Checkpoint implements isolation.Runtime: the VM's state (qemu
// migration) and the task go into opts.Dir; the VM is ended unless
// opts.LeaveRunning. The container's disk image stays with the snapshot
// layer, unchanged, until Restore.
func (r *runtime) Checkpoint(ctx context.Context, id string, opts isolation.CheckpointOptions) error {
	if opts.Dir == "" || !filepath.IsAbs(opts.Dir) {
		return errdefs.InvalidArgument("checkpoint of task %s: dir %q: want an absolute path", id, opts.Dir)
	}
	return r.control(ctx, id, "Checkpoint", &checkpointRequest{Dir: opts.Dir, LeaveRunning: opts.LeaveRunning}, &empty{})
}

// Stats implements isolation.Runtime: the container's use from its guest
// cgroup.
func (r *runtime) Stats(ctx context.Context, id string) (isolation.Stats, error) {
	var st isolation.Stats
	err := r.agent(id, func(c *vmagent.Client) (err error) {
		st, err = c.Stats(ctx, id)
		return err
	})
	return st, err
}

// Delete implements isolation.Runtime: the supervisor deletes the
// container in the guest, powers the VM off, removes its socket and run
// dir and exits; then the task dir goes. Whatever a dead supervisor left
// (a VM process, the run dir) is removed too.
func (r *runtime) Delete(ctx context.Context, id string) (isolation.ExitStatus, error) {
	began := time.Now()
	dir, err := r.taskDir(id)
	if err != nil {
		return isolation.ExitStatus{}, err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return isolation.ExitStatus{}, nil
	}
	var st State
	_ = readJSON(filepath.Join(dir, stateFile), &st)
	var exit isolation.ExitStatus
	if st.Socket != "" {
		var resp exitReply
		err := r.control(ctx, id, "Shutdown", &empty{}, &resp)
		switch {
		case err == nil:
			exit = resp.Exit
		case errors.Is(err, errdefs.ErrInvalidState) && strings.Contains(err.Error(), "supervisor has exited"):
		default:
			return isolation.ExitStatus{}, err
		}
	}
	r.stopOOM(id) // oomwatch.go
	if st.SupervisorPid > 0 {
		procwait.Gone(st.SupervisorPid, 30*time.Second)
	}
	_ = readJSON(filepath.Join(dir, stateFile), &st)
	if st.VMPid > 0 {
		// The supervisor died and its VM outlived it (it should not: the
		// hypervisor dies with its supervisor).
		killVM(st.VMPid, dir)
	}
	if st.Exit != nil && exit.ExitedAt.IsZero() {
		exit = *st.Exit
	}
	if st.RunDir != "" {
		_ = os.RemoveAll(st.RunDir)
	}
	if st.Socket != "" {
		_ = os.Remove(st.Socket)
	}
	if err := detachNetwork(ctx, dir); err != nil { // network.go
		return isolation.ExitStatus{}, fmt.Errorf("delete task %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("delete task %s: %w", id, err)
	}
	r.log.Info("task deleted", "container_id", id, "took", time.Since(began).Round(time.Millisecond).String())
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
	if err := readJSON(filepath.Join(dir, specFile), &spec); err != nil {
		return isolation.TaskInfo{}, fmt.Errorf("task %s: %w", id, err)
	}
	st, _, err := r.readState(id)
	if err != nil {
		return isolation.TaskInfo{}, err
	}
	var resp statusReply
	cctx, cancel := shortCtx(ctx)
	defer cancel()
	if err := r.control(cctx, id, "Status", &empty{}, &resp); err == nil {
		st = resp.State
	} else if st.Exit == nil {
		// The supervisor died and took the exit status with it.
		st.Status = isolation.StatusStopped
		st.Exit = &isolation.ExitStatus{Code: 255}
	} else {
		st.Status = isolation.StatusStopped
	}
	return isolation.TaskInfo{ID: id, Pid: st.Pid, Status: st.Status, Exit: st.Exit, Spec: &spec, CreatedAt: st.CreatedAt}, nil
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
			if !errdefs.IsUnavailable(err) {
				r.log.Warn("skipping unreadable task", "container_id", e.Name(), "error", err)
			}
			continue
		}
		out = append(out, info)
	}
	return out, nil
}

// Recover implements isolation.Runtime: the tasks are all on disk and in
// their supervisors (with their VMs); it lists them and watches the live
// ones for exits.
func (r *runtime) Recover(ctx context.Context) ([]isolation.TaskInfo, error) {
	tasks, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if t.Status != isolation.StatusStopped {
			r.watch(t.ID)
			if err := recoverNetwork(ctx, *t.Spec); err != nil { // network.go
				r.log.Warn("network of a recovered task", "container_id", t.ID, "error", err)
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

// watch publishes the exit of task id's init once, from a blocking wait on
// its supervisor (without an EventOOM: those come from the agent's events,
// which watchOOM follows until Delete).
func (r *runtime) watch(id string) {
	r.hub.WatchExitOnly(id, "", func() (isolation.ExitStatus, error) { return r.Wait(context.Background(), id, "") })
	r.watchOOM(id) // oomwatch.go: OOM events come from the agent only
}
