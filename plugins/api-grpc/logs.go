package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
)

// logReader serves the public Logs service from the output logs the
// lifecycle plugin has its isolation tasks write: Docker json-file lines
// ({"log","stream","time"}) in <lifecycle state dir>/logs/<id>.log, rotated
// to <id>.log.1, .2, …. The lifecycle plugin's state dir is the core's
// convention, <state_dir>/plugins/lifecycle-<name>, beside this plugin's own.
type logReader struct {
	lifecycle lifecycle.Manager
	system    api.System
	// pluginsDir is <state_dir>/plugins.
	pluginsDir string
	// poll is how often a followed log is checked for new output.
	poll time.Duration
}

var _ api.Logs = (*logReader)(nil)

// jsonLogLine is one line of a json-file log.
type jsonLogLine struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// logPath returns the log file of container id.
func (r *logReader) logPath(ctx context.Context, id string) (string, error) {
	ps, err := r.system.Plugins(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		if p.Layer == plugin.LayerLifecycle {
			return filepath.Join(r.pluginsDir, "lifecycle-"+p.Name, "logs", id+".log"), nil
		}
	}
	return "", errdefs.Unavailable("no lifecycle plugin is configured")
}

func (r *logReader) Logs(ctx context.Context, ref string, opts api.LogsOptions, send func(api.LogEntry) error) error {
	c, err := r.lifecycle.Get(ctx, ref)
	if err != nil {
		return err
	}
	path, err := r.logPath(ctx, c.ID)
	if err != nil {
		return err
	}
	if opts.Boot {
		return r.bootLog(ctx, c, bootLogPath(path), opts, send) // bootlog.go
	}
	// The kept output: rotated files (oldest first), then the live one,
	// whose open file is then followed.
	var backlog []api.LogEntry
	keep := func(e api.LogEntry) error {
		backlog = append(backlog, e)
		if opts.Tail >= 0 && len(backlog) > opts.Tail {
			backlog = backlog[1:]
		}
		return nil
	}
	for i := 9; i >= 1; i-- {
		if err := readLogFile(fmt.Sprintf("%s.%d", path, i), keep); err != nil {
			return err
		}
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// Nothing written yet (or the log was never made).
		f = nil
	} else if err != nil {
		return fmt.Errorf("open log of container %s: %w", c.Name, err)
	}
	defer func() {
		if f != nil {
			_ = f.Close()
		}
	}()
	var br *bufio.Reader
	var partial []byte
	if f != nil {
		br = bufio.NewReaderSize(f, 64<<10)
		// A followed log keeps a line still being written for later.
		if partial, err = readLines(br, keep, opts.Follow); err != nil {
			return err
		}
	}
	for _, e := range backlog {
		if err := send(e); err != nil {
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
		// Whether the container still runs is read before the file, so the
		// output it wrote before stopping is read after.
		cur, err := r.lifecycle.Get(ctx, c.ID)
		// A container its restart policy starts again is followed into
		// its next run; one stopped for good (or removed) ends the stream.
		running := err == nil && (cur.State == lifecycle.StateRunning || cur.State == lifecycle.StatePaused ||
			cur.State == lifecycle.StateCreated || cur.Restarting)
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		if f == nil {
			if f, err = os.Open(path); err == nil {
				br = bufio.NewReaderSize(f, 64<<10)
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("open log of container %s: %w", c.Name, err)
			}
		}
		if f != nil {
			if partial, err = readFollow(br, partial, send); err != nil {
				return err
			}
			// Rotated: the path names a new file; the old one was read to its end.
			if fi, err := os.Stat(path); err == nil {
				if ofi, err := f.Stat(); err == nil && !os.SameFile(fi, ofi) {
					_ = f.Close()
					f, partial = nil, nil
					continue
				}
			}
		}
		if !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// readLogFile sends every entry of a complete log file; a missing file has
// none.
func readLogFile(path string, send func(api.LogEntry) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open container log: %w", err)
	}
	defer f.Close()
	_, err = readLines(bufio.NewReaderSize(f, 64<<10), send, false)
	return err
}

// readFollow reads the complete lines available in br, prefixed by the
// unfinished line partial left by the last call, and returns what is left
// unfinished now.
func readFollow(br *bufio.Reader, partial []byte, send func(api.LogEntry) error) ([]byte, error) {
	for {
		line, err := br.ReadBytes('\n')
		partial = append(partial, line...)
		if err == io.EOF {
			return partial, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read container log: %w", err)
		}
		if err := sendLine(partial, send); err != nil {
			return nil, err
		}
		partial = partial[:0]
	}
}

// readLines sends each complete line of br; a last line without its
// newline is sent too unless stopAtPartial.
func readLines(br *bufio.Reader, send func(api.LogEntry) error, stopAtPartial bool) ([]byte, error) {
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 && !stopAtPartial {
				return nil, sendLine(line, send)
			}
			return line, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read container log: %w", err)
		}
		if err := sendLine(line, send); err != nil {
			return nil, err
		}
	}
}

// sendLine decodes one json-file line; a line that is not one (a torn
// write after a crash) is skipped.
func sendLine(line []byte, send func(api.LogEntry) error) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	var l jsonLogLine
	if err := json.Unmarshal(line, &l); err != nil {
		return nil
	}
	return send(api.LogEntry{Stream: l.Stream, Data: []byte(l.Log), Time: l.Time})
}
