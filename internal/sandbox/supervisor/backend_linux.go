package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
)

// linuxBackend runs the task in namespaces and cgroups (internal/sandbox).
type linuxBackend struct {
	launcher  *sandbox.Launcher
	cg        *sandbox.Cgroup
	container *sandbox.Container
	spec      *specs.Spec
}

// newBackend prepares the init binary; the supervisor becomes a child
// subreaper, since exec'd processes are reparented to it.
func newBackend(initPath, seccompCache string) (backend, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a child subreaper: %w", err)
	}
	l, err := sandbox.NewLauncher(initPath)
	if err != nil {
		return nil, err
	}
	l.SeccompCacheDir = seccompCache
	return &linuxBackend{launcher: l}, nil
}

// terminalsInside is true: a process opens its terminal in the
// container's devpts and the sandbox hands the master back.
func (b *linuxBackend) terminalsInside() bool { return true }

func (b *linuxBackend) create(spec TaskSpec, dir string, stdio Stdio) (int, *os.File, error) {
	cgPath := spec.Placement.CgroupPath
	if cgPath == "" {
		cgPath = "berth-sandbox/" + spec.ID
	}
	cg, err := sandbox.OpenCgroup(cgPath, true)
	if err != nil {
		return 0, nil, fmt.Errorf("cgroup %s: %w", cgPath, err)
	}
	b.cg, b.spec = cg, spec.OCI
	rootDir := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return 0, nil, err
	}
	c, err := b.launcher.Create(sandbox.CreateOptions{Spec: spec.OCI, RootDir: rootDir, Rootfs: spec.Rootfs, Cgroup: cg,
		Stdio: sandbox.Stdio{Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr}})
	if err != nil {
		return 0, nil, err
	}
	b.container = c
	pid := c.Process.Pid
	_ = c.Process.Release() // reaped by the supervisor's reaper
	return pid, c.Console, nil
}

func (b *linuxBackend) start() (int, error) {
	if err := b.container.Start(); err != nil {
		return 0, err
	}
	return 0, nil // the pid is the created init's
}

func (b *linuxBackend) exec(initPid int, p *specs.Process, stdio Stdio) (int, *os.File, error) {
	proc, err := b.launcher.Exec(sandbox.ExecOptions{Pid: initPid, Spec: b.spec, Process: p, Cgroup: b.cg,
		Stdio: sandbox.Stdio{Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr}})
	if err != nil {
		return 0, nil, err
	}
	pid := proc.Pid
	_ = proc.Release()
	return pid, proc.Console, nil
}

func (b *linuxBackend) freeze(frozen bool) error {
	if frozen {
		return b.cg.Freeze()
	}
	return b.cg.Thaw()
}

func (b *linuxBackend) stats() Stats { return b.cg.Stats() }

func (b *linuxBackend) signalAll(sig syscall.Signal) {
	for _, pid := range b.cg.Pids() {
		_ = unix.Kill(pid, sig)
	}
}

func (b *linuxBackend) killAll() {
	if b.cg != nil {
		b.cg.Kill()
	}
}

// oomKilled reports whether the memory cgroup saw an OOM kill.
func (b *linuxBackend) oomKilled() bool {
	dir, ok := b.cg.V1["memory"]
	if !ok {
		return false
	}
	data, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			return v != "0"
		}
	}
	return false
}

func (b *linuxBackend) cleanup() error {
	_ = b.launcher.Close()
	if b.cg == nil {
		return nil
	}
	return b.cg.Remove()
}

func (b *linuxBackend) record(st *State) { st.Cgroup = b.cg }
