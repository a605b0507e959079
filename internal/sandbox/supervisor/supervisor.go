//go:build linux || darwin

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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/tasklog"
)

// Annotations the supervisor reads from the task spec.
const (
	// AnnotationOpenStdin is sdk/isolation.AnnotationOpenStdin: "open"
	// gives the init a stdin that attaches feed.
	AnnotationOpenStdin = "org.berth.stdin"
	// AnnotationLogMaxSize and AnnotationLogMaxFiles bound the container
	// log (bytes; files kept, rotated ones included).
	AnnotationLogMaxSize  = tasklog.AnnotationLogMaxSize
	AnnotationLogMaxFiles = tasklog.AnnotationLogMaxFiles
)

const (
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
	stdin *os.File
	// console is the PTY master, for resize; it stays open until the
	// process has exited and its output drained (closeConsole), so a
	// resize never meets a closed descriptor.
	console *os.File
	// terminal: the process has a terminal, whose master the backend
	// supplies (backend.terminalsInside) or newProc opened.
	terminal bool
	write    func(stream string, b []byte)
	out      *tasklog.Broadcaster
	// outputDone closes when all output was read.
	outputDone chan struct{}
	exited     chan struct{}
	exit       ExitStatus
	// pendingStdio holds the child's ends until a backend that starts the
	// init only at start has done so.
	pendingStdio *Stdio
}

// registerLocked records p's pid and applies an exit reaped before.
func (s *supervisor) registerLocked(p *proc, pid int) {
	p.pid = pid
	s.byPid[pid] = p
	if p == s.init {
		s.state.Pid = pid
	}
	s.claimLocked(p)
}

// Stdio are the child's ends of a process's stdio; nil is /dev/null.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// backend is the platform's way of running a task's processes: Linux
// namespaces and cgroups (internal/sandbox), or darwin's Seatbelt.
type backend interface {
	// terminalsInside reports whether the backend opens a process's
	// terminal itself, inside the task (the container's own devpts, as
	// runc's console socket), and returns its master from create and exec;
	// otherwise the supervisor opens one and passes its replica as stdio.
	terminalsInside() bool
	// create prepares the task's init with stdio, the children's ends of
	// which the supervisor closes afterwards. It returns the init's pid, or
	// 0 when the platform starts the init only at start, and the master of
	// its terminal (terminalsInside).
	create(spec TaskSpec, dir string, stdio Stdio) (int, *os.File, error)
	// start runs the created init and returns its pid.
	start() (int, error)
	// exec starts another process of the running task; console as create.
	exec(initPid int, p *specs.Process, stdio Stdio) (int, *os.File, error)
	// freeze stops (or, with false, resumes) every process of the task.
	freeze(frozen bool) error
	stats() Stats
	// signalAll sends sig to every process of the task.
	signalAll(sig syscall.Signal)
	// killAll kills every process of the task, frozen ones included.
	killAll()
	oomKilled() bool
	// cleanup removes what create made (cgroups); safe to call twice.
	cleanup() error
	// record adds the backend's facts to the state on disk.
	record(st *State)
}

type supervisor struct {
	log  hclog.Logger
	dir  string
	spec TaskSpec
	be   backend
	logw *tasklog.Log

	mu      sync.Mutex
	state   State
	created bool // the init waits for start
	init    *proc
	execs   map[string]*proc
	byPid   map[int]*proc
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
	serve(args, newBackend)
}

// MainSeatbelt is Main with the Seatbelt backend of opts, on any platform:
// darwin's supervisor, and the tests of the darwin runtime's logic on
// Linux (with Unconfined).
func MainSeatbelt(args []string, opts SeatbeltOptions) {
	serve(args, func(string, string) (backend, error) { return newSeatbeltBackend(opts) })
}

func serve(args []string, newBackend func(initPath, seccompCache string) (backend, error)) {
	fs := flag.NewFlagSet("supervise", flag.ExitOnError)
	dir := fs.String("dir", "", "task directory")
	socket := fs.String("socket", "", "control socket path")
	initPath := fs.String("init", "", "sandbox init binary (Linux)")
	seccompCache := fs.String("seccomp-cache", "", "directory of compiled seccomp programs (Linux)")
	_ = fs.Parse(args)
	log := hclog.New(&hclog.LoggerOptions{Name: "supervisor", Output: os.Stderr, JSONFormat: true, Level: hclog.Debug})
	report := os.NewFile(3, "report")
	be, err := newBackend(*initPath, *seccompCache)
	var s *supervisor
	if err == nil {
		s, err = startSupervisor(log, *dir, *socket, be)
	}
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

func startSupervisor(log hclog.Logger, dir, socket string, be backend) (*supervisor, error) {
	s := &supervisor{log: log, dir: dir, be: be, execs: map[string]*proc{}, byPid: map[int]*proc{},
		unclaimed: map[int]unix.WaitStatus{}, done: make(chan struct{})}
	if err := atomicfile.ReadJSON(filepath.Join(dir, SpecFile), &s.spec); err != nil {
		return nil, err
	}
	s.log = log.With("container_id", s.spec.ID)
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	go s.reap(sigs)

	var err error
	s.state = State{ID: s.spec.ID, SupervisorPid: os.Getpid(), Socket: socket, Status: StatusCreated,
		CreatedAt: time.Now().UTC()}
	fail := func(err error) (*supervisor, error) {
		s.be.killAll()
		_ = s.be.cleanup()
		return nil, err
	}
	logPath := s.spec.LogPath
	if logPath == "" {
		logPath = filepath.Join(dir, "container.log")
	}
	maxSize, maxFiles := tasklog.Limits(s.spec.Annotations)
	if s.logw, err = tasklog.OpenLog(logPath, maxSize, maxFiles); err != nil {
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
	s.mu.Lock()
	pid, console, err := s.be.create(s.spec, dir, stdio)
	s.be.record(&s.state)
	if err == nil {
		err = p.useConsole(console)
	}
	if err != nil {
		s.mu.Unlock()
		closeChildEnds(stdio)
		return fail(err)
	}
	s.created, s.init = true, p
	if pid > 0 {
		closeChildEnds(stdio)
		s.registerLocked(p, pid)
	} else {
		p.pendingStdio = &stdio // handed to the init at start
	}
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

// newProc sets up stdio for a process: a PTY when process.Terminal (the
// backend's, from inside the task, or one opened here), else pipes (stdin
// only when openStdin). toLog sends output to the container log. It
// returns the child's ends (none for a terminal the backend opens).
func (s *supervisor) newProc(execID string, process *specs.Process, openStdin, toLog bool) (*proc, Stdio, error) {
	p := &proc{execID: execID, outputDone: make(chan struct{}), exited: make(chan struct{})}
	buffer := initBuffer
	if !toLog {
		buffer = execBuffer
	}
	p.out = tasklog.NewBroadcaster(buffer)
	var stdio Stdio
	write := func(stream string, b []byte) {
		if toLog {
			if err := s.logw.Write(stream, b); err != nil {
				s.log.Warn("write container log", "error", err)
			}
		}
		p.out.Write(stream, b)
	}
	p.write = write
	if process.Terminal {
		p.terminal = true
		if s.be.terminalsInside() {
			return p, stdio, nil // useConsole gets the backend's master
		}
		master, replica, err := pty.Open()
		if err != nil {
			return nil, stdio, fmt.Errorf("open a terminal: %w", err)
		}
		if process.ConsoleSize != nil {
			_ = setConsoleSize(master, uint16(process.ConsoleSize.Width), uint16(process.ConsoleSize.Height))
		}
		stdio = Stdio{Stdin: replica, Stdout: replica, Stderr: replica}
		_ = p.useConsole(master)
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
	go func() { pump(outR, "stdout", write, true); wg.Done() }()
	go func() { pump(errR, "stderr", write, true); wg.Done() }()
	go func() { wg.Wait(); close(p.outputDone) }()
	return p, stdio, nil
}

// useConsole makes master the process's terminal: attaches write to it,
// its output is pumped. A nil master is a backend's failure to supply the
// terminal of a process that has one (or nothing, for one that has none).
func (p *proc) useConsole(master *os.File) error {
	if !p.terminal || p.console != nil {
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
		pump(master, "stdout", p.write, false)
		close(p.outputDone)
	}()
	return nil
}

// closeConsole closes the terminal's master once the process has exited
// and its output was read; resize holds s.mu too.
func (s *supervisor) closeConsole(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.console != nil {
		p.console.Close()
	}
}

// setConsoleSize sets a terminal's window size through the poller (Fd()
// would switch the master to blocking mode).
func setConsoleSize(master *os.File, width, height uint16) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width})
	})
	if err != nil {
		return err
	}
	return ioErr
}

func closeChildEnds(stdio Stdio) {
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{stdio.Stdin, stdio.Stdout, stdio.Stderr} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

// pump copies r to write until r ends (EIO from a PTY whose replica closed
// is its end), closing r then when closeAtEnd.
func pump(r *os.File, stream string, write func(string, []byte), closeAtEnd bool) {
	if closeAtEnd {
		defer r.Close()
	}
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
			e.OOMKilled = s.be.oomKilled()
		}
	}
	p.exit = e
	delete(s.byPid, p.pid)
	close(p.exited)
	if p.execID != "" {
		if err := atomicfile.WriteState(filepath.Join(s.dir, ExecsDir, p.execID+".json"), e); err != nil {
			s.log.Warn("record exec exit", "exec_id", p.execID, "error", err)
		}
	}
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
	p.out.Close()
	s.closeConsole(p)
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
	return atomicfile.WriteState(filepath.Join(s.dir, StateFile), s.state)
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
			<-p.out.Closed() // the log holds all output once Wait returns
		}
		e := p.exit
		return Response{Exit: &e}, nil
	case OpResize:
		p, err := s.lookup(req.ExecID)
		if err != nil {
			return Response{}, err
		}
		if !p.terminal {
			return Response{}, errorf(KindInvalid, "process %q of task %s has no terminal", req.ExecID, s.spec.ID)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		select {
		case <-p.exited:
			return Response{}, errorf(KindInvalidState, "process %q of task %s has exited; its terminal is gone", req.ExecID, s.spec.ID)
		default:
		}
		if err := setConsoleSize(p.console, req.Width, req.Height); err != nil {
			return Response{}, fmt.Errorf("resize the terminal of process %q of task %s: %w", req.ExecID, s.spec.ID, err)
		}
		return Response{}, nil
	case OpPause, OpResume:
		return Response{}, s.pause(req.Op == OpPause)
	case OpStats:
		st := s.be.stats()
		if st.Pids == 0 {
			s.mu.Lock()
			st.Pids = uint64(len(s.byPid))
			s.mu.Unlock()
		}
		return Response{Stats: &st}, nil
	case OpShutdown:
		s.mu.Lock()
		running := s.state.Status == StatusRunning || s.state.Status == StatusPaused
		s.mu.Unlock()
		if running && !req.All {
			return Response{}, errorf(KindInvalidState, "task %s is %s; stop it before deleting it", s.spec.ID, s.state.Status)
		}
		s.be.killAll()
		s.mu.Lock()
		created := s.created
		s.mu.Unlock()
		if created && s.init.pid == 0 {
			// Never started: there is no process to wait for.
			return Response{Exit: &ExitStatus{}}, nil
		}
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
	if s.state.Status != StatusCreated || !s.created {
		return Response{}, errorf(KindInvalidState, "task %s is %s; only a created task can start", s.spec.ID, s.state.Status)
	}
	s.created = false
	pid, err := s.be.start()
	if s.init.pendingStdio != nil {
		closeChildEnds(*s.init.pendingStdio)
		s.init.pendingStdio = nil
	}
	if err != nil {
		return Response{}, fmt.Errorf("start task %s: %w", s.spec.ID, err)
	}
	if s.init.pid == 0 {
		s.registerLocked(s.init, pid)
	}
	s.be.record(&s.state)
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
	req.Process = sandbox.ExecDefaults(req.Process, s.spec.OCI)
	if err := os.MkdirAll(filepath.Join(s.dir, ExecsDir), 0o755); err != nil {
		return Response{}, err
	}
	p, stdio, err := s.newProc(req.ExecID, req.Process, true, false)
	if err != nil {
		return Response{}, err
	}
	pid, console, err := s.be.exec(initPid, req.Process, stdio)
	closeChildEnds(stdio)
	if err == nil {
		if err = p.useConsole(console); err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	if err != nil {
		if p.stdin != nil {
			p.stdin.Close()
		}
		return Response{}, fmt.Errorf("exec %s in task %s: %w", req.ExecID, s.spec.ID, err)
	}
	s.mu.Lock()
	// An exit the reaper saw first waits in unclaimed for this.
	s.execs[req.ExecID] = p
	s.registerLocked(p, pid)
	// A backend whose execs add to what it records (darwin's process
	// groups) has it on disk, for a cleanup after the supervisor died.
	groups := len(s.state.Pgids)
	s.be.record(&s.state)
	if len(s.state.Pgids) != groups {
		if err := s.saveLocked(); err != nil {
			s.log.Warn("record the exec's process group", "exec_id", req.ExecID, "error", err)
		}
	}
	s.mu.Unlock()
	go func() {
		<-p.exited
		select {
		case <-p.outputDone:
		case <-time.After(10 * time.Second):
		}
		p.out.Close()
		s.closeConsole(p)
	}()
	return Response{Pid: p.pid}, nil
}

func (s *supervisor) signal(req Request) error {
	if req.All {
		s.be.signalAll(req.Signal)
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
	if err := s.be.freeze(freeze); err != nil {
		return err
	}
	s.state.Status = StatusRunning
	if freeze {
		s.state.Status = StatusPaused
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
	sub := p.out.Subscribe()
	defer p.out.Unsubscribe(sub)
	go func() {
		for {
			kind, data, err := ReadFrame(br)
			if err != nil {
				sub.Cancel()
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
	for chunk := range sub.C() {
		kind := FrameStdout
		if chunk.Stream == "stderr" {
			kind = FrameStderr
		}
		if send(kind, chunk.Data) != nil {
			return
		}
	}
	if sub.Ended() {
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
	if err := s.be.cleanup(); err != nil {
		s.log.Warn("clean up", "error", err)
	}
	_ = s.logw.Close()
	close(s.done)
}
