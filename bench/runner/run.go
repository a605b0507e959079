package runner

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Status is the outcome of one benchmark.
type Status string

const (
	// StatusMet means the ratio ours/peer was at most the target.
	StatusMet Status = "met"
	// StatusMissed means the ratio ours/peer exceeded the target.
	StatusMissed Status = "missed"
	// StatusSkipped means the benchmark could not run on this machine,
	// typically because a program is missing; it is not a failure.
	StatusSkipped Status = "skipped"
	// StatusFailed means a command of the benchmark failed.
	StatusFailed Status = "failed"
)

// Result is the outcome of running one benchmark.
type Result struct {
	Name        string  `json:"name"`
	Status      Status  `json:"status"`
	Iterations  int     `json:"iterations"`
	Target      float64 `json:"target"`
	OursCommand string  `json:"ours_command"`
	PeerCommand string  `json:"peer_command"`
	// Reason says why the benchmark was skipped or failed.
	Reason string `json:"reason,omitempty"`
	// StderrTail is the end of the failing command's stderr, if any.
	StderrTail string `json:"stderr_tail,omitempty"`
	// Ours, Peer and Ratio are set only when Status is met or missed.
	Ours  *Summary `json:"ours,omitempty"`
	Peer  *Summary `json:"peer,omitempty"`
	Ratio float64  `json:"ratio,omitempty"`
}

// Runner runs benchmarks one after another. Its zero value runs commands
// in the current directory with no time limit.
type Runner struct {
	// Dir is the directory commands run in and relative program paths are
	// resolved against: the repository root. Empty means the current one.
	Dir string
	// Timeout bounds every single command, untimed ones included; zero
	// means no bound.
	Timeout time.Duration
	// Iterations, if positive, overrides every benchmark's own count.
	Iterations int
}

// Run runs b and reports its outcome; it never panics on a failing
// command, so one broken benchmark does not stop the others. Cancelling
// ctx stops the runs, but b's Teardown still runs.
func (r *Runner) Run(ctx context.Context, b Benchmark) Result {
	res := Result{
		Name:        b.Name,
		Iterations:  b.Iterations,
		Target:      b.Target,
		OursCommand: b.Ours.Run.String(),
		PeerCommand: b.Peer.Run.String(),
	}
	if r.Iterations > 0 {
		res.Iterations = r.Iterations
	}
	if err := b.Validate(); err != nil {
		return res.fail(err)
	}
	if reason := r.skipReason(b); reason != "" {
		res.Status, res.Reason = StatusSkipped, reason
		return res
	}
	ex, err := newExecutor(r.Dir, r.Timeout)
	if err != nil {
		return res.fail(err)
	}
	defer ex.close()

	ours, peer, err := measure(ctx, ex, b, res.Iterations)
	if err != nil {
		return res.fail(err)
	}
	o, p := Summarize(ours), Summarize(peer)
	res.Ours, res.Peer, res.Ratio = &o, &p, Ratio(o, p)
	res.Status = StatusMissed
	if res.Ratio <= b.Target {
		res.Status = StatusMet
	}
	return res
}

func (res Result) fail(err error) Result {
	res.Status, res.Reason = StatusFailed, err.Error()
	if ce, ok := errors.AsType[*CommandError](err); ok {
		res.StderrTail = ce.StderrTail
	}
	return res
}

// skipReason says why b cannot run on this machine, or "" if it can.
func (r *Runner) skipReason(b Benchmark) string {
	for _, rc := range b.commands() {
		if err := checkProgram(r.Dir, rc.cmd.Argv[0]); err != nil {
			return fmt.Sprintf("%s: %v", rc.role, err)
		}
	}
	if b.Requires != nil {
		if err := b.Requires(); err != nil {
			return err.Error()
		}
	}
	return ""
}

// role names the side of a benchmark a step runs.
type role string

const (
	roleOurs role = "ours"
	rolePeer role = "peer"
)

// step is one run in a benchmark's schedule; Iteration 0 is the untimed
// warm-up and 1…n are the timed runs.
type step struct {
	Role      role
	Iteration int
}

// schedule returns the order of runs for n timed iterations per side: a
// warm-up of each, then ours and peer alternating, ours first.
func schedule(n int) []step {
	steps := make([]step, 0, 2*(n+1))
	for i := range n + 1 {
		steps = append(steps, step{roleOurs, i}, step{rolePeer, i})
	}
	return steps
}

// measure runs b's setup, schedule and teardown and returns the timed
// samples of each side in run order.
func measure(ctx context.Context, ex *executor, b Benchmark, n int) (ours, peer []time.Duration, err error) {
	defer func() {
		// Teardown must run even when ctx was cancelled by an interrupt;
		// the executor's timeout still bounds it.
		if terr := ex.runAll(context.WithoutCancel(ctx), "teardown", b.Teardown); err == nil {
			err = terr
		}
	}()
	if err := ex.runAll(ctx, "setup", b.Setup); err != nil {
		return nil, nil, err
	}
	for _, s := range schedule(n) {
		side := b.Ours
		if s.Role == rolePeer {
			side = b.Peer
		}
		phase := fmt.Sprintf("%s warm-up", s.Role)
		if s.Iteration > 0 {
			phase = fmt.Sprintf("%s run %d/%d", s.Role, s.Iteration, n)
		}
		d, err := runSide(ctx, ex, phase, side)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case s.Iteration == 0:
		case s.Role == roleOurs:
			ours = append(ours, d)
		default:
			peer = append(peer, d)
		}
	}
	return ours, peer, nil
}

// runSide runs side's Prepare, its timed Run and its Cleanup, and returns
// the time of Run alone. Cleanup runs even if Run failed.
func runSide(ctx context.Context, ex *executor, phase string, side Side) (time.Duration, error) {
	if err := ex.runAll(ctx, phase+" prepare", side.Prepare); err != nil {
		return 0, err
	}
	d, err := ex.run(ctx, phase, side.Run)
	if cerr := ex.runAll(context.WithoutCancel(ctx), phase+" cleanup", side.Cleanup); err == nil {
		err = cerr
	}
	return d, err
}
