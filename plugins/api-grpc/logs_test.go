package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
)

// oneContainer is the part of a lifecycle Manager the log reader uses: Get
// of one container whose state the test sets. (The real lifecycle behind
// this seam is driven by the CLI end-to-end tests.)
type oneContainer struct {
	lifecycle.Manager
	mu sync.Mutex
	c  lifecycle.Container
}

func (o *oneContainer) Get(_ context.Context, ref string) (lifecycle.Container, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ref != o.c.ID && ref != o.c.Name {
		return lifecycle.Container{}, errdefs.NotFound("no container %s", ref)
	}
	return o.c, nil
}

func (o *oneContainer) setState(s lifecycle.State) {
	o.mu.Lock()
	o.c.State = s
	o.mu.Unlock()
}

type lifecyclePlugins struct{ api.System }

func (lifecyclePlugins) Plugins(context.Context) ([]api.PluginStatus, error) {
	return []api.PluginStatus{{Layer: plugin.LayerAPI, Name: "grpc"}, {Layer: plugin.LayerLifecycle, Name: "local"}}, nil
}

func logLine(stream, text string) string {
	return fmt.Sprintf(`{"log":%q,"stream":%q,"time":"2026-01-02T03:04:05.000000006Z"}`+"\n", text, stream)
}

func newTestReader(t *testing.T) (*logReader, *oneContainer, string) {
	dir := t.TempDir()
	lc := &oneContainer{c: lifecycle.Container{ID: "abc123", Name: "web", State: lifecycle.StateStopped}}
	logs := filepath.Join(dir, "lifecycle-local", "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	return &logReader{lifecycle: lc, system: lifecyclePlugins{}, pluginsDir: dir, poll: 10 * time.Millisecond}, lc, filepath.Join(logs, "abc123.log")
}

func collect(t *testing.T, r *logReader, ref string, opts api.LogsOptions) (string, error) {
	var b strings.Builder
	err := r.Logs(context.Background(), ref, opts, func(e api.LogEntry) error {
		fmt.Fprintf(&b, "%s:%s", e.Stream, e.Data)
		if e.Time.Nanosecond() != 6 {
			t.Errorf("entry time %v lost its nanoseconds", e.Time)
		}
		return nil
	})
	return b.String(), err
}

func TestLogsReadsRotatedFilesInOrderAndTails(t *testing.T) {
	r, _, path := newTestReader(t)
	write := func(p string, lines ...string) {
		if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path+".2", logLine("stdout", "one\n"))
	write(path+".1", logLine("stderr", "two\n"), "{torn\n")
	write(path, logLine("stdout", "three\n"), logLine("stdout", "four\n"))

	got, err := collect(t, r, "web", api.LogsOptions{Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	if want := "stdout:one\nstderr:two\nstdout:three\nstdout:four\n"; got != want {
		t.Fatalf("all entries = %q; want %q", got, want)
	}
	got, _ = collect(t, r, "abc123", api.LogsOptions{Tail: 2})
	if want := "stdout:three\nstdout:four\n"; got != want {
		t.Fatalf("tail 2 = %q; want %q", got, want)
	}
	if _, err := collect(t, r, "nosuch", api.LogsOptions{Tail: -1}); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown container: %v; want NotFound", err)
	}
}

func TestLogsFollowUntilTheContainerStops(t *testing.T) {
	r, lc, path := newTestReader(t)
	lc.setState(lifecycle.StateRunning)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(logLine("stdout", "first\n")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- r.Logs(context.Background(), "web", api.LogsOptions{Follow: true, Tail: -1}, func(e api.LogEntry) error {
			got <- string(e.Data)
			return nil
		})
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("entry %q; want %q", g, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no entry %q", want)
		}
	}
	expect("first\n")
	// A line written in two pieces is sent once, whole.
	line := logLine("stdout", "second\n")
	if _, err := f.WriteString(line[:10]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := f.WriteString(line[10:]); err != nil {
		t.Fatal(err)
	}
	expect("second\n")
	// Rotation: the old file is renamed and a new one takes its name.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(logLine("stdout", "third\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("third\n")
	// The last output is sent, then the stream ends with the container.
	lc.setState(lifecycle.StateStopped)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
}
