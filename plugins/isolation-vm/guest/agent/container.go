//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/tasklog"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

const (
	// keepOutput bounds the output a process writes while no attach is
	// active, kept for the next attach.
	keepOutput = 1 << 20
	// statusCreating marks a container whose Create is still running.
	statusCreating isolation.Status = "creating"
)

// container is one container of the guest. Its fields are guarded by the
// agent's mu, except the immutable ones set by Create.
type container struct {
	id      string
	dir     string
	spec    *specs.Spec
	cg      *sandbox.Cgroup
	group   bool // a cgroupctl group was created
	sc      *sandbox.Container
	init    *proc
	execs   map[string]*proc
	status  isolation.Status
	created time.Time
	// mounts are the agent's mounts for it, unmounted in reverse order.
	mounts []string
}

// proc is a process of a container: its init or an exec.
type proc struct {
	c      *container
	execID string
	pid    int
	// stdin is where attaches write: a pipe, or the terminal's master.
	stdin *os.File
	// console is the terminal's master (resize); closed once the process
	// exited and its output drained.
	console  *os.File
	terminal bool
	out      *tasklog.Broadcaster
	// outputDone closes when the output was read to its end.
	outputDone chan struct{}
	// exited closes when the reaper recorded exit.
	exited chan struct{}
	exit   isolation.ExitStatus
	// finished closes once the exit is final: output drained, attaches
	// ended, event sent.
	finished chan struct{}
}

func newProc(c *container, execID string, terminal bool) *proc {
	return &proc{c: c, execID: execID, terminal: terminal, out: tasklog.NewBroadcaster(keepOutput),
		outputDone: make(chan struct{}), exited: make(chan struct{}), finished: make(chan struct{})}
}

// stdio prepares p's pipes (a terminal comes from the sandbox, opened in
// the container) and returns the child's ends.
func (p *proc) stdio(openStdin bool) (sandbox.Stdio, error) {
	var s sandbox.Stdio
	if p.terminal {
		return s, nil
	}
	var files []*os.File
	fail := func(err error) (sandbox.Stdio, error) {
		for _, f := range files {
			f.Close()
		}
		return sandbox.Stdio{}, err
	}
	if openStdin {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		files = append(files, r, w)
		p.stdin, s.Stdin = w, r
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	files = append(files, outR, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	s.Stdout, s.Stderr = outW, errW
	done := make(chan struct{})
	go func() { p.pump(outR, tasklog.Stdout); done <- struct{}{} }()
	go func() { p.pump(errR, tasklog.Stderr); <-done; close(p.outputDone) }()
	return s, nil
}

// useConsole makes master the process's terminal.
func (p *proc) useConsole(master *os.File) error {
	if !p.terminal {
		if master != nil {
			master.Close()
		}
		return nil
	}
	if master == nil {
		return errors.New("the process has a terminal but the sandbox returned none")
	}
	p.stdin, p.console = master, master
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				p.out.Write(tasklog.Stdout, buf[:n])
			}
			if err != nil { // EIO once the replica's last holder closed it
				break
			}
		}
		close(p.outputDone)
	}()
	return nil
}

func (p *proc) pump(r *os.File, stream string) {
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p.out.Write(stream, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func closeChildEnds(s sandbox.Stdio) {
	for _, f := range []*os.File{s.Stdin, s.Stdout, s.Stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// watch finishes p once it exited: waits for its output (bounded), ends
// the attaches, closes its terminal, records the container stopped (init)
// and sends the exit event.
func (a *Agent) watch(p *proc) {
	<-p.exited
	select {
	case <-p.outputDone:
	case <-time.After(10 * time.Second):
		a.log.Warn("output still open 10s after the process exited", "container_id", p.c.id, "exec_id", p.execID)
	}
	p.out.Close()
	a.mu.Lock()
	if p.console != nil {
		p.console.Close()
	}
	if p.stdin != nil && p.stdin != p.console {
		p.stdin.Close()
	}
	if p == p.c.init {
		if p.exit.Signal == syscall.SIGKILL {
			p.exit.OOMKilled = oomKilled(p.c.cg)
		}
		p.c.status = isolation.StatusStopped
	}
	e := p.exit
	a.mu.Unlock()
	a.log.Info("process exited", "container_id", p.c.id, "exec_id", p.execID, "pid", p.pid, "code", e.Code, "signal", e.Signal, "oom_killed", e.OOMKilled)
	a.publish(&agentpb.Event{Kind: isolation.EventExit, Id: p.c.id, ExecId: p.execID, Exit: vmagent.ExitToPB(e), TimeUnixNanos: e.ExitedAt.UnixNano()})
	close(p.finished)
}

// oomKilled reports whether the container's memory cgroup saw an OOM kill.
func oomKilled(cg *sandbox.Cgroup) bool {
	if cg == nil {
		return false
	}
	file, key := "", "oom_kill "
	if cg.V2 != "" {
		file = filepath.Join(cg.V2, "memory.events")
	} else if d, ok := cg.V1["memory"]; ok {
		file = filepath.Join(d, "memory.oom_control")
	}
	if file == "" {
		return false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			return strings.TrimSpace(v) != "0"
		}
	}
	return false
}

// validID checks a container or exec id is a plain name.
func validID(kind, id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || len(id) > 128 {
		return errdefs.InvalidArgument("%s id %q is not a valid name", kind, id)
	}
	return nil
}

// create sets container id up; on error nothing of it is left.
func (a *Agent) create(ctx context.Context, req *agentpb.CreateContainerRequest, spec *specs.Spec) (_ int, err error) {
	id := req.Id
	began := time.Now()
	if err := validID("container", id); err != nil {
		return 0, err
	}
	if spec == nil || spec.Process == nil || len(spec.Process.Args) == 0 {
		return 0, errdefs.InvalidArgument("container %s: the spec has no process args", id)
	}
	if req.Rootfs == nil || req.Rootfs.Source == "" {
		return 0, errdefs.InvalidArgument("container %s: no rootfs source", id)
	}
	c := &container{id: id, dir: filepath.Join(a.cfg.RunDir, id), status: statusCreating, created: time.Now().UTC(), execs: map[string]*proc{}}
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return 0, errdefs.Unavailable("the guest is shutting down")
	}
	if _, ok := a.containers[id]; ok {
		a.mu.Unlock()
		return 0, errdefs.AlreadyExists("container %s already exists in the guest", id)
	}
	a.containers[id] = c
	a.mu.Unlock()
	defer func() {
		if err != nil {
			if c.init != nil && c.init.pid > 0 {
				_ = unix.Kill(c.init.pid, unix.SIGKILL)
			}
			if rerr := a.release(c); rerr != nil {
				a.log.Error("undo a failed create", "container_id", id, "error", rerr)
			}
			a.mu.Lock()
			delete(a.containers, id)
			a.mu.Unlock()
		}
	}()

	spec = cloneSpec(spec)
	rootDir := filepath.Join(c.dir, "rootfs")
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return 0, err
	}
	if err := mountRootfs(ctx, req.Rootfs, rootDir); err != nil {
		return 0, fmt.Errorf("container %s: rootfs %s (%s): %w", id, req.Rootfs.Source, req.Rootfs.Fstype, err)
	}
	c.mounts = append(c.mounts, rootDir)
	for i, s := range req.Shares {
		target := filepath.Join(c.dir, "shares", strconv.Itoa(i))
		if err := os.MkdirAll(target, 0o755); err != nil {
			return 0, err
		}
		if err := mountShare(s, target); err != nil {
			return 0, fmt.Errorf("container %s: share %s %q for %s: %w", id, s.Type, s.Source, s.Destination, err)
		}
		c.mounts = append(c.mounts, target)
		opts := []string{"rbind"}
		if s.ReadOnly {
			opts = append(opts, "ro")
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: s.Destination, Type: "bind", Source: target, Options: opts})
	}
	for i, f := range req.Files {
		if !filepath.IsAbs(f.Path) {
			return 0, errdefs.InvalidArgument("container %s: file path %q is not absolute", id, f.Path)
		}
		dir := filepath.Join(c.dir, "files")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
		mode := os.FileMode(f.Mode)
		if mode == 0 {
			mode = 0o644
		}
		src := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(src, f.Content, mode); err != nil {
			return 0, err
		}
		if err := os.Chmod(src, mode); err != nil {
			return 0, err
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: f.Path, Type: "bind", Source: src, Options: []string{"rbind"}})
	}

	if dest, ok := spec.Annotations[isolation.AnnotationInit]; ok {
		// --init: the guest's sandbox init, bound read-only at the
		// annotated path; it runs as the reaping init by that base name.
		if err := isolation.CheckInitPath(dest); err != nil {
			return 0, fmt.Errorf("container %s: %w", id, err)
		}
		if a.cfg.InitPath == "" {
			return 0, errdefs.Unavailable("container %s: --init: the agent has no init binary configured", id)
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: dest, Type: "bind", Source: a.cfg.InitPath,
			Options: []string{"bind", "ro", "nosuid", "nodev"}})
	}

	mounted := time.Now()
	limits, err := limitsFromSpec(spec)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", id, err)
	}
	pl, err := a.cgroups.CreateGroup(ctx, id, limits)
	if err != nil {
		return 0, fmt.Errorf("container %s: guest cgroup: %w", id, err)
	}
	c.group = true
	groupMade := time.Now()
	if c.cg, err = sandbox.OpenCgroup(pl.CgroupPath, false); err != nil {
		return 0, fmt.Errorf("container %s: guest cgroup %s: %w", id, pl.CgroupPath, err)
	}

	grouped := time.Now()
	p := newProc(c, "", spec.Process.Terminal)
	var stdio sandbox.Stdio
	var prestarted *sandbox.Prestarted
	if w := a.takePrestarted(spec, rootDir, req.OpenStdin); w != nil {
		prestarted = w.p
		p.pumpFrom(w.stdout, w.stderr)
	} else if stdio, err = p.stdio(req.OpenStdin); err != nil {
		return 0, err
	}
	sc, err := a.launcher.Create(sandbox.CreateOptions{Spec: spec, RootDir: rootDir, Cgroup: c.cg, Stdio: stdio, Prestarted: prestarted})
	closeChildEnds(stdio)
	if prestarted == nil {
		a.refillPrestart() // for the next Create
	}
	if err == nil {
		if err = p.useConsole(sc.Console); err != nil {
			_ = sc.Process.Kill()
		}
	}
	if err != nil {
		if p.stdin != nil {
			p.stdin.Close()
		}
		return 0, fmt.Errorf("container %s: %w", id, err)
	}
	pid := sc.Process.Pid
	_ = sc.Process.Release() // reaped by the agent's reaper
	a.mu.Lock()
	c.spec, c.sc, c.init, c.status = spec, sc, p, isolation.StatusCreated
	a.mu.Unlock()
	a.register(p, pid)
	go a.watch(p)
	a.log.Info("container created", "container_id", id, "pid", pid, "rootfs", req.Rootfs.Source,
		"took", time.Since(began).Round(time.Millisecond), "mounts", mounted.Sub(began).Round(time.Millisecond),
		"cgroup", grouped.Sub(mounted).Round(time.Millisecond), "cgroup_open", grouped.Sub(groupMade).Round(time.Millisecond),
		"init", time.Since(grouped).Round(time.Millisecond), "prestarted", prestarted != nil, "seccomp_compiled", sc.SeccompCompiled)
	a.log.Info("container init phases", append([]any{"container_id", id}, sandbox.PhaseDurations(sc.Phases)...)...)
	return pid, nil
}

// start runs a created container's init.
func (a *Agent) start(id string) (int, error) {
	a.mu.Lock()
	c, err := a.lookupLocked(id)
	if err != nil {
		a.mu.Unlock()
		return 0, err
	}
	if c.status != isolation.StatusCreated {
		st := c.status
		a.mu.Unlock()
		return 0, errdefs.InvalidState("container %s is %s; only a created container can start", id, st)
	}
	c.status = isolation.StatusRunning
	sc := c.sc
	a.mu.Unlock()
	if err := sc.Start(); err != nil {
		a.mu.Lock()
		if c.status == isolation.StatusRunning {
			c.status = isolation.StatusStopped
		}
		a.mu.Unlock()
		_ = unix.Kill(c.init.pid, unix.SIGKILL)
		return 0, fmt.Errorf("start container %s: %w", id, err)
	}
	a.log.Info("container started", "container_id", id, "pid", c.init.pid)
	return c.init.pid, nil
}

// exec starts process execID in running container id.
func (a *Agent) exec(id, execID string, process *specs.Process) (int, error) {
	if err := validID("exec", execID); err != nil {
		return 0, err
	}
	if process == nil || len(process.Args) == 0 {
		return 0, errdefs.InvalidArgument("exec %s in %s: no process args", execID, id)
	}
	a.mu.Lock()
	c, err := a.lookupLocked(id)
	if err == nil && c.status != isolation.StatusRunning {
		err = errdefs.InvalidState("container %s is %s; exec needs a running container", id, c.status)
	}
	if err == nil {
		if _, ok := c.execs[execID]; ok {
			err = errdefs.AlreadyExists("container %s already has a process %s", id, execID)
		}
	}
	if err != nil {
		a.mu.Unlock()
		return 0, err
	}
	p := newProc(c, execID, process.Terminal)
	c.execs[execID] = p // reserved; removed again on failure
	initPid := c.init.pid
	a.mu.Unlock()
	fail := func(err error) (int, error) {
		a.mu.Lock()
		delete(c.execs, execID)
		a.mu.Unlock()
		if p.stdin != nil {
			p.stdin.Close()
		}
		return 0, fmt.Errorf("exec %s in container %s: %w", execID, id, err)
	}
	process = sandbox.ExecDefaults(process, c.spec)
	stdio, err := p.stdio(true)
	if err != nil {
		return fail(err)
	}
	sp, err := a.launcher.Exec(sandbox.ExecOptions{Pid: initPid, Spec: c.spec, Process: process, Cgroup: c.cg, Stdio: stdio})
	closeChildEnds(stdio)
	if err != nil {
		return fail(err)
	}
	if err := p.useConsole(sp.Console); err != nil {
		_ = sp.Kill()
		return fail(err)
	}
	pid := sp.Pid
	_ = sp.Release()
	a.register(p, pid)
	go a.watch(p)
	return pid, nil
}

func (a *Agent) lookupLocked(id string) (*container, error) {
	c, ok := a.containers[id]
	if !ok || c.status == statusCreating {
		return nil, errdefs.NotFound("container %s does not exist in the guest", id)
	}
	return c, nil
}

// lookupProc finds process execID ("" = init) of container id.
func (a *Agent) lookupProc(id, execID string) (*proc, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.lookupLocked(id)
	if err != nil {
		return nil, err
	}
	if execID == "" {
		return c.init, nil
	}
	p, ok := c.execs[execID]
	if !ok || p.pid == 0 {
		return nil, errdefs.NotFound("container %s has no process %s", id, execID)
	}
	return p, nil
}

// signal sends sig to one process or, with all, to every process of the
// container.
func (a *Agent) signal(id, execID string, sig syscall.Signal, all bool) error {
	if all {
		a.mu.Lock()
		c, err := a.lookupLocked(id)
		a.mu.Unlock()
		if err != nil {
			return err
		}
		for _, pid := range c.cg.Pids() {
			_ = unix.Kill(pid, sig)
		}
		return nil
	}
	p, err := a.lookupProc(id, execID)
	if err != nil {
		return err
	}
	select {
	case <-p.exited:
		return errdefs.NotFound("process %q of container %s has exited", execID, id)
	default:
	}
	if err := unix.Kill(p.pid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errdefs.NotFound("process %q of container %s has exited", execID, id)
		}
		return fmt.Errorf("signal %d to pid %d: %w", sig, p.pid, err)
	}
	return nil
}

// update replaces the container's limits; device rules stay those of
// Create (cgroup v2 attaches them as a program once).
func (a *Agent) update(ctx context.Context, id string, r *specs.LinuxResources) error {
	a.mu.Lock()
	c, err := a.lookupLocked(id)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	r.Devices = nil
	l, err := limitsFromSpec(&specs.Spec{Linux: &specs.Linux{Resources: r}})
	if err != nil {
		return err
	}
	if c.spec.Linux != nil && c.spec.Linux.Resources != nil {
		old, _ := limitsFromSpec(c.spec)
		l.Devices = old.Devices
	}
	if err := a.cgroups.Update(ctx, id, l); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	return nil
}

// setPaused freezes or thaws the container's cgroup.
func (a *Agent) setPaused(ctx context.Context, id string, paused bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.lookupLocked(id)
	if err != nil {
		return err
	}
	switch c.status {
	case isolation.StatusRunning, isolation.StatusPaused:
	default:
		return errdefs.InvalidState("container %s is %s; only a running container can be paused or resumed", id, c.status)
	}
	if paused {
		err = c.cg.Freeze()
	} else {
		err = c.cg.Thaw()
	}
	if err != nil {
		return fmt.Errorf("freeze=%v container %s: %w", paused, id, err)
	}
	if err := a.cgroups.SetPaused(ctx, id, paused); err != nil {
		a.log.Warn("mark the group paused", "container_id", id, "error", err)
	}
	if c.status != isolation.StatusStopped {
		c.status = isolation.StatusRunning
		if paused {
			c.status = isolation.StatusPaused
		}
	}
	return nil
}

// killAll SIGKILLs every process of c, thawing it so the kill lands.
func (c *container) killAll() {
	if c.cg != nil {
		c.cg.Kill()
	}
}

// delete removes container id and returns its init's exit status.
func (a *Agent) delete(id string) (isolation.ExitStatus, error) {
	a.mu.Lock()
	c, ok := a.containers[id]
	if !ok {
		a.mu.Unlock()
		return isolation.ExitStatus{}, nil
	}
	if c.status == statusCreating {
		a.mu.Unlock()
		return isolation.ExitStatus{}, errdefs.InvalidState("container %s is being created", id)
	}
	if c.status == isolation.StatusRunning || c.status == isolation.StatusPaused {
		if !a.stopping {
			st := c.status
			a.mu.Unlock()
			return isolation.ExitStatus{}, errdefs.InvalidState("container %s is %s; stop it before deleting it", id, st)
		}
	}
	neverStarted := c.status == isolation.StatusCreated
	a.mu.Unlock()
	c.killAll()
	if neverStarted && c.sc != nil {
		_ = c.sc.Close()
	}
	procs := []*proc{c.init}
	a.mu.Lock()
	for _, p := range c.execs {
		procs = append(procs, p)
	}
	a.mu.Unlock()
	for _, p := range procs {
		if p == nil || p.pid == 0 {
			continue
		}
		select {
		case <-p.finished:
		case <-time.After(30 * time.Second):
			return isolation.ExitStatus{}, fmt.Errorf("container %s: process %q (pid %d) did not end 30s after SIGKILL", id, p.execID, p.pid)
		}
	}
	if err := a.release(c); err != nil {
		return isolation.ExitStatus{}, fmt.Errorf("delete container %s: %w", id, err)
	}
	a.mu.Lock()
	delete(a.containers, id)
	e := c.init.exit
	a.mu.Unlock()
	if neverStarted {
		e = isolation.ExitStatus{}
	}
	a.log.Info("container deleted", "container_id", id)
	return e, nil
}

// release removes what Create made for c: its cgroup, mounts and
// directory. Safe to call twice.
func (a *Agent) release(c *container) error {
	var errs []error
	if c.group {
		if err := a.cgroups.Delete(context.Background(), c.id); err != nil {
			errs = append(errs, err)
		} else {
			c.group = false
		}
	}
	for i := len(c.mounts) - 1; i >= 0; i-- {
		if err := unmount(c.mounts[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		_ = os.Remove(c.mounts[i])
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	c.mounts = nil
	_ = os.RemoveAll(filepath.Join(c.dir, "files"))
	_ = os.Remove(filepath.Join(c.dir, "shares"))
	_ = os.Remove(filepath.Join(c.dir, "rootfs"))
	if err := os.Remove(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
