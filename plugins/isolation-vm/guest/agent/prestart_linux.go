//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/tasklog"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/spec"
)

// A container's init is the sandbox init binary; under an emulated CPU its
// exec and Go runtime start take hundreds of milliseconds. The agent keeps
// one init prestarted (sandbox.Prestart; namespaces: warmNamespaces), with
// its own stdout/stderr pipes, and a Create that fits (those namespaces,
// no terminal, no stdin, a hostname of its own) takes it. It is started at
// boot; a Create that took none starts the next one. So a VM with one
// container (the usual case) keeps no idle init beside it: in a small
// guest (memory limit + 128 MiB) an idle init refilled after the take
// starved a memory-limited container's OOM test. A VM template's
// guest carries it, so a template start gets it warm too. Anything else,
// or a prestarted init that died, takes the cold path.
//
// The prestarted init's mount namespace is a copy of the agent's made
// before the container's rootfs was mounted: RunDir is a shared mount, so
// the agent's mounts under it propagate there (the init makes everything
// a slave before it mounts anything, so nothing comes back), and Create
// checks the rootfs is the same there before it takes it.

// warmNamespaces are the namespaces of the first prestarted init: Docker's
// defaults, without a network namespace when the guest has a NIC (a
// container on a bridge network uses the VM's own stack; without a NIC it
// is --network none, its own namespace). A Create that asks for others
// gets its init cold and makes the next prestarted init like its own.
func warmNamespaces() []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}
	if !hasNIC() {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	return ns
}

// hasNIC reports whether the machine has a network interface besides lo.
func hasNIC() bool {
	entries, _ := os.ReadDir("/sys/class/net")
	for _, e := range entries {
		if e.Name() != "lo" {
			return true
		}
	}
	return false
}

// warmInit is the prestarted init and the agent's ends of its pipes.
type warmInit struct {
	p              *sandbox.Prestarted
	stdout, stderr *os.File
}

// prestarter owns the agent's prestarted init.
type prestarter struct {
	mu       sync.Mutex
	warm     *warmInit
	starting bool
	closed   bool
	// running counts the prestarting goroutines (stopPrestart waits).
	running sync.WaitGroup
	// shared is the RunDir bind mount made shared (unmounted at close).
	shared string
	// spec holds the namespaces the next prestarted init gets.
	spec *specs.Spec
}

// startPrestart makes RunDir a shared mount and starts the first
// prestarted init in the background. Without the shared mount there is
// no prestarting (logged).
func (a *Agent) startPrestart() {
	dir := a.cfg.RunDir
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		a.log.Warn("no prestarted container inits: bind the run dir", "dir", dir, "error", err)
		return
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		a.log.Warn("no prestarted container inits: make the run dir shared", "dir", dir, "error", err)
		return
	}
	a.pre.mu.Lock()
	a.pre.shared = dir
	a.pre.spec = &specs.Spec{Process: &specs.Process{Args: []string{"-"}}, Linux: &specs.Linux{Namespaces: warmNamespaces()}}
	a.pre.mu.Unlock()
	a.refillPrestart()
}

// precompileSeccomp compiles Docker's default seccomp profile (sdk/spec's,
// what the host's specs carry) in the background, so the first container's
// init gets the program instead of decoding and compiling the profile (a
// VM template carries it too). Any other profile is compiled by its init.
func (a *Agent) precompileSeccomp() {
	s, err := spec.Build(spec.ImageConfig{Cmd: []string{"true"}}, lifecycle.Config{}, spec.Extra{ContainerID: "precompile"})
	if err != nil || s.Linux == nil || s.Linux.Seccomp == nil {
		a.log.Debug("no default seccomp profile to precompile", "error", err)
		return
	}
	a.pre.mu.Lock()
	a.pre.running.Add(1)
	a.pre.mu.Unlock()
	go func() {
		defer a.pre.running.Done()
		if err := a.launcher.Precompile(s.Linux.Seccomp); err != nil {
			a.log.Warn("precompile the default seccomp profile", "error", err)
		}
	}()
}

// refillPrestart starts a prestarted init in the background unless one is
// there or starting.
func (a *Agent) refillPrestart() {
	a.pre.mu.Lock()
	if a.pre.shared == "" || a.pre.closed || a.pre.starting || a.pre.warm != nil {
		a.pre.mu.Unlock()
		return
	}
	a.pre.starting = true
	a.pre.running.Add(1)
	spec := a.pre.spec
	a.pre.mu.Unlock()
	go func() {
		defer a.pre.running.Done()
		w, err := a.prestartOne(spec)
		a.pre.mu.Lock()
		a.pre.starting = false
		if err == nil && a.pre.closed {
			a.pre.mu.Unlock()
			a.discardWarm(w, true)
			return
		}
		if err == nil {
			a.pre.warm = w
		}
		a.pre.mu.Unlock()
		if err != nil {
			a.log.Warn("prestart a container init", "error", err)
		} else {
			a.log.Debug("container init prestarted", "pid", w.p.Pid())
		}
	}()
}

func (a *Agent) prestartOne(spec *specs.Spec) (*warmInit, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	p, err := a.launcher.Prestart(spec, sandbox.Stdio{Stdout: outW, Stderr: errW})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	return &warmInit{p: p, stdout: outR, stderr: errR}, nil
}

// takePrestarted returns the prestarted init for a Create of spec with its
// rootfs at rootDir, or nil (cold path). A dead one is discarded and
// replaced.
func (a *Agent) takePrestarted(spec *specs.Spec, rootDir string, openStdin bool) *warmInit {
	if spec.Process.Terminal || openStdin {
		return nil
	}
	// The prestarted init's UTS namespace is a copy of the guest's from
	// before any SetHostname: the container must set its own.
	if spec.Hostname == "" {
		return nil
	}
	a.pre.mu.Lock()
	w := a.pre.warm
	if w != nil && !w.p.Matches(spec) {
		// Prestart the next like this one (unless it cannot be).
		if !hasNamespace(spec, specs.UserNamespace) && spec.Linux != nil {
			a.pre.warm = nil
			a.pre.spec = &specs.Spec{Process: &specs.Process{Args: []string{"-"}},
				Linux: &specs.Linux{Namespaces: slices.Clone(spec.Linux.Namespaces)}}
			a.pre.mu.Unlock()
			a.discardWarm(w, false)
			a.refillPrestart()
			return nil
		}
		w = nil
	}
	if w == nil {
		a.pre.mu.Unlock()
		return nil
	}
	a.pre.warm = nil
	a.pre.mu.Unlock()
	if !w.p.Usable(spec) {
		a.log.Warn("the prestarted container init is gone; starting one cold", "pid", w.p.Pid())
		a.discardWarm(w, false)
		a.refillPrestart()
		return nil
	}
	mine, err1 := os.Stat(rootDir)
	theirs, err2 := os.Stat(filepath.Join("/proc", strconv.Itoa(w.p.Pid()), "root", rootDir))
	if err1 != nil || err2 != nil || !os.SameFile(mine, theirs) {
		a.log.Warn("the container's rootfs is not in the prestarted init's mount namespace; starting one cold",
			"pid", w.p.Pid(), "error", firstErr(err1, err2))
		a.discardWarm(w, false)
		a.refillPrestart()
		return nil
	}
	return w
}

// discardWarm kills w and reaps it: now (wait, when the agent closes and
// its reaper stops) or through the reaper.
func (a *Agent) discardWarm(w *warmInit, wait bool) {
	w.p.Discard()
	w.stdout.Close()
	w.stderr.Close()
	if !wait {
		a.register(newProc(nil, "", false), w.p.Pid())
		return
	}
	// ECHILD when the reaper (ReapAll) got it first.
	var ws unix.WaitStatus
	_, _ = unix.Wait4(w.p.Pid(), &ws, 0, nil)
}

// stopPrestart discards the prestarted init and undoes the shared mount.
func (a *Agent) stopPrestart() {
	a.pre.mu.Lock()
	a.pre.closed = true
	a.pre.mu.Unlock()
	a.pre.running.Wait()
	a.pre.mu.Lock()
	w, shared := a.pre.warm, a.pre.shared
	a.pre.warm, a.pre.shared = nil, ""
	a.pre.mu.Unlock()
	if w != nil {
		a.discardWarm(w, true)
	}
	if shared != "" {
		if err := unix.Unmount(shared, unix.MNT_DETACH); err != nil {
			a.log.Warn("unmount the shared run dir", "dir", shared, "error", err)
		}
	}
}

// pumpFrom reads p's output from the prestarted init's pipes.
func (p *proc) pumpFrom(stdout, stderr *os.File) {
	done := make(chan struct{})
	go func() { p.pump(stdout, tasklog.Stdout); done <- struct{}{} }()
	go func() { p.pump(stderr, tasklog.Stderr); <-done; close(p.outputDone) }()
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	return s.Linux != nil && slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
}
