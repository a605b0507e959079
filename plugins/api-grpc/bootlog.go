package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// bootLogPath is the boot log beside the output log <dir>/<id>.log: the
// file the lifecycle plugin names in the task's isolation.AnnotationBootLog,
// <dir>/<id>.boot.log, which a mode that boots a kernel (vm) appends its
// guest console to.
func bootLogPath(logPath string) string {
	return strings.TrimSuffix(logPath, ".log") + ".boot.log"
}

// bootLog sends the lines of container c's boot log at path (plain console
// text, not json-file), the last opts.Tail of them first, then with Follow
// the new ones until the container stops. A missing file is NotFound naming
// the container and its mode.
func (r *logReader) bootLog(ctx context.Context, c lifecycle.Container, path string, opts api.LogsOptions, send func(api.LogEntry) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		mode := c.Isolation
		if mode == "" {
			mode = "default"
		}
		return errdefs.NotFound("container %s has no boot log (isolation mode %s)", c.Name, mode)
	}
	if err != nil {
		return fmt.Errorf("open the boot log of container %s: %w", c.Name, err)
	}
	defer f.Close()
	entry := func(line []byte) api.LogEntry {
		return api.LogEntry{Stream: api.StreamConsole, Data: line}
	}
	br := bufio.NewReaderSize(f, 64<<10)
	// The backlog: complete lines (and, without Follow, a last unfinished
	// one), tailed.
	var backlog [][]byte
	var partial []byte
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			partial = line
			break
		}
		if err != nil {
			return fmt.Errorf("read the boot log of container %s: %w", c.Name, err)
		}
		backlog = append(backlog, line)
		if opts.Tail >= 0 && len(backlog) > opts.Tail {
			backlog = backlog[1:]
		}
	}
	if !opts.Follow && len(partial) > 0 {
		backlog = append(backlog, partial)
		if opts.Tail >= 0 && len(backlog) > opts.Tail {
			backlog = backlog[1:]
		}
		partial = nil
	}
	for _, l := range backlog {
		if err := send(entry(l)); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	poll := r.poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	for {
		// The state is read before the file, so what the guest wrote
		// before it stopped is read after.
		cur, err := r.lifecycle.Get(ctx, c.ID)
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		running := err == nil && (cur.State == lifecycle.StateRunning || cur.State == lifecycle.StatePaused ||
			cur.State == lifecycle.StateCreated || cur.Restarting)
		for {
			line, err := br.ReadBytes('\n')
			partial = append(partial, line...)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read the boot log of container %s: %w", c.Name, err)
			}
			if err := send(entry(partial)); err != nil {
				return err
			}
			partial = nil
		}
		if !running {
			if len(partial) > 0 {
				return send(entry(partial))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}
