package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/mount"
)

// Launcher starts init processes from a copy of the init binary the
// container cannot write, so it can never reach the host's binary through
// /proc/PID/exe while an init runs inside it (CVE-2019-5736): a read-only
// bind mount of the binary, detached at once and held open by an O_PATH
// descriptor (no copy: every launcher shares the page cache), or, where
// mounting is not possible, a sealed memfd copy.
type Launcher struct {
	// SeccompCacheDir, when set, keeps compiled seccomp programs across
	// launchers (processes) so each profile is compiled once.
	SeccompCacheDir string

	exe *os.File
	// identity names the init binary's build, for the cache key.
	identity string
	// how is "ro-bind" or "memfd".
	how string
	// memo holds programs compiled by Precompile (key as the cache dir's).
	memoMu sync.Mutex
	memo   map[string][]byte
}

// NewLauncher prepares the init binary at path.
func NewLauncher(path string) (*Launcher, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox init binary: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	l := &Launcher{identity: fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano())}
	if l.exe, err = roBind(path); err == nil {
		l.how = "ro-bind"
		return l, nil
	}
	if l.exe, err = sealedCopy(src); err != nil {
		return nil, err
	}
	l.how = "memfd"
	return l, nil
}

// NewLauncherMemfd is NewLauncher with the sealed memfd copy only (where
// the caller cannot mount, or to test that path).
func NewLauncherMemfd(path string) (*Launcher, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox init binary: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	exe, err := sealedCopy(src)
	if err != nil {
		return nil, err
	}
	return &Launcher{exe: exe, how: "memfd", identity: fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano())}, nil
}

// Protection says how the init binary is protected: "ro-bind" or "memfd".
func (l *Launcher) Protection() string { return l.how }

// roBind bind-mounts path read-only on a scratch file, opens it O_PATH and
// detaches the mount: the descriptor keeps the read-only mount alive and
// nothing else can reach it.
func roBind(path string) (*os.File, error) {
	tmp, err := os.CreateTemp("", ".berth-init-*")
	if err != nil {
		return nil, err
	}
	target := tmp.Name()
	tmp.Close()
	defer os.Remove(target)
	if err := unix.Mount(path, target, "", unix.MS_BIND, ""); err != nil {
		return nil, err
	}
	defer func() { _ = unix.Unmount(target, unix.MNT_DETACH) }()
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return nil, err
	}
	fd, err := unix.Open(target, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "berth-sandbox-init"), nil
}

// sealedCopy copies src into a memfd sealed against every change.
func sealedCopy(src *os.File) (*os.File, error) {
	fd, err := unix.MemfdCreate("berth-sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd for the sandbox init: %w", err)
	}
	exe := os.NewFile(uintptr(fd), "berth-sandbox-init")
	if _, err := io.Copy(exe, src); err != nil {
		exe.Close()
		return nil, fmt.Errorf("copy the sandbox init: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(exe.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		exe.Close()
		return nil, fmt.Errorf("seal the sandbox init copy: %w", err)
	}
	return exe, nil
}

// Close releases the protected copy.
func (l *Launcher) Close() error { return l.exe.Close() }

// path is how a child execs the memfd: its own inherited descriptor.
func (l *Launcher) path() string { return "/proc/self/fd/" + strconv.Itoa(int(l.exe.Fd())) }

// Stdio are the files a process gets as fds 0, 1 and 2 (pipe ends or a
// terminal's replica). Nil entries become /dev/null.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOptions describe a container to create.
type CreateOptions struct {
	Spec *specs.Spec
	// RootDir is an empty host directory the rootfs is mounted on, inside
	// the container's mount namespace only.
	RootDir string
	Rootfs  []mount.Mount
	// Cgroup is joined before the init does anything; nil joins none.
	Cgroup *Cgroup
	Stdio  Stdio
	// Prestarted, when set, is the init to use (Launcher.Prestart): it
	// must be Usable for Spec; Stdio is then ignored (it has its own). On
	// error it is killed like an init Create started.
	Prestarted *Prestarted
}

// Container is a created container whose init waits for Start.
type Container struct {
	// Process is the init process; the caller reaps it.
	Process *os.Process
	// Console is the master of the init's terminal when its process has
	// one (Process.Terminal): opened by the init in the container's own
	// devpts, whose replica is the init's stdio, controlling terminal and
	// /dev/console. The caller owns it; nil without a terminal.
	Console *os.File
	// Phases are the timings of its setup, in order: "spawn" (Create
	// began), "exec" (the init binary was exec'd in its new namespaces) or
	// "prestarted" (a Prestarted init was taken),
	// "joined" (cgroup joined), then the init's own steps ("runtime" = its
	// Go runtime had started, "go", "rootfs", "paths", "seccomp", "ready").
	// For logs; the init's steps are missing when it sent none.
	Phases []Phase
	// SeccompCompiled says the init got its seccomp program compiled (a
	// cache or Precompile) rather than compiling the profile itself.
	SeccompCompiled bool
	sock            *os.File
}

// Create starts the init of a new container and returns once it is set up
// and waiting to exec the workload. On error nothing is left running.
func (l *Launcher) Create(opts CreateOptions) (_ *Container, err error) {
	s := opts.Spec
	if s == nil || s.Process == nil || len(s.Process.Args) == 0 {
		return nil, errors.New("create: the spec has no process args")
	}
	attr, cgroupNS, err := cloneAttr(s)
	if err != nil {
		return nil, err
	}
	cfg := &InitConfig{Mode: ModeCreate, Spec: s, Process: s.Process, RootDir: opts.RootDir,
		Rootfs: opts.Rootfs, CgroupNS: cgroupNS}
	if cfg.SeccompBPF, err = l.seccompBPF(seccompOf(s)); err != nil {
		return nil, err
	}
	cfg.Spec = withoutProfile(s, cfg.SeccompBPF)
	if opts.Cgroup != nil {
		cfg.CgroupV1 = opts.Cgroup.V1
		if err := opts.Cgroup.ApplyDevices(deviceRules(s)); err != nil {
			return nil, err
		}
	}
	phases := []Phase{{Name: "spawn", At: time.Now().UnixNano()}}
	if opts.Prestarted != nil {
		proc, parent, err := opts.Prestarted.take(attr)
		if err != nil {
			return nil, err
		}
		return l.created(proc, parent, nil, cfg, opts.Cgroup, s, append(phases, Phase{Name: "prestarted", At: time.Now().UnixNano()}))
	}
	parent, child, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer child.Close()
	env := []string{EnvInitSock + "=3"}
	// On a pure cgroup v2 hierarchy the init is cloned straight into its
	// cgroup (clone3 CLONE_INTO_CGROUP): it never runs outside it, and no
	// migration (a write lock on every fork of the machine, and an RCU
	// grace period) is needed. Elsewhere the parent joins it below, before
	// it does anything.
	if cg := opts.Cgroup; cg != nil && cg.V2 != "" && len(cg.V1) == 0 {
		if fd, oerr := unix.Open(cg.V2, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); oerr == nil {
			into := *attr
			into.UseCgroupFD, into.CgroupFD = true, fd
			proc, err := l.start(opts.Stdio, []*os.File{child}, env, &into)
			unix.Close(fd)
			if err == nil {
				return l.created(proc, parent, child, cfg, nil, s, append(phases, Phase{Name: "exec", At: time.Now().UnixNano()}))
			}
			if !errors.Is(err, unix.ENOSYS) {
				parent.Close()
				return nil, err
			}
			// No clone3 (an old kernel or a filter that hides it): join.
		}
	}
	proc, err := l.start(opts.Stdio, []*os.File{child}, env, attr)
	if err != nil {
		parent.Close()
		return nil, err
	}
	return l.created(proc, parent, child, cfg, opts.Cgroup, s, append(phases, Phase{Name: "exec", At: time.Now().UnixNano()}))
}

// created finishes Create once the init runs: config, cgroup join (join
// nil: it was cloned into its cgroup), go, terminal, ready. child is the
// init's end of the socket (nil for a prestarted init).
func (l *Launcher) created(proc *os.Process, parent, child *os.File, cfg *InitConfig, join *Cgroup, s *specs.Spec, phases []Phase) (_ *Container, err error) {
	c := &Container{Process: proc, sock: parent}
	defer func() {
		if err != nil {
			_ = proc.Kill()
			_, _ = proc.Wait()
			parent.Close()
			if c.Console != nil {
				c.Console.Close()
			}
		}
	}()
	if child != nil {
		child.Close()
	}
	if err := sendJSON(parent, cfg); err != nil {
		return nil, fmt.Errorf("send the init its config: %w", err)
	}
	if join != nil {
		if err := join.Join(proc.Pid); err != nil {
			return nil, err
		}
		phases = append(phases, Phase{Name: "joined", At: time.Now().UnixNano()})
	}
	if err := sendJSON(parent, message{Type: msgGo}); err != nil {
		return nil, fmt.Errorf("release the init: %w", err)
	}
	if s.Process.Terminal {
		if c.Console, err = expectConsole(parent); err != nil {
			if errors.Is(err, io.EOF) {
				st, _ := proc.Wait()
				return nil, fmt.Errorf("the container init exited during setup (%v)", st)
			}
			return nil, err
		}
	}
	ready, err := expectMessage(parent, msgReady)
	if err != nil {
		if errors.Is(err, io.EOF) {
			st, _ := proc.Wait()
			return nil, fmt.Errorf("the container init exited during setup (%v)", st)
		}
		return nil, err
	}
	c.Phases = append(phases, ready.Phases...)
	c.SeccompCompiled = cfg.SeccompBPF != nil
	return c, nil
}

// Start lets the init exec the workload and returns once exec succeeded
// (the init socket closes on exec) or failed.
func (c *Container) Start() error {
	defer c.sock.Close()
	if err := sendJSON(c.sock, message{Type: msgStart}); err != nil {
		return fmt.Errorf("start the init: %w", err)
	}
	err := expect(c.sock, "")
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// Close abandons a created container's socket (the init, blocked waiting
// for start, then exits).
func (c *Container) Close() error { return c.sock.Close() }

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	// Pid is the container's init pid (whose namespaces are joined).
	Pid int
	// Spec is the container's spec: its seccomp profile applies.
	Spec    *specs.Spec
	Process *specs.Process
	Cgroup  *Cgroup
	Stdio   Stdio
}

// Process is a process exec'd into a container.
type Process struct {
	*os.Process
	// Console is the master of its terminal when it has one
	// (Process.Terminal): opened by the process in the container's devpts
	// after entering its mount namespace. The caller owns it.
	Console *os.File
}

// Exec starts a process in the namespaces and cgroup of a running
// container and returns it once it has exec'd. The caller must be a child
// subreaper (PR_SET_CHILD_SUBREAPER): the process is forked by an
// intermediate that exits, and it is reparented to the caller, which reaps
// it.
func (l *Launcher) Exec(opts ExecOptions) (*Process, error) {
	if opts.Process == nil || len(opts.Process.Args) == 0 {
		return nil, errors.New("exec: the process has no args")
	}
	var sub int32
	if _, _, e := unix.Syscall(unix.SYS_PRCTL, unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&sub)), 0); e != 0 || sub == 0 {
		return nil, errors.New("exec needs the caller to be a child subreaper (prctl PR_SET_CHILD_SUBREAPER)")
	}
	parent, child, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	defer child.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	env := []string{EnvInitSock + "=3", EnvNsenterPipe + "=4", EnvNsenterPid + "=" + strconv.Itoa(opts.Pid)}
	inter, err := l.start(opts.Stdio, []*os.File{child, pw}, env, &syscall.SysProcAttr{})
	pw.Close()
	child.Close()
	if err != nil {
		return nil, err
	}
	line, rerr := bufio.NewReader(pr).ReadString('\n')
	st, _ := inter.Wait() // the intermediate exits once it reported
	pid, perr := parseNsenter(line)
	if perr != nil {
		if rerr != nil && st != nil {
			return nil, fmt.Errorf("enter the namespaces of pid %d: the init binary exited (%v) without a report", opts.Pid, st)
		}
		return nil, fmt.Errorf("enter the namespaces of pid %d: %w", opts.Pid, perr)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	var console *os.File
	fail := func(err error) (*Process, error) {
		_ = proc.Kill()
		_, _ = proc.Wait()
		if console != nil {
			console.Close()
		}
		return nil, err
	}
	bpf, err := l.seccompBPF(seccompOf(opts.Spec))
	if err != nil {
		return fail(err)
	}
	if err := sendJSON(parent, &InitConfig{Mode: ModeExec, Spec: withoutProfile(opts.Spec, bpf), Process: opts.Process, SeccompBPF: bpf}); err != nil {
		return fail(fmt.Errorf("send the exec its config: %w", err))
	}
	if opts.Cgroup != nil {
		if err := opts.Cgroup.Join(pid); err != nil {
			return fail(err)
		}
	}
	if err := sendJSON(parent, message{Type: msgGo}); err != nil {
		return fail(err)
	}
	if opts.Process.Terminal {
		if console, err = expectConsole(parent); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the process exited before it opened its terminal")
			}
			return fail(err)
		}
	}
	if err := expect(parent, ""); !errors.Is(err, io.EOF) {
		return fail(err)
	}
	return &Process{Process: proc, Console: console}, nil
}

// parseNsenter reads the constructor's report.
func parseNsenter(line string) (int, error) {
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "P"):
		return strconv.Atoi(line[1:])
	case strings.HasPrefix(line, "E"):
		return 0, errors.New(line[1:])
	default:
		return 0, fmt.Errorf("unexpected report %q", line)
	}
}

// start runs the init binary with extra files from fd 3 on.
func (l *Launcher) start(stdio Stdio, extra []*os.File, env []string, attr *syscall.SysProcAttr) (*os.Process, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	or := func(f *os.File) *os.File {
		if f == nil {
			return null
		}
		return f
	}
	files := append([]*os.File{or(stdio.Stdin), or(stdio.Stdout), or(stdio.Stderr)}, extra...)
	// The memfd must survive the fork for /proc/self/fd/N to resolve in the
	// child; exec closes it (O_CLOEXEC).
	proc, err := os.StartProcess(l.path(), []string{"berth-sandbox-init"}, &os.ProcAttr{
		Dir: "/", Env: env, Files: files, Sys: attr,
	})
	if err != nil {
		return nil, fmt.Errorf("start the sandbox init: %w", err)
	}
	return proc, nil
}

// cloneAttr maps the spec's namespaces to clone flags. The cgroup namespace
// is unshared by the init itself once it has joined its cgroup.
func cloneAttr(s *specs.Spec) (*syscall.SysProcAttr, bool, error) {
	attr := &syscall.SysProcAttr{Setsid: true}
	if s.Linux == nil {
		return nil, false, errors.New("the spec has no linux section")
	}
	cgroupNS := false
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			return nil, false, fmt.Errorf("namespace %s: joining an existing namespace (path %s) is not supported yet", ns.Type, ns.Path)
		}
		switch ns.Type {
		case specs.PIDNamespace:
			attr.Cloneflags |= unix.CLONE_NEWPID
		case specs.NetworkNamespace:
			attr.Cloneflags |= unix.CLONE_NEWNET
		case specs.MountNamespace:
			attr.Cloneflags |= unix.CLONE_NEWNS
		case specs.IPCNamespace:
			attr.Cloneflags |= unix.CLONE_NEWIPC
		case specs.UTSNamespace:
			attr.Cloneflags |= unix.CLONE_NEWUTS
		case specs.CgroupNamespace:
			cgroupNS = true
		case specs.UserNamespace:
			attr.Cloneflags |= unix.CLONE_NEWUSER
			for _, m := range s.Linux.UIDMappings {
				attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
			}
			for _, m := range s.Linux.GIDMappings {
				attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
			}
			attr.GidMappingsEnableSetgroups = true
			// Become the namespace's root once the maps are written, so
			// the init keeps its capabilities across exec (clone leaves it
			// the host's root, which the new namespace does not map).
			attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
		default:
			return nil, false, fmt.Errorf("namespace %q is not supported", ns.Type)
		}
	}
	if attr.Cloneflags&unix.CLONE_NEWNS == 0 {
		return nil, false, errors.New("the spec has no mount namespace; a sandbox needs one")
	}
	return attr, cgroupNS, nil
}

// withoutProfile returns s without its seccomp rules when the compiled
// program bpf replaces them (the init then has less to decode); the
// profile stays non-nil, marking that a filter applies.
func withoutProfile(s *specs.Spec, bpf []byte) *specs.Spec {
	if bpf == nil || s == nil || s.Linux == nil || s.Linux.Seccomp == nil {
		return s
	}
	c, lc := *s, *s.Linux
	lc.Seccomp = &specs.LinuxSeccomp{DefaultAction: s.Linux.Seccomp.DefaultAction}
	c.Linux = &lc
	return &c
}

func seccompOf(s *specs.Spec) *specs.LinuxSeccomp {
	if s == nil || s.Linux == nil {
		return nil
	}
	return s.Linux.Seccomp
}

func deviceRules(s *specs.Spec) []specs.LinuxDeviceCgroup {
	if s.Linux == nil || s.Linux.Resources == nil {
		return nil
	}
	return s.Linux.Resources.Devices
}

// socketPair returns the two ends of a SOCK_SEQPACKET pair (close-on-exec
// on our side; the child's end is dup'ed without it).
func socketPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("init socket: %w", err)
	}
	for _, fd := range fds {
		// The config carries the seccomp profile; room for it in one packet.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*maxPacket)
	}
	return os.NewFile(uintptr(fds[0]), "init-parent"), os.NewFile(uintptr(fds[1]), "init-child"), nil
}

const maxPacket = 1 << 20

func sendJSON(f *os.File, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxPacket {
		return fmt.Errorf("init message of %d bytes is over %d", len(b), maxPacket)
	}
	_, err = f.Write(b)
	return err
}

func recvJSON(f *os.File, v any) error {
	buf := make([]byte, maxPacket)
	n, err := f.Read(buf)
	if err != nil {
		return err
	}
	if n == 0 {
		return io.EOF
	}
	return json.Unmarshal(buf[:n], v)
}

// sendConsole sends msgConsole with master attached (SCM_RIGHTS).
func sendConsole(f *os.File, master *os.File) error {
	b, err := json.Marshal(message{Type: msgConsole})
	if err != nil {
		return err
	}
	rights := unix.UnixRights(int(master.Fd()))
	return unix.Sendmsg(int(f.Fd()), b, rights, nil, 0)
}

// recvMessage reads one message from the init and the descriptor it
// carries (msgConsole), or -1: io.EOF when the init closed the socket.
func recvMessage(f *os.File) (message, int, error) {
	var m message
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return m, -1, err
	}
	passed := -1
	if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, c := range cmsgs {
			fds, _ := unix.ParseUnixRights(&c)
			for _, fd := range fds {
				if passed < 0 {
					passed = fd
				} else {
					unix.Close(fd)
				}
			}
		}
	}
	drop := func() {
		if passed >= 0 {
			unix.Close(passed)
			passed = -1
		}
	}
	if n == 0 {
		drop()
		return m, -1, io.EOF
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		drop()
		return m, -1, fmt.Errorf("read from the init: %w", err)
	}
	if m.Type != msgConsole {
		drop()
	}
	return m, passed, nil
}

// expectConsole reads the init's msgConsole and returns the master it
// carries (a terminal of the container's devpts), non-blocking so reads
// go through Go's poller.
func expectConsole(f *os.File) (*os.File, error) {
	m, fd, err := recvMessage(f)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read the terminal from the init: %w", err)
	}
	switch {
	case m.Type == msgError:
		return nil, &InitError{Msg: m.Error}
	case m.Type != msgConsole:
		return nil, fmt.Errorf("init sent %q, want %q", m.Type, msgConsole)
	case fd < 0:
		return nil, errors.New("the init's terminal message carries no descriptor")
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "console"), nil
}

// expect reads one message: nil for kind, the init's error for msgError,
// io.EOF when the init closed the socket (it exec'd or died).
func expect(f *os.File, kind string) error {
	_, err := expectMessage(f, kind)
	return err
}

// expectMessage is expect returning the message.
func expectMessage(f *os.File, kind string) (message, error) {
	var m message
	if err := recvJSON(f, &m); err != nil {
		if errors.Is(err, io.EOF) {
			return m, io.EOF
		}
		return m, fmt.Errorf("read from the init: %w", err)
	}
	switch m.Type {
	case kind:
		return m, nil
	case msgError:
		return m, &InitError{Msg: m.Error}
	default:
		return m, fmt.Errorf("init sent %q, want %q", m.Type, kind)
	}
}

// PhaseDurations renders phases as "name=duration" pairs, each the time
// since the phase before it (log fields).
func PhaseDurations(phases []Phase) []any {
	var out []any
	for i := 1; i < len(phases); i++ {
		d := time.Duration(phases[i].At - phases[i-1].At)
		out = append(out, phases[i].Name, d.Round(time.Millisecond))
	}
	return out
}

// InitError is a setup failure reported by the init.
type InitError struct{ Msg string }

func (e *InitError) Error() string { return "container init: " + e.Msg }
