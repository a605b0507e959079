package sandbox

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Prestarted is a container init started ahead of its Create, so a Create
// does not wait for the init binary's exec and Go runtime start (hundreds
// of milliseconds under an emulated CPU). It was cloned with the
// namespaces of the spec given to Prestart, all new and used by nothing
// else, and it does nothing but wait for its config: the Create that takes
// it joins it to the container's cgroup before it sets anything up, as
// for an init started by Create (memory it touched before the join stays
// charged where it started, and goes at its exec).
type Prestarted struct {
	proc  *os.Process
	pid   int // proc.Pid, which Release (by Create's caller) clears
	sock  *os.File
	flags uintptr
	used  bool
}

// Prestart starts an init for a later Create of a spec with the same
// namespaces as s, with stdio as its fds 0-2 (a Create that takes it
// ignores CreateOptions.Stdio). A user namespace cannot be prestarted (its
// id maps belong to the container). The caller owns it: a Create takes
// it, or Discard kills it; the caller reaps the process either way.
func (l *Launcher) Prestart(s *specs.Spec, stdio Stdio) (*Prestarted, error) {
	attr, _, err := cloneAttr(s)
	if err != nil {
		return nil, err
	}
	if attr.Cloneflags&unix.CLONE_NEWUSER != 0 {
		return nil, errors.New("prestart: a user namespace cannot be prestarted")
	}
	parent, child, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer child.Close()
	proc, err := l.start(stdio, []*os.File{child}, []string{EnvInitSock + "=3"}, attr)
	if err != nil {
		parent.Close()
		return nil, err
	}
	return &Prestarted{proc: proc, pid: proc.Pid, sock: parent, flags: attr.Cloneflags}, nil
}

// Pid is the prestarted init's process id.
func (p *Prestarted) Pid() int { return p.pid }

// Matches reports whether s asks for the namespaces p was cloned with.
func (p *Prestarted) Matches(s *specs.Spec) bool {
	if p == nil {
		return false
	}
	attr, _, err := cloneAttr(s)
	return err == nil && attr.Cloneflags == p.flags
}

// Usable reports whether a Create of s can take p: it Matches s and is
// alive and still waiting for its config (its socket has no hang-up and
// nothing to read). Not safe for concurrent use with Create or Discard.
func (p *Prestarted) Usable(s *specs.Spec) bool {
	if p == nil || p.used || !p.Matches(s) {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(p.sock.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	if err != nil || n != 0 {
		return false // readable or hung up: it exited (or misbehaves)
	}
	return p.proc.Signal(syscall.Signal(0)) == nil // a pidfd: no pid reuse
}

// Discard kills p unless a Create took it. The caller reaps it.
func (p *Prestarted) Discard() {
	if p == nil || p.used {
		return
	}
	p.used = true
	_ = p.proc.Signal(syscall.SIGKILL)
	p.sock.Close()
}

// take hands p to the Create of s.
func (p *Prestarted) take(attr *syscall.SysProcAttr) (*os.Process, *os.File, error) {
	if p.used {
		return nil, nil, errors.New("the prestarted init was already used or discarded")
	}
	if attr.Cloneflags != p.flags || attr.Cloneflags&unix.CLONE_NEWUSER != 0 {
		return nil, nil, fmt.Errorf("the prestarted init has namespaces %#x, the spec asks for %#x", p.flags, attr.Cloneflags)
	}
	p.used = true
	return p.proc, p.sock, nil
}
