package supervisor

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Annotations the supervisor reads from the task spec.
const (
	// AnnotationOpenStdin is sdk/isolation.AnnotationOpenStdin: "open"
	// gives the init a stdin that attaches feed.
	AnnotationOpenStdin = "org.berth.stdin"
	// AnnotationLogMaxSize and AnnotationLogMaxFiles bound the container
	// log (bytes; files kept, rotated ones included).
	AnnotationLogMaxSize  = "org.berth.log.max-size"
	AnnotationLogMaxFiles = "org.berth.log.max-files"
)

const (
	defaultLogMaxSize  = 10 << 20
	defaultLogMaxFiles = 3
	// execBuffer and initBuffer bound the output a process produces before
	// its first attach, kept for that attach (an attach racing Start loses
	// nothing; the log has the init's output in any case).
	execBuffer = 1 << 20
	initBuffer = 64 << 10
)

// proc is one process of the task: the init or an exec.
type proc struct {
	execID string
	pid    int
	// stdin is where attaches write (pipe or PTY master); nil for none.
	stdin   *os.File
	console *os.File // PTY master, for resize
	out     *broadcaster
	// outputDone closes when all output was read.
	outputDone chan struct{}
	exited     chan struct{}
	exit       ExitStatus
}

type supervisor struct {
	log      hclog.Logger
	dir      string
	spec     TaskSpec
	launcher *sandbox.Launcher
	logw     *logWriter

	mu        sync.Mutex
	state     State
	container *sandbox.Container
	init      *proc
	execs     map[string]*proc
	byPid     map[int]*proc
	// unclaimed holds exits of pids reaped before they were registered.
	unclaimed map[int]unix.WaitStatus
	listener  net.Listener
	done      chan struct{}
}

// Main runs `berth-sandbox-init supervise -dir DIR -socket PATH -init
// PATH [-seccomp-cache DIR]` and exits the process: it creates the task in
// DIR, reports "ok <init pid>" or "error <why>" on fd 3 and closes it, then
// serves the control socket until the task is deleted.
func Main(args []string) {
	fs := flag.NewFlagSet("supervise", flag.ExitOnError)
	dir := fs.String("dir", "", "task directory")
	socket := fs.String("socket", "", "control socket path")
	initPath := fs.String("init", "", "sandbox init binary")
	seccompCache := fs.String("seccomp-cache", "", "directory of compiled seccomp programs")
	_ = fs.Parse(args)
	log := hclog.New(&hclog.LoggerOptions{Name: "supervisor", Output: os.Stderr, JSONFormat: true, Level: hclog.Debug})
	report := os.NewFile(3, "report")
	s, err := startSupervisor(log, *dir, *socket, *initPath, *seccompCache)
	if err != nil {
		log.Error("create failed", "error", err)
		fmt.Fprintf(report, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		report.Close()
		os.Exit(1)
	}
	fmt.Fprintf(report, "ok %d\n", s.state.Pid)
	report.Close()
	// An idle supervisor should cost little: collect more eagerly than Go's
	// default and give what setup used back to the kernel.
	debug.SetGCPercent(25)
	debug.FreeOSMemory()
	<-s.done
	log.Info("supervisor exits")
	os.Exit(0)
}

func startSupervisor(log hclog.Logger, dir, socket, initPath, seccompCache string) (*supervisor, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a child subreaper: %w", err)
	}
	s := &supervisor{log: log, dir: dir, execs: map[string]*proc{}, byPid: map[int]*proc{},
		unclaimed: map[int]unix.WaitStatus{}, done: make(chan struct{})}
	if err := ReadJSON(filepath.Join(dir, SpecFile), &s.spec); err != nil {
		return nil, err
	}
	s.log = log.With("container_id", s.spec.ID)
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	go s.reap(sigs)

	var err error
	if s.launcher, err = sandbox.NewLauncher(initPath); err != nil {
		return nil, err
	}
	s.launcher.SeccompCacheDir = seccompCache
	cgPath := s.spec.Placement.CgroupPath
	if cgPath == "" {
		cgPath = "berth-sandbox/" + s.spec.ID
	}
	cg, err := sandbox.OpenCgroup(cgPath, true)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", cgPath, err)
	}
	s.state = State{ID: s.spec.ID, SupervisorPid: os.Getpid(), Socket: socket, Status: StatusCreated,
		CreatedAt: time.Now().UTC(), Cgroup: cg}
	fail := func(err error) (*supervisor, error) {
		cg.Kill()
		_ = cg.Remove()
		return nil, err
	}
	logPath := s.spec.LogPath
	if logPath == "" {
		logPath = filepath.Join(dir, "container.log")
	}
	maxSize, maxFiles := int64(defaultLogMaxSize), defaultLogMaxFiles
	if v, err := strconv.ParseInt(s.spec.Annotations[AnnotationLogMaxSize], 10, 64); err == nil && v > 0 {
		maxSize = v
	}
	if v, err := strconv.Atoi(s.spec.Annotations[AnnotationLogMaxFiles]); err == nil && v > 0 {
		maxFiles = v
	}
	if s.logw, err = openLog(logPath, maxSize, maxFiles); err != nil {
		return fail(err)
	}
	oci := s.spec.OCI
	if oci == nil || oci.Process == nil {
		return fail(errorf(KindInvalid, "spec %s has no OCI process", s.spec.ID))
	}
	p, stdio, err := s.newProc("", oci.Process, s.spec.Annotations[AnnotationOpenStdin] == "open", true)
	if err != nil {
		return fail(err)
	}
	rootDir := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	c, err := s.launcher.Create(sandbox.CreateOptions{Spec: oci, RootDir: rootDir, Rootfs: s.spec.Rootfs, Cgroup: cg, Stdio: stdio})
	closeChildEnds(stdio)
	if err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	s.container, s.init = c, p
	p.pid = c.Process.Pid
	s.byPid[p.pid] = p
	s.state.Pid = p.pid
	s.claimLocked(p)
	if err := s.saveLocked(); err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	s.mu.Unlock()
	go s.finishInit()

	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fail(fmt.Errorf("control socket %s: %w", socket, err))
	}
	_ = os.Chmod(socket, 0o600)
	s.listener = l
	go s.serve()
	return s, nil
}

// newProc sets up stdio for a process: a PTY when process.Terminal, else
// pipes (stdin only when openStdin). toLog sends output to the container
// log. It returns the child's ends.
func (s *supervisor) newProc(execID string, process *specs.Process, openStdin, toLog bool) (*proc, sandbox.Stdio, error) {
	p := &proc{execID: execID, outputDone: make(chan struct{}), exited: make(chan struct{})}
	buffer := initBuffer
	if !toLog {
		buffer = execBuffer
	}
	p.out = newBroadcaster(buffer)
	var stdio sandbox.Stdio
	write := func(stream string, b []byte) {
		if toLog {
			if err := s.logw.Write(stream, b); err != nil {
				s.log.Warn("write container log", "error", err)
			}
		}
		p.out.write(stream, b)
	}
	if process.Terminal {
		master, replica, err := pty.Open()
		if err != nil {
			return nil, stdio, fmt.Errorf("open a terminal: %w", err)
		}
		if process.ConsoleSize != nil {
			_ = pty.Setsize(master, &pty.Winsize{Rows: uint16(process.ConsoleSize.Height), Cols: uint16(process.ConsoleSize.Width)})
		}
		p.stdin, p.console = master, master
		stdio = sandbox.Stdio{Stdin: replica, Stdout: replica, Stderr: replica}
		go func() {
			pump(master, "stdout", write)
			close(p.outputDone)
		}()
		return p, stdio, nil
	}
	if openStdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, stdio, err
		}
		p.stdin, stdio.Stdin = w, r
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, stdio, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, stdio, err
	}
	stdio.Stdout, stdio.Stderr = outW, errW
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { pump(outR, "stdout", write); wg.Done() }()
	go func() { pump(errR, "stderr", write); wg.Done() }()
	go func() { wg.Wait(); close(p.outputDone) }()
	return p, stdio, nil
}

func closeChildEnds(stdio sandbox.Stdio) {
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{stdio.Stdin, stdio.Stdout, stdio.Stderr} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

// pump copies r to write until r ends (EIO from a PTY whose replica closed
// is its end).
func pump(r *os.File, stream string, write func(string, []byte)) {
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			write(stream, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// reap collects every child (the init, exec'd processes reparented to us,
// nsenter intermediates) and records the exits of the ones we track.
func (s *supervisor) reap(sigs <-chan os.Signal) {
	for range sigs {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			s.mu.Lock()
			if p, ok := s.byPid[pid]; ok {
				s.exitedLocked(p, ws)
			} else {
				s.unclaimed[pid] = ws
			}
			s.mu.Unlock()
		}
	}
}

// claimLocked applies an exit reaped before p was registered.
func (s *supervisor) claimLocked(p *proc) {
	if ws, ok := s.unclaimed[p.pid]; ok {
		delete(s.unclaimed, p.pid)
		s.exitedLocked(p, ws)
	}
}

func (s *supervisor) exitedLocked(p *proc, ws unix.WaitStatus) {
	select {
	case <-p.exited:
		return
	default:
	}
	e := ExitStatus{ExitedAt: time.Now().UTC()}
	switch {
	case ws.Exited():
		e.Code = ws.ExitStatus()
	case ws.Signaled():
		e.Signal = syscall.Signal(ws.Signal())
		e.Code = 128 + int(ws.Signal())
		if e.Signal == syscall.SIGKILL && p == s.init {
			e.OOMKilled = s.oomKilled()
		}
	}
	p.exit = e
	delete(s.byPid, p.pid)
	close(p.exited)
	if p.execID != "" {
		if err := WriteJSON(filepath.Join(s.dir, ExecsDir, p.execID+".json"), e); err != nil {
			s.log.Warn("record exec exit", "exec_id", p.execID, "error", err)
		}
	}
}

// oomKilled reports whether the memory cgroup saw an OOM kill.
func (s *supervisor) oomKilled() bool {
	dir, ok := s.state.Cgroup.V1["memory"]
	if !ok {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			return v != "0"
		}
	}
	return false
}

// finishInit waits for the init to exit and its output to drain, then
// records the exit on disk and ends every attach.
func (s *supervisor) finishInit() {
	p := s.init
	<-p.exited
	select {
	case <-p.outputDone:
	case <-time.After(10 * time.Second):
		s.log.Warn("container output still open 10s after its init exited")
	}
	if err := s.logw.Flush(); err != nil {
		s.log.Warn("flush container log", "error", err)
	}
	p.out.close()
	s.mu.Lock()
	s.state.Status = StatusStopped
	e := p.exit
	s.state.Exit = &e
	if err := s.saveLocked(); err != nil {
		s.log.Error("record the exit status", "error", err)
	}
	s.mu.Unlock()
	s.log.Info("container exited", "code", e.Code, "signal", e.Signal)
}

func (s *supervisor) saveLocked() error {
	return WriteJSON(filepath.Join(s.dir, StateFile), s.state)
}

func (s *supervisor) serve() {
	for {
		c, err := s.listener.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *supervisor) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		_ = json.NewEncoder(c).Encode(errorResponse(errorf(KindInvalid, "unreadable request: %v", err)))
		return
	}
	if req.Op == OpAttach {
		s.attach(c, br, req)
		return
	}
	if req.Op == OpWait {
		// A waiter's connection closing (its ctx ended) must not leave
		// this goroutine behind.
		go func() { _, _ = io.Copy(io.Discard, br); c.Close() }()
	}
	resp, err := s.do(req)
	if err != nil {
		resp = errorResponse(err)
	}
	_ = json.NewEncoder(c).Encode(resp)
	switch {
	case req.Op == OpShutdown && err == nil:
		s.shutdown()
	case req.Op == OpStart && err == nil:
		// Setup is over: what it allocated goes back to the kernel, so an
		// idle supervisor stays small.
		debug.FreeOSMemory()
	}
}

func (s *supervisor) lookup(execID string) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if execID == "" {
		return s.init, nil
	}
	p, ok := s.execs[execID]
	if !ok {
		return nil, errorf(KindNotFound, "task %s has no process %s", s.spec.ID, execID)
	}
	return p, nil
}

func (s *supervisor) do(req Request) (Response, error) {
	switch req.Op {
	case OpState:
		s.mu.Lock()
		st := s.state
		s.mu.Unlock()
		return Response{State: &st}, nil
	case OpStart:
		return s.start()
	case OpExec:
		return s.exec(req)
	case OpSignal:
		return Response{}, s.signal(req)
	case OpWait:
		p, err := s.lookup(req.ExecID)
		if err != nil {
			return Response{}, err
		}
		<-p.exited
		if p == s.init {
			<-p.out.closed // the log holds all output once Wait returns
		}
		e := p.exit
		return Response{Exit: &e}, nil
	case OpResize:
		p, err := s.lookup(req.ExecID)
		if err != nil {
			return Response{}, err
		}
		if p.console == nil {
			return Response{}, errorf(KindInvalid, "process %q of task %s has no terminal", req.ExecID, s.spec.ID)
		}
		return Response{}, pty.Setsize(p.console, &pty.Winsize{Rows: req.Height, Cols: req.Width})
	case OpPause, OpResume:
		return Response{}, s.pause(req.Op == OpPause)
	case OpStats:
		st := s.state.Cgroup.Stats()
		return Response{Stats: &st}, nil
	case OpShutdown:
		s.mu.Lock()
		running := s.state.Status == StatusRunning || s.state.Status == StatusPaused
		s.mu.Unlock()
		if running && !req.All {
			return Response{}, errorf(KindInvalidState, "task %s is %s; stop it before deleting it", s.spec.ID, s.state.Status)
		}
		s.state.Cgroup.Kill()
		select {
		case <-s.init.exited:
		case <-time.After(30 * time.Second):
			return Response{}, fmt.Errorf("task %s: init %d did not die 30s after SIGKILL", s.spec.ID, s.init.pid)
		}
		s.mu.Lock()
		e := s.init.exit
		s.mu.Unlock()
		return Response{Exit: &e}, nil
	default:
		return Response{}, errorf(KindInvalid, "unknown operation %q", req.Op)
	}
}

func (s *supervisor) start() (Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Status != StatusCreated || s.container == nil {
		return Response{}, errorf(KindInvalidState, "task %s is %s; only a created task can start", s.spec.ID, s.state.Status)
	}
	c := s.container
	s.container = nil
	if err := c.Start(); err != nil {
		return Response{}, fmt.Errorf("start task %s: %w", s.spec.ID, err)
	}
	s.state.Status = StatusRunning
	s.state.StartedAt = time.Now().UTC()
	select {
	case <-s.init.exited:
		// Exited already: finishInit records it.
	default:
	}
	if err := s.saveLocked(); err != nil {
		return Response{}, err
	}
	return Response{Pid: s.init.pid}, nil
}

func (s *supervisor) exec(req Request) (Response, error) {
	if req.Process == nil || len(req.Process.Args) == 0 {
		return Response{}, errorf(KindInvalid, "exec %s: no process args", req.ExecID)
	}
	if req.ExecID == "" || strings.ContainsAny(req.ExecID, "/\x00") || req.ExecID == "." || req.ExecID == ".." {
		return Response{}, errorf(KindInvalid, "exec id %q is not a valid name", req.ExecID)
	}
	s.mu.Lock()
	if _, ok := s.execs[req.ExecID]; ok {
		s.mu.Unlock()
		return Response{}, errorf(KindAlreadyExists, "task %s already has a process %s", s.spec.ID, req.ExecID)
	}
	if s.state.Status != StatusRunning {
		st := s.state.Status
		s.mu.Unlock()
		return Response{}, errorf(KindInvalidState, "task %s is %s; exec needs a running task", s.spec.ID, st)
	}
	initPid := s.init.pid
	s.mu.Unlock()
	req.Process = execDefaults(req.Process, s.spec.OCI)
	if err := os.MkdirAll(filepath.Join(s.dir, ExecsDir), 0o755); err != nil {
		return Response{}, err
	}
	p, stdio, err := s.newProc(req.ExecID, req.Process, true, false)
	if err != nil {
		return Response{}, err
	}
	proc, err := s.launcher.Exec(sandbox.ExecOptions{Pid: initPid, Spec: s.spec.OCI, Process: req.Process,
		Cgroup: s.state.Cgroup, Stdio: stdio})
	closeChildEnds(stdio)
	if err != nil {
		if p.stdin != nil {
			p.stdin.Close()
		}
		return Response{}, fmt.Errorf("exec %s in task %s: %w", req.ExecID, s.spec.ID, err)
	}
	s.mu.Lock()
	p.pid = proc.Pid
	_ = proc.Release() // reaped by reap()
	s.execs[req.ExecID] = p
	s.byPid[p.pid] = p
	s.claimLocked(p)
	s.mu.Unlock()
	go func() {
		<-p.exited
		select {
		case <-p.outputDone:
		case <-time.After(10 * time.Second):
		}
		p.out.close()
	}()
	return Response{Pid: p.pid}, nil
}

func (s *supervisor) signal(req Request) error {
	if req.All {
		for _, pid := range s.state.Cgroup.Pids() {
			_ = unix.Kill(pid, req.Signal)
		}
		return nil
	}
	p, err := s.lookup(req.ExecID)
	if err != nil {
		return err
	}
	select {
	case <-p.exited:
		return errorf(KindNotFound, "process %q of task %s has exited", req.ExecID, s.spec.ID)
	default:
	}
	if err := unix.Kill(p.pid, req.Signal); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errorf(KindNotFound, "process %q of task %s has exited", req.ExecID, s.spec.ID)
		}
		return fmt.Errorf("signal %d to pid %d: %w", req.Signal, p.pid, err)
	}
	return nil
}

func (s *supervisor) pause(freeze bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state.Status {
	case StatusRunning, StatusPaused:
	default:
		return errorf(KindInvalidState, "task %s is %s; only a running task can be paused or resumed", s.spec.ID, s.state.Status)
	}
	if freeze {
		if err := s.state.Cgroup.Freeze(); err != nil {
			return err
		}
		s.state.Status = StatusPaused
	} else {
		if err := s.state.Cgroup.Thaw(); err != nil {
			return err
		}
		s.state.Status = StatusRunning
	}
	return s.saveLocked()
}

// attach streams a process's output to c and c's stdin frames to the
// process until the output ends or c closes.
func (s *supervisor) attach(c net.Conn, br *bufio.Reader, req Request) {
	p, err := s.lookup(req.ExecID)
	if err != nil {
		_ = json.NewEncoder(c).Encode(errorResponse(err))
		return
	}
	var wmu sync.Mutex
	send := func(kind byte, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return WriteFrame(c, kind, b)
	}
	if err := json.NewEncoder(c).Encode(Response{}); err != nil {
		return
	}
	sub := p.out.subscribe()
	defer p.out.unsubscribe(sub)
	go func() {
		for {
			kind, data, err := ReadFrame(br)
			if err != nil {
				sub.cancel()
				return
			}
			if p.stdin == nil {
				continue
			}
			switch kind {
			case FrameStdin:
				_, _ = p.stdin.Write(data)
			case FrameStdinClose:
				if p.console != nil {
					_, _ = p.stdin.Write([]byte{4}) // ^D: end of input on a terminal
				} else {
					_ = p.stdin.Close()
				}
			}
		}
	}()
	for chunk := range sub.ch {
		kind := FrameStdout
		if chunk.stream == "stderr" {
			kind = FrameStderr
		}
		if send(kind, chunk.data) != nil {
			return
		}
	}
	if sub.ended() {
		_ = send(FrameEnd, nil)
	}
}

// shutdown ends the supervisor once its task is gone: the socket, the
// cgroups it made, the log.
func (s *supervisor) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.listener.Close()
	_ = os.Remove(s.state.Socket)
	if err := s.state.Cgroup.Remove(); err != nil {
		s.log.Warn("remove cgroups", "error", err)
	}
	_ = s.logw.Close()
	_ = s.launcher.Close()
	close(s.done)
}

// execDefaults fills what an exec leaves unset from the container's
// process, as docker exec does: capabilities, environment, working dir,
// user, rlimits and no_new_privs.
func execDefaults(p *specs.Process, c *specs.Spec) *specs.Process {
	out := *p
	base := c.Process
	if out.Capabilities == nil {
		out.Capabilities = base.Capabilities
	}
	if len(out.Env) == 0 {
		out.Env = base.Env
	}
	if out.Cwd == "" {
		out.Cwd = base.Cwd
	}
	if out.User.UID == 0 && out.User.GID == 0 && out.User.Username == "" && len(out.User.AdditionalGids) == 0 {
		out.User = base.User
		out.User.Username = c.Annotations[sandbox.AnnotationUser]
	}
	if out.Rlimits == nil {
		out.Rlimits = base.Rlimits
	}
	if base.NoNewPrivileges {
		out.NoNewPrivileges = true
	}
	return &out
}
