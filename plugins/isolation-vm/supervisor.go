//go:build linux || darwin

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/tasklog"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The per-container supervisor: `isolation-vm supervise -dir TASKDIR
// -socket PATH -rundir DIR`, started by the plugin in its own session with
// no pipe to it but the report pipe (fd 3), closed once it has said "ok
// <pid>" or "error <message>". It owns the VM (the hypervisor process is
// its child and dies with it), holds the one agent connection, writes the
// init's output to the container log, and serves the plugin on its socket
// until Delete (Shutdown) or until the VM is gone and Delete came.

// logDrain bounds how long the supervisor waits, after the init exited,
// for the last of its output to reach the log.
const logDrain = 10 * time.Second

type supervisor struct {
	log     hclog.Logger
	dir     string
	started time.Time
	spec    isolation.Spec
	boot    bootConfig
	vmCfg   hypervisor.Config
	m       hypervisor.Machine
	// fromTemplate: the VM was restored from a template (template.go).
	fromTemplate bool
	// connMu guards the agent connection, which a checkpoint replaces.
	connMu sync.Mutex
	cc     *grpc.ClientConn
	agent  *vmagent.Client
	logw   *tasklog.Log
	srv    *grpc.Server

	mu    sync.Mutex
	state State
	// exited closes once the init's exit is recorded (or the VM is gone).
	exited chan struct{}
	// logDone closes when the current log attach ended.
	logDone chan struct{}
	// reattach is set while a checkpoint left the VM paused and detached
	// from its agent: Resume connects again.
	reattach bool
	// stopping is set while a checkpoint or shutdown ends the VM on
	// purpose, so its end is not reported as a crash.
	stopping bool
	vmDone   chan struct{}
	quit     chan struct{}
	quitOnce sync.Once
}

// superviseMain runs the supervisor and exits the process.
func superviseMain(args []string) {
	fs := flag.NewFlagSet("supervise", flag.ExitOnError)
	dir := fs.String("dir", "", "task directory")
	socket := fs.String("socket", "", "control socket")
	runDir := fs.String("rundir", "", "VM run dir (short)")
	_ = fs.Parse(args)
	log := hclog.New(&hclog.LoggerOptions{Name: "isolation-vm-supervisor", Level: hclog.Info, Output: os.Stderr})
	report := os.NewFile(3, "report")
	say := func(line string) {
		if report != nil {
			_, _ = report.WriteString(line + "\n")
			_ = report.Close()
			report = nil
		}
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	s, err := startSupervisor(log, *dir, *socket, *runDir)
	if err != nil {
		log.Error("task not created", "error", err)
		say("error " + strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	say(fmt.Sprintf("ok %d", s.state.Pid))
	s.run()
	os.Exit(0)
}

// startSupervisor boots the VM (or restores it), creates the container
// (or re-attaches to it) and listens on socket. On error nothing is left:
// no VM, socket or run dir.
func startSupervisor(log hclog.Logger, dir, socket, runDir string) (_ *supervisor, err error) {
	s := &supervisor{log: log, dir: dir, started: time.Now(), exited: make(chan struct{}), logDone: make(chan struct{}),
		vmDone: make(chan struct{}), quit: make(chan struct{})}
	if err := readJSON(filepath.Join(dir, specFile), &s.spec); err != nil {
		return nil, err
	}
	if err := readJSON(filepath.Join(dir, bootFile), &s.boot); err != nil {
		return nil, err
	}
	s.log = log.With("container_id", s.spec.ID)
	s.state = State{ID: s.spec.ID, SupervisorPid: os.Getpid(), Socket: socket, RunDir: runDir,
		Status: isolation.StatusCreated, CreatedAt: time.Now().UTC()}
	// Into the host resource group before the hypervisor starts, so it
	// is charged there from its first page (hostgroup.go).
	if err := joinPlacement(s.log, s.spec.Placement); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.teardownVM(5 * time.Second)
			_ = os.RemoveAll(runDir)
			_ = os.Remove(socket)
		}
	}()
	if err := s.bootVM(); err != nil {
		return nil, err
	}
	logPath := s.spec.LogPath
	if logPath == "" {
		logPath = filepath.Join(dir, containerLog)
	}
	maxSize, maxFiles := tasklog.Limits(s.spec.Annotations)
	if s.logw, err = tasklog.OpenLog(logPath, maxSize, maxFiles); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.boot.BootTimeout)
	defer cancel()
	if s.boot.Restore != "" {
		err = s.readopt(ctx)
	} else {
		err = s.createContainer(ctx)
	}
	if err != nil {
		return nil, err
	}
	go s.followInit()
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", socket, err)
	}
	s.srv = newControlServer(s, func() *grpc.ClientConn { cc, _ := s.conn(); return cc })
	go func() { _ = s.srv.Serve(l) }()
	s.mu.Lock()
	err = s.saveLocked()
	s.mu.Unlock()
	if err != nil {
		s.srv.Stop()
		return nil, err
	}
	s.log.Info("task ready", "vm_pid", s.state.VMPid, "pid", s.state.Pid, "restored", s.boot.Restore != "",
		"since_start", time.Since(s.started).Round(time.Millisecond))
	return s, nil
}

// bootVM starts (or restores) the VM and connects to its agent; the
// whole is bounded by the boot timeout, and a failure says what the
// console showed last.
func (s *supervisor) bootVM() error {
	drv, err := newDriver(s.boot, s.log)
	if err != nil {
		return err
	}
	cfg := hypervisor.Config{
		Kernel: s.boot.Kernel, Initrd: s.boot.Initrd, Cmdline: s.boot.Cmdline,
		CPUs: s.boot.CPUs, MemoryBytes: s.boot.MemoryBytes,
		ConsoleLog: s.consolePath(), RunDir: s.state.RunDir, Balloon: true,
	}
	for _, m := range s.spec.Rootfs {
		d := hypervisor.Disk{Path: m.Source, Format: "raw"}
		for _, o := range m.Options {
			switch {
			case o == "ro":
				d.ReadOnly = true
			case strings.HasPrefix(o, "format="):
				d.Format = strings.TrimPrefix(o, "format=")
			}
		}
		cfg.Disks = append(cfg.Disks, d)
	}
	for i, b := range bindMounts(s.spec) {
		cfg.Shares = append(cfg.Shares, hypervisor.Share{Tag: shareTag(i), Path: b.Source, ReadOnly: isReadOnly(b.Options)})
	}
	cfg.NICs = nicsFor(s.spec) // network.go
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.vmCfg = cfg
	ctx, cancel := context.WithTimeout(context.Background(), s.boot.BootTimeout)
	defer cancel()
	if s.boot.Restore != "" {
		s.m, err = s.restoreVM(ctx, drv, cfg, filepath.Join(s.boot.Restore, checkpointVM))
	} else {
		s.m, err = s.startVM(ctx, drv, cfg)
	}
	if err != nil {
		return fmt.Errorf("start the VM: %w%s", err, s.consoleTail())
	}
	s.state.VMPid = s.m.Pid()
	go func() {
		werr := s.m.Wait()
		s.vmEnded(werr)
	}()
	return s.connectAgent(ctx)
}

// connectAgent dials the agent, checks it answers, and gives the guest
// the host's clock and fresh entropy (a restored guest has the saved
// ones).
func (s *supervisor) connectAgent(ctx context.Context) error {
	conn, err := s.dialAgent(ctx)
	if err != nil {
		return err
	}
	// The first connection is the one dialled above; should gRPC drop it
	// (a guest slow to answer the handshake), it dials the channel again:
	// the agent serves whoever connects next. The handshake may take as
	// long as the boot.
	first := oneConn(conn)
	redial := func(ctx context.Context, addr string) (net.Conn, error) {
		if c, err := first(ctx, addr); err == nil {
			return c, nil
		}
		return s.m.DialAgent(ctx)
	}
	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(redial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond,
			Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}, MinConnectTimeout: s.boot.BootTimeout}),
	}, errdefs.DialOptions()...)
	cc, err := grpc.NewClient("passthrough:///berth-vm-agent", opts...)
	if err != nil {
		conn.Close()
		return err
	}
	agent := vmagent.NewClientConn(cc)
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	go func() {
		select {
		case <-s.vmDone:
			icancel()
		case <-ictx.Done():
		}
	}()
	// gRPC fails calls fast while its connection is down; the first
	// handshake with a booting guest may need a few tries.
	var info vmagent.Info
	for {
		info, err = agent.Info(ictx)
		if err == nil || !errdefs.IsUnavailable(err) || ictx.Err() != nil {
			break
		}
		select {
		case <-ictx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		cc.Close()
		select {
		case <-s.vmDone:
			return fmt.Errorf("the VM ended before its agent answered%s", s.consoleTail())
		default:
		}
		return fmt.Errorf("the guest agent did not answer within %s: %w%s", s.boot.BootTimeout, err, s.consoleTail())
	}
	s.log.Info("agent up", "kernel", info.KernelRelease, "guest_uptime", info.Uptime, "agent_version", info.Version,
		"since_start", time.Since(s.started).Round(time.Millisecond))
	if err := agent.SyncClock(ctx, time.Now()); err != nil {
		cc.Close()
		return fmt.Errorf("sync the guest clock: %w", err)
	}
	seed := make([]byte, 64)
	_, _ = rand.Read(seed)
	if err := agent.AddEntropy(ctx, seed); err != nil {
		cc.Close()
		return fmt.Errorf("seed the guest's entropy: %w", err)
	}
	s.connMu.Lock()
	s.cc, s.agent = cc, agent
	s.connMu.Unlock()
	return nil
}

// conn returns the current agent connection (it changes when a checkpoint
// detaches and re-attaches).
func (s *supervisor) conn() (*grpc.ClientConn, *vmagent.Client) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return s.cc, s.agent
}

// detachAgent closes the agent connection and waits (boundedly) until the
// guest has seen the host go: saved that way, a VM restores with its agent
// waiting for a new host, not in the middle of the old session.
func (s *supervisor) detachAgent() {
	s.connMu.Lock()
	cc := s.cc
	s.cc, s.agent = nil, nil
	s.connMu.Unlock()
	if cc == nil {
		return
	}
	console := s.consolePath()
	before := fileSize(console)
	_ = cc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if consoleSince(console, before, "host session ended") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.log.Warn("the guest did not report the end of the agent session within 5s")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// consoleSince reports whether the console log holds text after offset.
func consoleSince(path string, offset int64, text string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 1<<20))
	return strings.Contains(string(b), text)
}

// dialAgent connects to the agent's channel, racing the VM's end so a
// guest that died during boot fails at once rather than at the timeout.
func (s *supervisor) dialAgent(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.vmDone:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := s.m.DialAgent(ctx)
	if err != nil {
		select {
		case <-s.vmDone:
			return nil, fmt.Errorf("the VM ended while booting%s", s.consoleTail())
		default:
		}
		return nil, fmt.Errorf("the guest agent did not answer within %s: %w%s", s.boot.BootTimeout, err, s.consoleTail())
	}
	return conn, nil
}

// consoleTail is the end of the boot log, for error messages.
func (s *supervisor) consoleTail() string {
	b, err := os.ReadFile(s.consolePath())
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	return " (console: " + lastLines(string(b), 4) + ")"
}

func oneConn(conn net.Conn) func(context.Context, string) (net.Conn, error) {
	var once sync.Once
	return func(context.Context, string) (net.Conn, error) {
		var c net.Conn
		once.Do(func() { c = conn })
		if c == nil {
			return nil, errors.New("the agent connection is closed")
		}
		return c, nil
	}
}

// createContainer creates the container in the guest and attaches to its
// init for the log.
func (s *supervisor) createContainer(ctx context.Context) error {
	req := vmagent.CreateRequest{ID: s.spec.ID, Spec: s.spec.OCI,
		Rootfs:    vmagent.Rootfs{Source: "/dev/vda", Type: "ext4"},
		OpenStdin: s.spec.Annotations[isolation.AnnotationOpenStdin] == "open"}
	if len(s.spec.Rootfs) > 0 {
		r := s.spec.Rootfs[0]
		if r.Type != "" && r.Type != "block" {
			req.Rootfs.Type = r.Type
		}
		for _, o := range r.Options {
			if !strings.HasPrefix(o, "format=") {
				req.Rootfs.Options = append(req.Rootfs.Options, o)
			}
		}
	}
	for i, b := range bindMounts(s.spec) {
		req.Shares = append(req.Shares, vmagent.Share{Type: vmagent.Share9P, Source: shareTag(i),
			Destination: b.Destination, ReadOnly: isReadOnly(b.Options)})
	}
	req.Spec = guestSpec(s.spec.OCI)
	if n := s.spec.Network; n != nil {
		if n.Hostname != "" {
			req.Spec.Hostname = n.Hostname
		}
		if n.Mode == "host" && req.Spec.Linux != nil {
			// The VM's own network stack (loopback only until networking
			// reaches VMs): no namespace of the container's own.
			req.Spec.Linux.Namespaces = slices.DeleteFunc(slices.Clone(req.Spec.Linux.Namespaces),
				func(ns specs.LinuxNamespace) bool { return ns.Type == specs.NetworkNamespace })
		}
	}
	_, agent := s.conn()
	if err := s.personalize(ctx, agent); err != nil {
		return err
	}
	if err := configureGuestNetwork(ctx, agent, s.spec, &req); err != nil { // network.go
		return err
	}
	pid, err := agent.CreateContainer(ctx, req)
	if err != nil {
		return err
	}
	s.state.Pid = pid
	s.attachLog()
	return nil
}

// readopt picks a restored guest's container up again: its state from
// the agent, then the log attach.
func (s *supervisor) readopt(ctx context.Context) error {
	var ck checkpointInfo
	if err := readJSON(filepath.Join(s.boot.Restore, checkpointTask), &ck); err != nil {
		return errdefs.InvalidArgument("restore %s: %v", s.spec.ID, err)
	}
	if ck.ID != s.spec.ID {
		return errdefs.InvalidArgument("restore %s: the checkpoint in %s is of task %s", s.spec.ID, s.boot.Restore, ck.ID)
	}
	_, agent := s.conn()
	cs, err := agent.State(ctx, s.spec.ID)
	if err != nil {
		return fmt.Errorf("restore %s: the restored guest: %w", s.spec.ID, err)
	}
	s.state.Pid, s.state.CreatedAt = cs.Pid, ck.CreatedAt
	switch cs.Status {
	case isolation.StatusStopped:
		s.state.Status = isolation.StatusStopped
		s.state.Exit = cs.Exit
	default:
		s.state.Status = isolation.StatusRunning
	}
	s.attachLog()
	return nil
}

// attachLog attaches to the init and appends its output to the log until
// it ends (or the connection is detached for a checkpoint).
func (s *supervisor) attachLog() {
	streams := isolation.Streams{Stdout: logStream{s.logw, "stdout"}, Stderr: logStream{s.logw, "stderr"}}
	_, agent := s.conn()
	done := make(chan struct{})
	s.mu.Lock()
	s.logDone = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		err := agent.Attach(context.Background(), s.spec.ID, "", streams)
		if err != nil {
			s.log.Debug("log attach ended", "error", err)
		}
		_ = s.logw.Flush()
	}()
}

// logStream is one stream of the container log as an io.Writer.
type logStream struct {
	l      *tasklog.Log
	stream string
}

func (w logStream) Write(p []byte) (int, error) {
	if err := w.l.Write(w.stream, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// followInit waits for the init's exit and records it once its output is
// in the log.
func (s *supervisor) followInit() {
	_, agent := s.conn()
	e, err := agent.Wait(context.Background(), s.spec.ID, "")
	if err != nil {
		s.log.Debug("wait for the init ended", "error", err)
		return // a detach (checkpoint) or the VM's end (vmEnded records it)
	}
	s.mu.Lock()
	logDone := s.logDone
	s.mu.Unlock()
	select {
	case <-logDone:
	case <-time.After(logDrain):
		s.log.Warn("the log attach did not end after the init exited")
	}
	s.recordExit(e)
}

// recordExit marks the init stopped with e (the first report wins).
func (s *supervisor) recordExit(e isolation.ExitStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Exit != nil {
		return
	}
	if e.ExitedAt.IsZero() {
		e.ExitedAt = time.Now().UTC()
	}
	s.state.Exit = &e
	s.state.Status = isolation.StatusStopped
	if err := s.saveLocked(); err != nil {
		s.log.Error("record the exit", "error", err)
	}
	close(s.exited)
	s.log.Info("init exited", "code", e.Code, "signal", int(e.Signal))
}

// vmEnded runs when the hypervisor process is gone: unless a checkpoint
// or shutdown ended it on purpose, the task died with it (exit 255 when no
// exit was recorded).
func (s *supervisor) vmEnded(err error) {
	s.mu.Lock()
	s.state.VMPid = 0
	stopping := s.stopping
	s.mu.Unlock()
	close(s.vmDone)
	if !stopping {
		s.log.Warn("the VM ended", "error", err)
	}
	s.recordExit(isolation.ExitStatus{Code: 255})
}

func (s *supervisor) saveLocked() error {
	return writeJSON(filepath.Join(s.dir, stateFile), s.state)
}

// run serves until shutdown.
func (s *supervisor) run() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-s.quit:
	case sig := <-sigs:
		s.log.Info("signalled; shutting the VM down", "signal", sig.String())
		_, _ = s.shutdown(context.Background())
	}
	// Let the shutdown's reply go out, then stop.
	stopped := make(chan struct{})
	go func() { s.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		s.srv.Stop()
	}
}

// teardownVM ends the VM: a clean power-off through the agent when it
// answers, the hypervisor's power-off, then a kill at the deadline.
func (s *supervisor) teardownVM(d time.Duration) {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	if s.m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cc, agent := s.conn()
	if agent != nil {
		actx, acancel := context.WithTimeout(ctx, d/3)
		_ = agent.Shutdown(actx)
		acancel()
		select {
		case <-s.vmDone:
		case <-actx.Done():
		}
	}
	select {
	case <-s.vmDone:
	default:
		if err := s.m.Shutdown(ctx); err != nil {
			_ = s.m.Kill()
		}
		<-s.vmDone
	}
	if cc != nil {
		_ = cc.Close()
	}
}

// killVM ends the VM at once and closes the agent connection.
func (s *supervisor) killVM() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	_ = s.m.Kill()
	<-s.vmDone
	if cc, _ := s.conn(); cc != nil {
		_ = cc.Close()
	}
}

// controller methods (the control service).

func (s *supervisor) status(context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, nil
}

func (s *supervisor) start(ctx context.Context) (int, error) {
	s.mu.Lock()
	st := s.state.Status
	s.mu.Unlock()
	if st != isolation.StatusCreated {
		return 0, errdefs.InvalidState("task %s is %s, not created", s.spec.ID, st)
	}
	_, agent := s.conn()
	if agent == nil {
		return 0, errdefs.Unavailable("task %s: the agent is not connected", s.spec.ID)
	}
	pid, err := agent.Start(ctx, s.spec.ID)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Status == isolation.StatusCreated {
		s.state.Status = isolation.StatusRunning
	}
	s.state.Pid = pid
	return pid, s.saveLocked()
}

func (s *supervisor) wait(ctx context.Context) (isolation.ExitStatus, error) {
	select {
	case <-s.exited:
	case <-ctx.Done():
		return isolation.ExitStatus{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.state.Exit, nil
}

func (s *supervisor) pause(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state.Status {
	case isolation.StatusPaused:
		return nil
	case isolation.StatusRunning:
	default:
		return errdefs.InvalidState("task %s is %s: only a running task can be paused", s.spec.ID, s.state.Status)
	}
	if err := s.m.Pause(ctx); err != nil {
		return fmt.Errorf("pause the VM: %w", err)
	}
	s.state.Status = isolation.StatusPaused
	return s.saveLocked()
}

func (s *supervisor) resume(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state.Status {
	case isolation.StatusRunning:
		return nil
	case isolation.StatusPaused:
	default:
		return errdefs.InvalidState("task %s is %s: only a paused task can be resumed", s.spec.ID, s.state.Status)
	}
	if err := s.m.Resume(ctx); err != nil {
		return fmt.Errorf("resume the VM: %w", err)
	}
	if s.reattach {
		if err := s.reconnect(ctx); err != nil {
			return err
		}
	}
	s.state.Status = isolation.StatusRunning
	return s.saveLocked()
}

// reconnect connects to the agent again after a checkpoint detached it,
// and picks the log and the init's exit up again.
func (s *supervisor) reconnect(ctx context.Context) error {
	if err := s.connectAgent(ctx); err != nil {
		return fmt.Errorf("reconnect to the agent after the checkpoint: %w", err)
	}
	s.reattach = false
	s.mu.Unlock()
	s.attachLog()
	s.mu.Lock()
	go s.followInit()
	return nil
}

// checkpoint saves the VM into req.Dir (the VM state under vm/, the task
// in task.json). The container's disk is not copied: it belongs to the
// snapshot layer and must stay unchanged until the restore.
func (s *supervisor) checkpoint(ctx context.Context, req checkpointRequest) error {
	if n := len(bindMounts(s.spec)); n > 0 {
		return errdefs.InvalidState("task %s has %d bind mount(s), shared with the VM over 9p, which qemu cannot migrate: a container with bind mounts cannot be checkpointed", s.spec.ID, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.state.Status
	if was != isolation.StatusRunning && was != isolation.StatusPaused {
		return errdefs.InvalidState("task %s is %s: only a running or paused task can be checkpointed", s.spec.ID, was)
	}
	// The guest must not be saved in the middle of an agent session: a
	// restored VM would go on with it against a new host. A paused VM is
	// run briefly so its agent sees the host go.
	if was == isolation.StatusPaused {
		if err := s.m.Resume(ctx); err != nil {
			return fmt.Errorf("checkpoint %s: %w", s.spec.ID, err)
		}
	}
	s.mu.Unlock()
	s.detachAgent()
	s.mu.Lock()
	// Unless the VM is then ended, it runs on with a new agent session.
	undo := func() {
		if was == isolation.StatusPaused {
			_ = s.m.Pause(context.Background())
			s.reattach = true
			return
		}
		_ = s.m.Resume(context.Background())
		if err := s.reconnect(context.Background()); err != nil {
			s.log.Error("after the checkpoint", "error", err)
		}
	}
	if err := s.m.Save(ctx, filepath.Join(req.Dir, checkpointVM)); err != nil {
		undo()
		return fmt.Errorf("checkpoint %s: %w", s.spec.ID, err)
	}
	if err := s.saveRAM(filepath.Join(req.Dir, checkpointVM), req.LeaveRunning); err != nil {
		undo()
		return fmt.Errorf("checkpoint %s: %w", s.spec.ID, err)
	}
	ck := checkpointInfo{ID: s.spec.ID, Pid: s.state.Pid, CreatedAt: s.state.CreatedAt, Saved: time.Now().UTC()}
	if err := writeJSON(filepath.Join(req.Dir, checkpointTask), ck); err != nil {
		undo()
		return fmt.Errorf("checkpoint %s: %w", s.spec.ID, err)
	}
	if req.LeaveRunning {
		undo()
		return nil
	}
	// The VM's processes now live in the checkpoint: end the VM, and the
	// task reads as stopped (killed) until it is deleted and restored.
	s.stopping = true
	s.state.Checkpoint = req.Dir
	s.mu.Unlock()
	_ = s.m.Kill()
	<-s.vmDone
	s.mu.Lock()
	s.state.Exit = nil // vmEnded's 255 is replaced by the checkpoint's kill
	s.state.Status = isolation.StatusStopped
	e := isolation.ExitStatus{Code: 128 + int(syscall.SIGKILL), Signal: syscall.SIGKILL, ExitedAt: time.Now().UTC()}
	s.state.Exit = &e
	return s.saveLocked()
}

// shutdown is Delete: refused while the init runs; otherwise the
// container is deleted in the guest, the VM powered off, and the
// supervisor's socket and run dir removed. The supervisor then exits.
func (s *supervisor) shutdown(ctx context.Context) (isolation.ExitStatus, error) {
	s.mu.Lock()
	st := s.state.Status
	s.mu.Unlock()
	if st == isolation.StatusRunning || st == isolation.StatusPaused {
		return isolation.ExitStatus{}, errdefs.InvalidState("task %s is %s: stop it before deleting it", s.spec.ID, st)
	}
	deleted := false
	select {
	case <-s.vmDone:
	default:
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, agent := s.conn(); agent == nil {
			s.log.Warn("delete: the agent is not connected")
		} else if _, err := agent.Delete(dctx, s.spec.ID); err != nil {
			s.log.Warn("delete the container in the guest", "error", err)
		} else {
			deleted = true
		}
		cancel()
	}
	if deleted {
		// The agent unmounted the container's disk (its writes are on it):
		// nothing in the guest is left to save, so the VM is simply ended.
		s.killVM()
	} else {
		s.teardownVM(15 * time.Second)
	}
	_ = s.logw.Close()
	s.mu.Lock()
	if s.state.Exit == nil {
		// Deleted before it ran: it never exited, it was never started.
		s.state.Status = isolation.StatusStopped
		s.state.Exit = &isolation.ExitStatus{Code: 128 + int(syscall.SIGKILL), Signal: syscall.SIGKILL, ExitedAt: time.Now().UTC()}
	}
	e := *s.state.Exit
	_ = s.saveLocked()
	runDir, socket := s.state.RunDir, s.state.Socket
	s.mu.Unlock()
	_ = os.RemoveAll(runDir)
	_ = os.Remove(socket)
	s.quitOnce.Do(func() { close(s.quit) })
	return e, nil
}
