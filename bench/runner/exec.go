package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// stderrTailBytes bounds how much of a failed command's stderr is kept.
const stderrTailBytes = 2048

// CommandError is a command of a benchmark that could not start, exited
// non-zero or timed out.
type CommandError struct {
	// Phase says where in the benchmark it happened, e.g. "setup" or
	// "ours run 3/20".
	Phase   string
	Command Command
	// Err is the underlying error, typically an *exec.ExitError.
	Err error
	// StderrTail is the end of what the command wrote to stderr.
	StderrTail string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Phase, e.Command, e.Err)
}

func (e *CommandError) Unwrap() error { return e.Err }

// executor runs commands one at a time in a fixed directory.
//
// A failed command's stderr is kept through a scratch file rather than a
// pipe: the child writes straight to it, so no copying goroutine runs
// during a timed run, and a child that leaves a daemon (a shim, say)
// holding stderr open cannot make the wait hang.
type executor struct {
	dir     string
	timeout time.Duration
	stderr  *os.File
}

// newExecutor returns an executor whose scratch file lives in the system
// temporary directory; the caller must close it.
func newExecutor(dir string, timeout time.Duration) (*executor, error) {
	f, err := os.CreateTemp("", "berth-bench-stderr-*")
	if err != nil {
		return nil, fmt.Errorf("create scratch file for stderr: %w", err)
	}
	return &executor{dir: dir, timeout: timeout, stderr: f}, nil
}

func (e *executor) close() {
	e.stderr.Close()
	os.Remove(e.stderr.Name())
}

// run runs c to completion and returns its wall-clock time, from just
// before the process is started to just after it is reaped. Stdin and
// stdout are the null device. On failure the error is a *CommandError.
func (e *executor) run(ctx context.Context, phase string, c Command) (time.Duration, error) {
	if e.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.timeout)
		defer cancel()
	}
	if err := e.resetStderr(); err != nil {
		return 0, &CommandError{Phase: phase, Command: c, Err: err}
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = e.dir
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stderr = e.stderr
	cmd.WaitDelay = time.Second

	start := time.Now()
	err := cmd.Start()
	if err == nil {
		err = cmd.Wait()
	}
	elapsed := time.Since(start)
	if err == nil {
		return elapsed, nil
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("no exit within the %v timeout (raise it if that is expected): %w", e.timeout, err)
	case ctx.Err() != nil:
		err = fmt.Errorf("interrupted: %w", err)
	}
	return elapsed, &CommandError{Phase: phase, Command: c, Err: err, StderrTail: e.stderrTail()}
}

// runAll runs cmds in order, stopping at the first failure.
func (e *executor) runAll(ctx context.Context, phase string, cmds []Command) error {
	for _, c := range cmds {
		if _, err := e.run(ctx, phase, c); err != nil {
			return err
		}
	}
	return nil
}

func (e *executor) resetStderr() error {
	if err := e.stderr.Truncate(0); err != nil {
		return fmt.Errorf("reset stderr scratch file: %w", err)
	}
	if _, err := e.stderr.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("reset stderr scratch file: %w", err)
	}
	return nil
}

// stderrTail returns at most the last stderrTailBytes of the scratch file,
// starting at a line boundary when it had to cut, without trailing newlines.
func (e *executor) stderrTail() string {
	fi, err := e.stderr.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-stderrTailBytes, 0)
	buf := make([]byte, fi.Size()-off)
	n, _ := e.stderr.ReadAt(buf, off)
	tail := string(buf[:n])
	if off > 0 {
		if i := strings.IndexByte(tail, '\n'); i >= 0 {
			tail = tail[i+1:]
		}
	}
	return strings.TrimRight(tail, "\n")
}

// checkProgram reports why argv0 cannot be executed from dir, or nil.
func checkProgram(dir, argv0 string) error {
	if !strings.Contains(argv0, "/") {
		if _, err := exec.LookPath(argv0); err != nil {
			return fmt.Errorf("%s not found in PATH", argv0)
		}
		return nil
	}
	path := argv0
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s not found%s", argv0, buildHint(argv0))
	case err != nil:
		return err
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not an executable file", argv0)
	}
	return nil
}

// buildHint tells the user how to get one of our binaries.
func buildHint(argv0 string) string {
	if strings.HasPrefix(filepath.Clean(argv0), "bin/") {
		return " (run make build)"
	}
	return ""
}
