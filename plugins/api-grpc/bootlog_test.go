package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

func collectBoot(t *testing.T, r *logReader, ref string, opts api.LogsOptions) (string, error) {
	t.Helper()
	var b strings.Builder
	opts.Boot = true
	err := r.Logs(context.Background(), ref, opts, func(e api.LogEntry) error {
		if e.Stream != api.StreamConsole || !e.Time.IsZero() {
			t.Errorf("boot entry stream %q time %v, want %q and none", e.Stream, e.Time, api.StreamConsole)
		}
		b.Write(e.Data)
		b.WriteString("|")
		return nil
	})
	return b.String(), err
}

// The boot log is <lifecycle state>/logs/<id>.boot.log, the file
// lifecycle-local names in the task's isolation.AnnotationBootLog: plain
// console text sent line by line, tail counting lines, the output log left
// alone.
func TestBootLogReadsTheLifecyclesBootFile(t *testing.T) {
	r, _, path := newTestReader(t)
	boot := filepath.Join(filepath.Dir(path), "abc123.boot.log")
	if bootLogPath(path) != boot {
		t.Fatalf("bootLogPath(%s) = %s, want %s", path, bootLogPath(path), boot)
	}
	if err := os.WriteFile(path, []byte(logLine("stdout", "output\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(boot, []byte("[    0.000000] Linux version 6.1\r\nberth-agent: ready\nno newline"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := collectBoot(t, r, "web", api.LogsOptions{Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[    0.000000] Linux version 6.1\r\n|berth-agent: ready\n|no newline|"; got != want {
		t.Fatalf("boot log = %q, want %q", got, want)
	}
	got, err = collectBoot(t, r, "abc123", api.LogsOptions{Tail: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := "berth-agent: ready\n|no newline|"; got != want {
		t.Fatalf("boot log tail 2 = %q, want %q", got, want)
	}
	// Without --boot the output log is what is read.
	out, err := collect(t, r, "web", api.LogsOptions{Tail: -1})
	if err != nil || out != "stdout:output\n" {
		t.Fatalf("output log = %q, %v", out, err)
	}
}

func TestBootLogMissingNamesTheMode(t *testing.T) {
	r, lc, _ := newTestReader(t)
	lc.c.Isolation = "sandbox"
	_, err := collectBoot(t, r, "web", api.LogsOptions{Tail: -1})
	if !errdefs.IsNotFound(err) || err.Error() != "container web has no boot log (isolation mode sandbox)" {
		t.Fatalf("err = %v, want NotFound %q", err, "container web has no boot log (isolation mode sandbox)")
	}
	_, err = collectBoot(t, r, "nosuch", api.LogsOptions{Tail: -1})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("unknown container: err = %v", err)
	}
}

// Follow sends what the guest appends while the container runs, keeps an
// unfinished line until its newline, and ends (with the last partial line)
// once the container stops.
func TestBootLogFollowsWhileRunning(t *testing.T) {
	r, lc, path := newTestReader(t)
	lc.setState(lifecycle.StateRunning)
	boot := bootLogPath(path)
	if err := os.WriteFile(boot, []byte("early\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
	done := make(chan error, 1)
	go func() {
		done <- r.Logs(context.Background(), "web", api.LogsOptions{Follow: true, Tail: -1, Boot: true}, func(e api.LogEntry) error {
			mu.Lock()
			got = append(got, string(e.Data))
			mu.Unlock()
			return nil
		})
	}()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(seen()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("want %d lines, have %q", n, seen())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(1)
	f, err := os.OpenFile(boot, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("later\npart"); err != nil {
		t.Fatal(err)
	}
	waitFor(2)
	if _, err := f.WriteString("ial\ntail"); err != nil {
		t.Fatal(err)
	}
	waitFor(3)
	select {
	case err := <-done:
		t.Fatalf("follow ended while the container runs: %v", err)
	default:
	}
	lc.setState(lifecycle.StateStopped)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
	if want := []string{"early\n", "later\n", "partial\n", "tail"}; strings.Join(seen(), "|") != strings.Join(want, "|") {
		t.Fatalf("followed %q, want %q", seen(), want)
	}
}

// Boot crosses the public gRPC API (LogsRequest.boot): the client's option
// reaches the reader, console entries come back, and a missing boot log's
// error keeps its kind and text.
func TestBootLogOverGRPC(t *testing.T) {
	r, lc, path := newTestReader(t)
	if err := os.WriteFile(bootLogPath(path), []byte("line one\nline two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	api.RegisterLogsServer(srv, r)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := api.NewLogsClient(conn)
	var got []string
	err = client.Logs(context.Background(), "web", api.LogsOptions{Tail: 1, Boot: true}, func(e api.LogEntry) error {
		got = append(got, e.Stream+":"+string(e.Data))
		return nil
	})
	if err != nil || strings.Join(got, "|") != "console:line two\n" {
		t.Fatalf("Logs(boot, tail 1) over gRPC = %q, %v", got, err)
	}
	lc.mu.Lock()
	lc.c.Isolation = "sandbox"
	lc.mu.Unlock()
	if err := os.Remove(bootLogPath(path)); err != nil {
		t.Fatal(err)
	}
	err = client.Logs(context.Background(), "web", api.LogsOptions{Tail: -1, Boot: true}, func(api.LogEntry) error { return nil })
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "container web has no boot log (isolation mode sandbox)") {
		t.Fatalf("missing boot log over gRPC: %v", err)
	}
}
