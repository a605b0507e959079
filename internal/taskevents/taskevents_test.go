package taskevents

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/isolation"
)

func next(t *testing.T, ch <-chan isolation.TaskEvent) isolation.TaskEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("events channel closed early")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return isolation.TaskEvent{}
}

func TestWatchExitPublishesOOMThenExitOnce(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := h.Subscribe(ctx), h.Subscribe(ctx)

	release := make(chan struct{})
	var waits atomic.Int32
	wait := func() (isolation.ExitStatus, error) {
		waits.Add(1)
		<-release
		return isolation.ExitStatus{Code: 137, OOMKilled: true, ExitedAt: time.Unix(5, 0)}, nil
	}
	h.WatchExit("t1", "e1", wait)
	h.WatchExit("t1", "e1", wait) // already watched: no second wait, no double events
	close(release)

	for _, ch := range []<-chan isolation.TaskEvent{a, b} {
		oom := next(t, ch)
		if oom.Kind != isolation.EventOOM || oom.ID != "t1" || oom.ExecID != "e1" {
			t.Fatalf("first event = %+v, want oom of t1/e1", oom)
		}
		exit := next(t, ch)
		if exit.Kind != isolation.EventExit || exit.Exit == nil || exit.Exit.Code != 137 {
			t.Fatalf("second event = %+v, want exit 137", exit)
		}
	}
	if n := waits.Load(); n != 1 {
		t.Fatalf("wait called %d times, want 1", n)
	}
	select {
	case e := <-a:
		t.Fatalf("unexpected third event %+v", e)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestWatchExitFailedWaitPublishesNothingAndCanWatchAgain(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := h.Subscribe(ctx)
	failed := make(chan struct{})
	h.WatchExit("t", "", func() (isolation.ExitStatus, error) {
		defer close(failed)
		return isolation.ExitStatus{}, errors.New("task deleted")
	})
	<-failed
	// The failed watch ends; a new one for the same process runs its wait.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ran := make(chan struct{}, 1)
		h.WatchExit("t", "", func() (isolation.ExitStatus, error) {
			ran <- struct{}{}
			return isolation.ExitStatus{Code: 3}, nil
		})
		select {
		case <-ran:
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("a new watch never ran after the failed one ended")
			}
			continue
		}
		break
	}
	if e := next(t, ch); e.Kind != isolation.EventExit || e.Exit.Code != 3 {
		t.Fatalf("event = %+v, want exit 3 (nothing from the failed wait)", e)
	}
}

func TestSubscribeClosesWithContextAndSlowSubscriberNeverBlocks(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	ch := h.Subscribe(ctx)
	for i := 0; i < subscriberBuffer+10; i++ { // nobody reads: must not block
		h.Publish(isolation.TaskEvent{Kind: isolation.EventExit, ID: "x"})
	}
	cancel()
	n := 0
	for range ch {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("drained %d events, want the %d buffered before the channel closed", n, subscriberBuffer)
	}
}

// TestWatchExitOnlyPublishesNoOOM: the exit of an OOM-killed process is one
// EventExit that keeps OOMKilled, and no EventOOM.
func TestWatchExitOnlyPublishesNoOOM(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := h.Subscribe(ctx)
	h.WatchExitOnly("t1", "", func() (isolation.ExitStatus, error) {
		return isolation.ExitStatus{Code: 137, OOMKilled: true, ExitedAt: time.Unix(5, 0)}, nil
	})
	e := next(t, ch)
	if e.Kind != isolation.EventExit || e.ID != "t1" || e.Exit == nil || !e.Exit.OOMKilled {
		t.Fatalf("event = %+v, want the exit of t1 with OOMKilled", e)
	}
	select {
	case e := <-ch:
		t.Fatalf("unexpected second event %+v", e)
	case <-time.After(100 * time.Millisecond):
	}
}
