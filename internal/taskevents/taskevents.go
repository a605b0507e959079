// Package taskevents is the event side of an isolation plugin: it fans task
// events out to every Events subscriber and turns a process's exit into
// exit (and OOM) events, once per process however often it is asked.
package taskevents

import (
	"context"
	"sync"

	"github.com/berth-dev/berth/sdk/isolation"
)

// subscriberBuffer is how many events a subscriber may fall behind before
// it misses events (publishing never blocks on a slow subscriber).
const subscriberBuffer = 256

// Hub fans task events out to subscribers. The zero value is not usable;
// call NewHub. All methods are safe for concurrent use.
type Hub struct {
	mu       sync.Mutex
	subs     map[chan isolation.TaskEvent]struct{}
	watching map[string]struct{}
}

// NewHub returns a hub with no subscribers.
func NewHub() *Hub {
	return &Hub{subs: map[chan isolation.TaskEvent]struct{}{}, watching: map[string]struct{}{}}
}

// Subscribe returns a channel of the events published from now until ctx is
// done; the channel is closed then.
func (h *Hub) Subscribe(ctx context.Context) <-chan isolation.TaskEvent {
	ch := make(chan isolation.TaskEvent, subscriberBuffer)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		close(ch)
		h.mu.Unlock()
	})
	return ch
}

// Publish sends e to every subscriber; one that is subscriberBuffer events
// behind misses it.
func (h *Hub) Publish(e isolation.TaskEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// WatchExit publishes the end of process execID of task id: wait blocks
// until the process exits and returns its status; then an EventOOM (when
// the kernel killed it for memory) and an EventExit are published. While a
// watch of the same process runs, another call does nothing, so callers
// may watch from Create, Exec and Recover without double events. A wait
// that fails (the task was deleted meanwhile) publishes nothing.
func (h *Hub) WatchExit(id, execID string, wait func() (isolation.ExitStatus, error)) {
	h.watchExit(id, execID, wait, true)
}

// WatchExitOnly is WatchExit without the EventOOM: for a plugin whose OOM
// events come from a stream of their own (mode vm: the guest's memory
// cgroup monitor), so an OOM-killed process is not reported twice. The
// EventExit still carries the status's OOMKilled.
func (h *Hub) WatchExitOnly(id, execID string, wait func() (isolation.ExitStatus, error)) {
	h.watchExit(id, execID, wait, false)
}

func (h *Hub) watchExit(id, execID string, wait func() (isolation.ExitStatus, error), oom bool) {
	key := id + "/" + execID
	h.mu.Lock()
	if _, ok := h.watching[key]; ok {
		h.mu.Unlock()
		return
	}
	h.watching[key] = struct{}{}
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			delete(h.watching, key)
			h.mu.Unlock()
		}()
		e, err := wait()
		if err != nil {
			return
		}
		if oom && e.OOMKilled {
			h.Publish(isolation.TaskEvent{Kind: isolation.EventOOM, ID: id, ExecID: execID, Time: e.ExitedAt})
		}
		h.Publish(isolation.TaskEvent{Kind: isolation.EventExit, ID: id, ExecID: execID, Exit: &e, Time: e.ExitedAt})
	}()
}
