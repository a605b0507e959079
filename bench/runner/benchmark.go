// Package runner runs Berth's side-by-side benchmarks. Each benchmark times
// one of our commands against a peer tool's command (runc, ctr, skopeo,
// umoci, bare qemu…) in the same process, interleaving the two so that
// machine drift hits both equally, and judges the ratio of their medians
// against a target.
//
// The package prints nothing and logs nothing: Run returns a Result,
// WriteTable renders results for people and WriteReport for machines.
package runner

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Command is one process to run to completion.
type Command struct {
	// Argv is the program and its arguments. A program without a slash is
	// looked up in PATH; one with a slash is a path, relative to the
	// Runner's Dir (the repository root) unless absolute.
	Argv []string
	// Env holds extra KEY=VALUE pairs added to the runner's own environment.
	Env []string
}

// Cmd returns a Command running argv with the runner's environment.
func Cmd(argv ...string) Command { return Command{Argv: argv} }

// String renders the command as a shell-like line for tables and errors.
// It is for people, not for a shell to parse.
func (c Command) String() string {
	parts := make([]string, 0, len(c.Env)+len(c.Argv))
	parts = append(parts, c.Env...)
	for _, a := range c.Argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Side is one half of a benchmark: the timed command, and the untimed
// commands that must run around every run of it (warm-up included).
type Side struct {
	// Run is the command whose wall-clock time is measured.
	Run Command
	// Prepare runs, in order and untimed, before each run of Run.
	Prepare []Command
	// Cleanup runs, in order and untimed, after each run of Run, even one
	// that failed, so that state such as a created container is removed.
	Cleanup []Command
}

// Benchmark is one named comparison of our command against a peer's.
//
// The runner executes, for n iterations:
//
//	Setup…
//	ours warm-up, peer warm-up            (untimed)
//	ours 1, peer 1, ours 2, peer 2, … ours n, peer n
//	Teardown…
//
// where every ours/peer run is wrapped in that side's Prepare and Cleanup.
// Teardown runs whenever Setup was started, even after a failure or an
// interrupt, so a benchmark must not leave state behind on any path.
type Benchmark struct {
	// Name identifies the benchmark for -run and in results: lowercase
	// letters, digits and dashes, unique in the list.
	Name string
	// Description says, in one line, what is compared and why it matters.
	Description string
	// Ours is the Berth side; Peer is the tool it is measured against.
	Ours, Peer Side
	// Setup runs once, untimed, before the warm-ups.
	Setup []Command
	// Teardown runs once, untimed, after the last run.
	Teardown []Command
	// Requires, if set, reports why the benchmark cannot run on this
	// machine (for example "needs root"); a non-nil error skips it.
	// Missing programs are detected without it.
	Requires func() error
	// Target is the largest acceptable ratio of our median to the peer's:
	// 1.2 means "at most 20% slower than the peer".
	Target float64
	// Iterations is the number of timed runs per side.
	Iterations int
}

var namePattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Validate reports every way in which b is not a well-formed benchmark.
func (b Benchmark) Validate() error {
	var errs []error
	if !namePattern.MatchString(b.Name) {
		errs = append(errs, fmt.Errorf("name %q must be lowercase letters, digits and single dashes", b.Name))
	}
	if b.Target <= 0 {
		errs = append(errs, fmt.Errorf("target %v must be a positive ratio ours/peer, e.g. 1.2", b.Target))
	}
	if b.Iterations < 1 {
		errs = append(errs, fmt.Errorf("iterations %d must be at least 1", b.Iterations))
	}
	for _, rc := range b.commands() {
		if len(rc.cmd.Argv) == 0 || rc.cmd.Argv[0] == "" {
			errs = append(errs, fmt.Errorf("%s command has no program", rc.role))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("benchmark %q: %w", b.Name, err)
	}
	return nil
}

// roleCommand is a command labelled with the part it plays in a benchmark.
type roleCommand struct {
	role string
	cmd  Command
}

// commands lists every command b may run, labelled, in execution order.
func (b Benchmark) commands() []roleCommand {
	var out []roleCommand
	add := func(role string, cmds ...Command) {
		for _, c := range cmds {
			out = append(out, roleCommand{role, c})
		}
	}
	add("setup", b.Setup...)
	for _, s := range []struct {
		name string
		side Side
	}{{"ours", b.Ours}, {"peer", b.Peer}} {
		add(s.name+" prepare", s.side.Prepare...)
		add(s.name, s.side.Run)
		add(s.name+" cleanup", s.side.Cleanup...)
	}
	add("teardown", b.Teardown...)
	return out
}
