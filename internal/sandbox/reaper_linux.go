package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReaperName is the base name under which the sandbox init binary runs as
// a container's reaping init (docker run --init): the isolation plugin
// binds the binary at isolation.InitPath (/sbin/berth-init) and sdk/spec
// makes it the process's first argument.
const ReaperName = "berth-init"

// IsReaper says whether argv0 names the reaping init.
func IsReaper(argv0 string) bool { return filepath.Base(argv0) == ReaperName }

// ReaperMain is the reaping init, tini's default behaviour: args are
// "-- COMMAND ARGS…" ("--" optional). It starts COMMAND as its child, in a
// process group of its own (the terminal's foreground group when stdin is
// a terminal), forwards every signal it can catch to that child (not to
// its group), reaps every process reparented to it (it also makes itself
// a child subreaper, so this holds when it is not PID 1), and returns the
// child's exit status: its exit code, or 128+n when signal n killed it;
// 127 when COMMAND is not found, 126 when it cannot be executed. SIGURG is
// not forwarded (the Go runtime preempts goroutines with it).
func ReaperMain(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "berth-init: no command to run (usage: berth-init -- COMMAND [ARG…])")
		return 2
	}
	// Notify before the child exists: nothing sent to us in between is
	// lost (the channel queues it until the child's pid is known).
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "berth-init: become a subreaper:", err)
		}
	}
	pid, code := spawnChild(args)
	if pid == 0 {
		return code
	}
	for {
		if status, done := reap(pid); done {
			return status
		}
		sig := (<-sigs).(syscall.Signal)
		switch sig {
		case unix.SIGCHLD, unix.SIGURG:
		default:
			if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
				fmt.Fprintf(os.Stderr, "berth-init: forward %v to %d: %v\n", sig, pid, err)
			}
		}
	}
}

// spawnChild starts args[0] (looked up in PATH) with the init's stdio and
// environment; on failure it prints why and returns pid 0 and the exit code.
func spawnChild(args []string) (int, int) {
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: %s: %v\n", args[0], err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 0, 127
		}
		return 0, 126
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		// Like tini: the command's group reads the terminal, so it gets
		// the terminal's ^C and job control.
		sys.Foreground, sys.Ctty = true, 0
	}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: sys,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: exec %s: %v\n", args[0], err)
		if errors.Is(err, syscall.ENOENT) {
			return 0, 127
		}
		return 0, 126
	}
	return pid, 0
}

// reap collects every exited child without blocking; done reports that
// the command (pid) was among them, with its exit status.
func reap(pid int) (status int, done bool) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || got <= 0 {
			// Nothing more to collect (ECHILD: no children left).
			return status, done
		}
		if got != pid {
			continue
		}
		switch {
		case ws.Exited():
			status, done = ws.ExitStatus(), true
		case ws.Signaled():
			status, done = 128+int(ws.Signal()), true
		}
	}
}
