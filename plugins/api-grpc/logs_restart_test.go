package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// TestLogsFollowAcrossRestarts: a container its restart policy is about to
// start again (stopped, Restarting) keeps its followers; the output of the
// next run arrives on the same stream, which ends once the container is
// stopped for good.
func TestLogsFollowAcrossRestarts(t *testing.T) {
	r, lc, path := newTestReader(t)
	lc.setState(lifecycle.StateRunning)
	if err := os.WriteFile(path, []byte(logLine("stdout", "run 1\n")), 0o600); err != nil {
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
	expect("run 1\n")
	// Exited; the policy restarts it after a while.
	lc.mu.Lock()
	lc.c.State, lc.c.Restarting = lifecycle.StateStopped, true
	lc.mu.Unlock()
	time.Sleep(100 * time.Millisecond) // several polls
	select {
	case err := <-done:
		t.Fatalf("follow ended while the container was restarting: %v", err)
	default:
	}
	lc.mu.Lock()
	lc.c.State, lc.c.Restarting = lifecycle.StateRunning, false
	lc.mu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(logLine("stdout", "run 2\n")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	expect("run 2\n")
	lc.setState(lifecycle.StateStopped) // stopped for good
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end once the container stopped for good")
	}
}
