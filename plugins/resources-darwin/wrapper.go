package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// wrapCommand is the first argument that makes this binary the wrapper.
const wrapCommand = "wrap"

// wrapOptions are what the wrapper applies to itself before it execs the
// workload; all of it is inherited over exec and fork.
type wrapOptions struct {
	group string
	// nice is the CPU priority (setpriority); 0 leaves it.
	nice int
	// background puts the process in the background band (darwin's
	// PRIO_DARWIN_BG: lower CPU, disk and network priority).
	background bool
	// ioThrottle sets the disk IO policy to throttled (darwin's
	// setiopolicy_np IOPOL_THROTTLE; Linux's idle IO class).
	ioThrottle bool
	// rlimits, 0 = inherit: CPU seconds, open files, file size in bytes,
	// processes of the user (per user on darwin, not per container).
	cpuSeconds, nofile, fsize, nproc uint64
}

// runWrapper parses args ("[flags] -- command args..."), applies the
// options to this process and execs the command; it returns only on
// error, with the exit status to use (126 as a shell does when a command
// cannot run).
func runWrapper(args []string, stderr io.Writer) int {
	var o wrapOptions
	fs := flag.NewFlagSet(wrapCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.group, "group", "", "the resources group (for messages)")
	fs.IntVar(&o.nice, "nice", 0, "nice value (-20..19)")
	fs.BoolVar(&o.background, "background", false, "background CPU/IO band")
	fs.BoolVar(&o.ioThrottle, "io-throttle", false, "throttled disk IO policy")
	fs.Uint64Var(&o.cpuSeconds, "rlimit-cpu", 0, "RLIMIT_CPU in seconds")
	fs.Uint64Var(&o.nofile, "rlimit-nofile", 0, "RLIMIT_NOFILE")
	fs.Uint64Var(&o.fsize, "rlimit-fsize", 0, "RLIMIT_FSIZE in bytes")
	fs.Uint64Var(&o.nproc, "rlimit-nproc", 0, "RLIMIT_NPROC (per user)")
	if err := fs.Parse(args); err != nil {
		return 126
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintf(stderr, "resources-darwin wrap: no command given (usage: wrap [flags] -- command args...)\n")
		return 126
	}
	if o.nice < -20 || o.nice > 19 {
		fmt.Fprintf(stderr, "resources-darwin wrap: -nice %d is outside -20..19\n", o.nice)
		return 126
	}
	if err := apply(o); err != nil {
		fmt.Fprintf(stderr, "resources-darwin wrap (group %s): %v\n", o.group, err)
		return 126
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(stderr, "resources-darwin wrap (group %s): %v\n", o.group, err)
		return 127
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(stderr, "resources-darwin wrap (group %s): exec %s: %v\n", o.group, path, err)
	return 126
}

// apply sets up this process: its own process group (so the engine finds
// every descendant that stays in it), rlimits, priority and IO policy.
func apply(o wrapOptions) error {
	if err := unix.Setpgid(0, 0); err != nil && !errors.Is(err, unix.EPERM) {
		// EPERM: already a session leader, which leads its group too.
		return fmt.Errorf("setpgid: %w", err)
	}
	for _, rl := range []struct {
		name     string
		resource int
		value    uint64
	}{
		{"RLIMIT_CPU", unix.RLIMIT_CPU, o.cpuSeconds},
		{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, o.nofile},
		{"RLIMIT_FSIZE", unix.RLIMIT_FSIZE, o.fsize},
		{"RLIMIT_NPROC", unix.RLIMIT_NPROC, o.nproc},
	} {
		if rl.value == 0 {
			continue
		}
		if err := unix.Setrlimit(rl.resource, &unix.Rlimit{Cur: rl.value, Max: rl.value}); err != nil {
			return fmt.Errorf("setrlimit %s = %d: %w", rl.name, rl.value, err)
		}
	}
	if o.nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, o.nice); err != nil {
			return fmt.Errorf("setpriority nice %d: %w", o.nice, err)
		}
	}
	return applyPolicy(o)
}
