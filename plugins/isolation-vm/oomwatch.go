package main

import (
	"context"
	"errors"
	"time"

	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// OOM events of mode vm come from one place only: the guest agent's Events
// stream, whose EventOOM is an OOM kill in the container's memory cgroup
// (any process of it, the init or an exec; ExecID is empty, as with the
// host's cgroup monitor). The init's exit is published by watch with
// taskevents.Hub.WatchExitOnly, so an OOM-killed init is reported once
// (its EventExit still says OOMKilled).

// oomWatch is the agent-events subscription of one task.
type oomWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// oomRetry bounds the wait between reconnects to a task's agent events.
const (
	oomRetryMin = 200 * time.Millisecond
	oomRetryMax = 5 * time.Second
)

// watchOOM subscribes to task id's agent events until stopOOM(id), the
// task's supervisor is gone for good (its socket removed) or the task is
// deleted, reconnecting when the stream breaks; each EventOOM of the task
// is published on r.hub. Watching a task already watched does nothing.
func (r *runtime) watchOOM(id string) {
	r.oomMu.Lock()
	defer r.oomMu.Unlock()
	if r.oomWatches == nil {
		r.oomWatches = map[string]*oomWatch{}
	}
	if _, ok := r.oomWatches[id]; ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &oomWatch{cancel: cancel, done: make(chan struct{})}
	r.oomWatches[id] = w
	go func() {
		defer close(w.done)
		defer func() {
			r.oomMu.Lock()
			if r.oomWatches[id] == w {
				delete(r.oomWatches, id)
			}
			r.oomMu.Unlock()
		}()
		r.followOOM(ctx, id)
	}()
}

// stopOOM ends task id's subscription and waits for its goroutine.
func (r *runtime) stopOOM(id string) {
	r.oomMu.Lock()
	w := r.oomWatches[id]
	delete(r.oomWatches, id)
	r.oomMu.Unlock()
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

// oomWatching reports how many task subscriptions are live (tests).
func (r *runtime) oomWatching() int {
	r.oomMu.Lock()
	defer r.oomMu.Unlock()
	return len(r.oomWatches)
}

func (r *runtime) followOOM(ctx context.Context, id string) {
	backoff := oomRetryMin
	for {
		got, err := r.streamOOM(ctx, id)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errGone) || errdefs.IsNotFound(err) {
			r.log.Debug("agent events: the task's supervisor is gone", "container_id", id, "error", err)
			return
		}
		if got {
			backoff = oomRetryMin
		}
		r.log.Debug("agent events: reconnecting", "container_id", id, "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, oomRetryMax)
	}
}

// streamOOM follows one agent events stream until it breaks or ctx is
// done; got says whether the stream opened.
func (r *runtime) streamOOM(ctx context.Context, id string) (got bool, err error) {
	cc, _, err := r.conn(id)
	if err != nil {
		return false, err
	}
	defer cc.Close()
	ch, err := vmagent.NewClientConn(cc).Events(ctx)
	if err != nil {
		return false, err
	}
	for e := range ch {
		if e.Kind != isolation.EventOOM || e.ID != id {
			continue
		}
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		r.log.Info("task hit its memory limit", "container_id", id, "exec_id", e.ExecID)
		r.hub.Publish(isolation.TaskEvent{Kind: isolation.EventOOM, ID: id, ExecID: e.ExecID, Time: e.Time})
	}
	return true, errors.New("the agent events stream ended")
}
