package supervisor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/sandbox/seatbelt"
)

// darwinBackend confines darwin-native workloads with Seatbelt: every
// process runs under /usr/bin/sandbox-exec with the task's profile, in one
// process group, which pause stops and resume continues. There is no
// mount namespace: the rootfs is a directory (an APFS clone) the workload
// sees at its host path.
type darwinBackend struct {
	policy seatbelt.Policy
	spec   *specs.Spec
	stdio  Stdio
	pgid   int
}

func newBackend(string, string) (backend, error) { return &darwinBackend{}, nil }

func (b *darwinBackend) create(spec TaskSpec, _ string, stdio Stdio) (int, error) {
	p, err := seatbeltPolicy(spec)
	if err != nil {
		return 0, err
	}
	b.policy, b.spec, b.stdio = p, spec.OCI, stdio
	// The process starts at start: sandbox-exec cannot hold a process
	// between its setup and the workload.
	return 0, nil
}

// command resolves p's program and working dir inside the root.
func (b *darwinBackend) command(p *specs.Process) ([]string, string, error) {
	argv, err := seatbelt.Command(b.policy, append([]string{inRoot(b.policy.Root, p.Args[0])}, p.Args[1:]...))
	if err != nil {
		return nil, "", err
	}
	return argv, inRoot(b.policy.Root, p.Cwd), nil
}

func (b *darwinBackend) spawn(p *specs.Process, stdio Stdio, pgid int) (int, error) {
	argv, dir, err := b.command(p)
	if err != nil {
		return 0, err
	}
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
	attr := &syscall.SysProcAttr{Setpgid: true, Pgid: pgid}
	if p.Terminal {
		attr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	proc, err := os.StartProcess(seatbelt.SandboxExec, argv, &os.ProcAttr{Dir: dir, Env: p.Env,
		Files: []*os.File{or(stdio.Stdin), or(stdio.Stdout), or(stdio.Stderr)}, Sys: attr})
	if err != nil {
		return 0, fmt.Errorf("start %s under sandbox-exec: %w", p.Args[0], err)
	}
	pid := proc.Pid
	_ = proc.Release()
	return pid, nil
}

func (b *darwinBackend) start() (int, error) {
	pid, err := b.spawn(b.spec.Process, b.stdio, 0)
	if err != nil {
		return 0, err
	}
	b.pgid = pid
	return pid, nil
}

func (b *darwinBackend) exec(_ int, p *specs.Process, stdio Stdio) (int, error) {
	if b.pgid == 0 {
		return 0, errors.New("the task has not started")
	}
	if p.Terminal {
		return 0, errorf(KindInvalid, "a terminal for an exec is not supported by the darwin sandbox yet")
	}
	return b.spawn(p, stdio, b.pgid)
}

func (b *darwinBackend) freeze(frozen bool) error {
	sig := syscall.SIGCONT
	if frozen {
		sig = syscall.SIGSTOP
	}
	if err := syscall.Kill(-b.pgid, sig); err != nil {
		return fmt.Errorf("signal process group %d: %w", b.pgid, err)
	}
	return nil
}

func (b *darwinBackend) stats() Stats { return Stats{Time: time.Now()} }

func (b *darwinBackend) signalAll(sig syscall.Signal) {
	if b.pgid > 0 {
		_ = syscall.Kill(-b.pgid, sig)
	}
}

func (b *darwinBackend) killAll() {
	if b.pgid > 0 {
		_ = syscall.Kill(-b.pgid, syscall.SIGKILL)
		_ = syscall.Kill(-b.pgid, syscall.SIGCONT)
	}
}

func (b *darwinBackend) oomKilled() bool  { return false }
func (b *darwinBackend) cleanup() error   { return nil }
func (b *darwinBackend) record(st *State) { st.Pgid = b.pgid }
