//go:build linux

package main

import (
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestOOMWatchReconnectsAndLeaksNothing: a task's agent-events subscription
// reconnects when its stream breaks (here a supervisor socket that hangs up
// every connection), ends on stopOOM (as Delete calls it) and ends by itself
// when the supervisor's socket is gone; no goroutine is left either way.
// (TestRunInVM follows a real guest's OOM through it.)
func TestOOMWatchReconnectsAndLeaksNothing(t *testing.T) {
	before := goruntime.NumGoroutine()
	dir := t.TempDir()
	r := newRuntime(hclog.NewNullLogger())
	r.stateDir, r.runtimeDir = dir, dir
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var accepts atomic.Int32
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			_ = c.Close()
		}
	}()
	for _, id := range []string{"t1", "t2"} {
		if err := os.MkdirAll(filepath.Join(dir, "tasks", id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeJSON(filepath.Join(dir, "tasks", "t1", stateFile), State{Socket: sock}); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(dir, "tasks", "t2", stateFile), State{Socket: filepath.Join(dir, "missing.sock")}); err != nil {
		t.Fatal(err)
	}

	r.watchOOM("t1")
	r.watchOOM("t1") // already watched: no second subscription
	r.watchOOM("t2")
	eventually(t, "the subscription reconnects after its stream breaks", func() bool { return accepts.Load() >= 3 })
	eventually(t, "the subscription of a task whose supervisor is gone ends", func() bool { return r.oomWatching() == 1 })
	r.stopOOM("t1")
	r.stopOOM("t1") // idempotent
	if n := r.oomWatching(); n != 0 {
		t.Fatalf("%d subscriptions left after stopOOM", n)
	}
	_ = l.Close()
	<-served
	eventually(t, "no goroutine left", func() bool { return goruntime.NumGoroutine() <= before })
}
