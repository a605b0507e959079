//go:build linux || darwin

package supervisor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/seatbelt"
)

// Confine turns a resolved command line (argv[0] an absolute host path)
// into the command line that runs it confined by policy. On darwin it is
// SandboxExec; tests on Linux pass Unconfined, the one seam of the
// Seatbelt backend that is not exercised there.
type Confine func(policy seatbelt.Policy, argv []string) ([]string, error)

// SandboxExec confines argv with /usr/bin/sandbox-exec and the profile
// seatbelt generates from policy.
func SandboxExec(policy seatbelt.Policy, argv []string) ([]string, error) {
	return seatbelt.Command(policy, argv)
}

// Unconfined runs argv as it is (tests of the backend's logic on Linux).
func Unconfined(_ seatbelt.Policy, argv []string) ([]string, error) { return argv, nil }

// ProcInfo is one row of the process table.
type ProcInfo struct{ Pid, PPid, Pgid int }

// ProcUse is one process's resource use.
type ProcUse struct {
	CPU time.Duration
	// Footprint is its physical memory in bytes (darwin's phys_footprint,
	// the resident set size on Linux).
	Footprint uint64
}

// ProcSource is where the Seatbelt backend reads a task's processes for
// stats: sysctl kern.proc.all and proc_pid_rusage on darwin.
type ProcSource interface {
	Table() ([]ProcInfo, error)
	// Use returns pid's resource use; an error means it is gone.
	Use(pid int) (ProcUse, error)
}

// SeatbeltOptions configure the Seatbelt backend.
type SeatbeltOptions struct {
	// Confine wraps every process's command line; SandboxExec when nil.
	Confine Confine
	// Procs is the stats source; stats report only the time without it.
	Procs ProcSource
	// Hold is the command line that holds a created init until start:
	// the running binary with HoldArg, which must dispatch to HoldMain.
	// Empty means [os.Executable(), HoldArg].
	Hold []string
}

// HoldArg is the first argument that makes a binary run HoldMain.
const HoldArg = "seatbelt-hold"

// seatbeltBackend confines darwin-native workloads with Seatbelt. There is
// no mount namespace and no cgroup: the rootfs is a directory (an APFS
// clone) the workload sees at its host path, and the task's processes are
// the process groups of its init and its execs (each starts in a session
// of its own, a terminal's or not), which pause stops with SIGSTOP and
// resume continues.
//
// Create starts the init held: a `HoldArg` process with the init's stdio,
// session and working dir that blocks on a pipe; start writes to the pipe
// and the hold execs the confined command (sandbox-exec, which execs the
// workload), so the init's pid is known at create and stays the same.
// Execs go through the hold too, released at once; the hold sets the
// process's rlimits and (when the supervisor is root) its user before it
// execs.
type seatbeltBackend struct {
	opts SeatbeltOptions

	mu     sync.Mutex
	policy seatbelt.Policy
	spec   *specs.Spec
	// startW releases the held init; nil once used.
	startW *os.File
	// initPgid is the init's process group; groups are the task's groups
	// not yet seen gone (a group id stays unused while the group exists,
	// so one seen empty is dropped before its id can be reused).
	initPgid int
	groups   []int
	peak     uint64
}

func newSeatbeltBackend(opts SeatbeltOptions) (*seatbeltBackend, error) {
	if opts.Confine == nil {
		opts.Confine = SandboxExec
	}
	if len(opts.Hold) == 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the supervisor binary for holding the init: %w", err)
		}
		opts.Hold = []string{self, HoldArg}
	}
	return &seatbeltBackend{opts: opts}, nil
}

// terminalsInside is false: the supervisor opens a task's terminals (a
// Seatbelt task shares the host's devices).
func (b *seatbeltBackend) terminalsInside() bool { return false }

func (b *seatbeltBackend) create(spec TaskSpec, dir string, stdio Stdio) (int, *os.File, error) {
	pid, err := b.createHeld(spec, dir, stdio)
	return pid, nil, err
}

func (b *seatbeltBackend) exec(initPid int, p *specs.Process, stdio Stdio) (int, *os.File, error) {
	pid, err := b.execConfined(initPid, p, stdio)
	return pid, nil, err
}

func (b *seatbeltBackend) createHeld(spec TaskSpec, _ string, stdio Stdio) (int, error) {
	policy, err := seatbeltPolicy(spec)
	if err != nil {
		return 0, err
	}
	b.policy, b.spec = policy, spec.OCI
	argv, dir, err := b.command(spec.OCI.Process)
	if err != nil {
		return 0, err
	}
	hold, err := b.holdCommand(spec.OCI.Process, argv)
	if err != nil {
		return 0, err
	}
	startR, startW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer startR.Close()
	pid, err := b.spawn(hold, dir, spec.OCI.Process, stdio, startR)
	if err != nil {
		startW.Close()
		return 0, err
	}
	b.mu.Lock()
	b.startW = startW
	b.initPgid, b.groups = pid, []int{pid}
	b.mu.Unlock()
	return pid, nil
}

// command resolves p's program in the root and confines it; it returns
// the command line and the host working dir.
func (b *seatbeltBackend) command(p *specs.Process) ([]string, string, error) {
	if p == nil || len(p.Args) == 0 {
		return nil, "", errorf(KindInvalid, "no process args")
	}
	prog, err := resolveProgram(b.policy.Root, p.Args[0], p.Env)
	if err != nil {
		return nil, "", err
	}
	policy := b.policy
	policy.TTY = p.Terminal
	argv, err := b.opts.Confine(policy, append([]string{prog}, p.Args[1:]...))
	if err != nil {
		return nil, "", errorf(KindInvalid, "%v", err)
	}
	dir := inRoot(b.policy.Root, p.Cwd)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, "", errorf(KindInvalid, "working dir %q: %s is not a directory in the rootfs", p.Cwd, dir)
	}
	return argv, dir, nil
}

// resolveProgram finds name as the workload would: an absolute path in
// the root (system paths from the host, see inRoot), a name through the
// PATH of env (each entry in the root). It names the program when it is
// missing, so create fails clearly instead of the workload at start.
func resolveProgram(root, name string, env []string) (string, error) {
	executable := func(path string) bool {
		fi, err := os.Stat(path)
		return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
	}
	if strings.Contains(name, "/") {
		path := name
		if filepath.IsAbs(name) {
			path = inRoot(root, name)
		}
		if !executable(path) {
			return "", errorf(KindInvalid, "executable %q not found in the rootfs %s", name, root)
		}
		return path, nil
	}
	search := "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			search = v
		}
	}
	for _, d := range filepath.SplitList(search) {
		if filepath.IsAbs(d) {
			if path := inRoot(root, filepath.Join(d, name)); executable(path) {
				return path, nil
			}
		}
	}
	return "", errorf(KindInvalid, "executable %q not found in the PATH %s of the rootfs %s", name, search, root)
}

// spawn starts argv in a session of its own (with p's terminal as its
// controlling terminal when it has one), with p's environment, stdio and
// extra files (fd 3 on).
func (b *seatbeltBackend) spawn(argv []string, dir string, p *specs.Process, stdio Stdio, extra ...*os.File) (int, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	or := func(f *os.File) *os.File {
		if f == nil {
			return null
		}
		return f
	}
	attr := &syscall.SysProcAttr{Setsid: true}
	if p.Terminal {
		attr.Setctty, attr.Ctty = true, 0
	}
	files := append([]*os.File{or(stdio.Stdin), or(stdio.Stdout), or(stdio.Stderr)}, extra...)
	proc, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Dir: dir, Env: p.Env, Files: files, Sys: attr})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", p.Args[0], err)
	}
	pid := proc.Pid
	_ = proc.Release() // reaped by the supervisor's reaper
	return pid, nil
}

func (b *seatbeltBackend) start() (int, error) {
	b.mu.Lock()
	w := b.startW
	b.startW = nil
	b.mu.Unlock()
	if w == nil {
		return 0, errors.New("the init was released already")
	}
	defer w.Close()
	if _, err := w.Write([]byte{1}); err != nil {
		return 0, fmt.Errorf("release the held init: %w", err)
	}
	return 0, nil // the pid is the held init's
}

// exec runs p through the hold too (its rlimits applied there), released
// at once: the start byte is in the pipe before the hold reads it.
func (b *seatbeltBackend) execConfined(_ int, p *specs.Process, stdio Stdio) (int, error) {
	argv, dir, err := b.command(p)
	if err != nil {
		return 0, err
	}
	hold, err := b.holdCommand(p, argv)
	if err != nil {
		return 0, err
	}
	startR, startW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer startR.Close()
	_, err = startW.Write([]byte{1})
	startW.Close()
	if err != nil {
		return 0, err
	}
	pid, err := b.spawn(hold, dir, p, stdio, startR)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.groups = append(b.groups, pid)
	b.mu.Unlock()
	return pid, nil
}

// signalGroups sends sig to every live process group of the task and
// forgets the groups that are gone (so a reused id is never signalled).
// It returns the first failure other than a group being gone.
func (b *seatbeltBackend) signalGroups(sig syscall.Signal) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var first error
	live := b.groups[:0]
	for _, g := range b.groups {
		err := unix.Kill(-g, sig)
		if errors.Is(err, unix.ESRCH) {
			continue
		}
		live = append(live, g)
		if err != nil && first == nil {
			first = fmt.Errorf("signal %d to process group %d: %w", sig, g, err)
		}
	}
	b.groups = live
	return first
}

func (b *seatbeltBackend) freeze(frozen bool) error {
	if frozen {
		return b.signalGroups(syscall.SIGSTOP)
	}
	return b.signalGroups(syscall.SIGCONT)
}

// members are the pids of the task: its process groups' members and their
// descendants (a process that made a group of its own stays counted while
// its parent lives).
func members(table []ProcInfo, groups []int) []int {
	in := map[int]bool{}
	for _, p := range table {
		if slices.Contains(groups, p.Pgid) {
			in[p.Pid] = true
		}
	}
	for grew := true; grew; {
		grew = false
		for _, p := range table {
			if !in[p.Pid] && in[p.PPid] {
				in[p.Pid], grew = true, true
			}
		}
	}
	out := make([]int, 0, len(in))
	for pid := range in {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

func (b *seatbeltBackend) stats() Stats {
	st := Stats{Time: time.Now()}
	if b.opts.Procs == nil {
		return st
	}
	table, err := b.opts.Procs.Table()
	if err != nil {
		return st
	}
	b.mu.Lock()
	groups := slices.Clone(b.groups)
	b.mu.Unlock()
	for _, pid := range members(table, groups) {
		u, err := b.opts.Procs.Use(pid)
		if err != nil {
			continue
		}
		st.Pids++
		st.CPUUsageNanos += uint64(u.CPU)
		st.MemoryBytes += u.Footprint
	}
	b.mu.Lock()
	b.peak = max(b.peak, st.MemoryBytes)
	st.MemoryPeakBytes = b.peak
	b.mu.Unlock()
	return st
}

func (b *seatbeltBackend) signalAll(sig syscall.Signal) { _ = b.signalGroups(sig) }

// killAll kills every group, then continues it: a stopped process dies of
// SIGKILL anyway, SIGCONT only makes the exit prompt everywhere.
func (b *seatbeltBackend) killAll() {
	_ = b.signalGroups(syscall.SIGKILL)
	_ = b.signalGroups(syscall.SIGCONT)
}

func (b *seatbeltBackend) oomKilled() bool { return false }

// cleanup closes the start pipe: a held init that was never started reads
// its end and exits without running anything.
func (b *seatbeltBackend) cleanup() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.startW != nil {
		b.startW.Close()
		b.startW = nil
	}
	return nil
}

func (b *seatbeltBackend) record(st *State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st.Pgid = b.initPgid
	st.Pgids = slices.Clone(b.groups)
}

// rlimitResources are the OCI rlimits a darwin process can have (the
// resources darwin and Linux share).
var rlimitResources = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// holdCommand is the hold's command line for p's confined argv: p's
// rlimits as -rlimit=RESOURCE=SOFT:HARD, its user as -user=UID:GID:GROUPS
// when the supervisor is root (otherwise every process runs as the
// supervisor's user: only root can switch), then "--" and argv.
func (b *seatbeltBackend) holdCommand(p *specs.Process, argv []string) ([]string, error) {
	out := slices.Clone(b.opts.Hold)
	if os.Geteuid() == 0 {
		u, err := b.user(p)
		if err != nil {
			return nil, err
		}
		groups := make([]string, 0, len(u.Sgids))
		for _, g := range u.Sgids {
			groups = append(groups, strconv.Itoa(g))
		}
		out = append(out, fmt.Sprintf("-user=%d:%d:%s", u.Uid, u.Gid, strings.Join(groups, ",")))
	}
	for _, r := range p.Rlimits {
		if _, ok := rlimitResources[r.Type]; !ok {
			return nil, errorf(KindInvalid, "rlimit %s is not available in the darwin sandbox (%s)", r.Type,
				strings.Join(slices.Sorted(maps.Keys(rlimitResources)), ", "))
		}
		if r.Soft > r.Hard {
			return nil, errorf(KindInvalid, "rlimit %s: soft limit %d is above the hard limit %d", r.Type, r.Soft, r.Hard)
		}
		out = append(out, fmt.Sprintf("-rlimit=%s=%d:%d", r.Type, r.Soft, r.Hard))
	}
	return append(append(out, "--"), argv...), nil
}

// user resolves p's user: a name (p.User.Username, or for the init the
// spec's user annotation: "web", "1000:staff") against the rootfs's
// /etc/passwd and /etc/group, else p's numeric ids; additional groups are
// the name's groups and p's.
func (b *seatbeltBackend) user(p *specs.Process) (*user.ExecUser, error) {
	name := p.User.Username
	if name == "" && b.spec != nil && p == b.spec.Process {
		name = b.spec.Annotations[sandbox.AnnotationUser]
	}
	defaults := &user.ExecUser{Uid: int(p.User.UID), Gid: int(p.User.GID), Home: "/"}
	u := defaults
	if name != "" {
		var err error
		u, err = user.GetExecUserPath(name, defaults, filepath.Join(b.policy.Root, "etc", "passwd"), filepath.Join(b.policy.Root, "etc", "group"))
		if err != nil {
			return nil, errorf(KindInvalid, "user %q: %v (looked in the rootfs's /etc/passwd and /etc/group)", name, err)
		}
	}
	for _, g := range p.User.AdditionalGids {
		if !slices.Contains(u.Sgids, int(g)) {
			u.Sgids = append(u.Sgids, int(g))
		}
	}
	return u, nil
}

// setUser switches to "UID:GID:G1,G2,…" (groups first, the uid last).
func setUser(spec string) error {
	f := strings.SplitN(spec, ":", 3)
	if len(f) != 3 {
		return fmt.Errorf("user %q is not UID:GID:GROUPS", spec)
	}
	uid, err1 := strconv.Atoi(f[0])
	gid, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("user %q: %w", spec, err)
	}
	groups := []int{}
	for _, g := range strings.Split(f[2], ",") {
		if g == "" {
			continue
		}
		n, err := strconv.Atoi(g)
		if err != nil {
			return fmt.Errorf("user %q: %w", spec, err)
		}
		groups = append(groups, n)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", groups, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return nil
}

// HoldMain runs `BINARY seatbelt-hold [-rlimit=RESOURCE=SOFT:HARD]...
// [-user=UID:GID:GROUPS] -- PROGRAM ARGS...` and never returns: it waits
// until fd 3 (the start pipe) gives a byte, sets the rlimits and the user
// (in that order: raising a hard limit needs root), then execs PROGRAM with ARGS
// (PROGRAM included as argv[0]) and its own environment; the pipe closing
// without a byte (the task was deleted before start) exits with status 1
// and runs nothing. Failures exit 127 with the reason on stderr (the
// container's log).
func HoldMain(args []string) {
	start := os.NewFile(3, "start")
	var b [1]byte
	n, _ := start.Read(b[:])
	start.Close()
	if n != 1 {
		os.Exit(1)
	}
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "berth: "+format+"\n", a...)
		os.Exit(127)
	}
	var userSpec string
	for len(args) > 0 && args[0] != "--" {
		if u, ok := strings.CutPrefix(args[0], "-user="); ok {
			userSpec, args = u, args[1:]
			continue
		}
		spec, ok := strings.CutPrefix(args[0], "-rlimit=")
		if !ok {
			fail("seatbelt-hold: unknown argument %q", args[0])
		}
		var name string
		var lim syscall.Rlimit
		eq := strings.IndexByte(spec, '=')
		if eq < 0 {
			fail("seatbelt-hold: rlimit %q is not RESOURCE=SOFT:HARD", spec)
		}
		name = spec[:eq]
		if _, err := fmt.Sscanf(spec[eq+1:], "%d:%d", &lim.Cur, &lim.Max); err != nil {
			fail("seatbelt-hold: rlimit %q is not RESOURCE=SOFT:HARD", spec)
		}
		res, ok := rlimitResources[name]
		if !ok {
			fail("seatbelt-hold: unknown rlimit %s", name)
		}
		// syscall's Setrlimit, not x/sys's: it tells the Go runtime not
		// to restore its own RLIMIT_NOFILE at exec.
		if err := syscall.Setrlimit(res, &lim); err != nil {
			fail("set %s to %d:%d: %v", name, lim.Cur, lim.Max, err)
		}
		args = args[1:]
	}
	if userSpec != "" {
		if err := setUser(userSpec); err != nil {
			fail("%v", err)
		}
	}
	if len(args) < 2 {
		fail("seatbelt-hold: no command")
	}
	args = args[1:]
	err := syscall.Exec(args[0], args, os.Environ())
	fmt.Fprintf(os.Stderr, "berth: exec %s: %v\n", args[0], err)
	os.Exit(127)
}
