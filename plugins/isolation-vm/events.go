//go:build linux || darwin

package main

import (
	"context"
	"sync"

	"github.com/berth-dev/berth/sdk/isolation"
)

// eventHub fans task events out to Events subscribers.
type eventHub struct {
	mu       sync.Mutex
	subs     map[chan isolation.TaskEvent]bool
	watching map[string]bool
}

func newEventHub() *eventHub {
	return &eventHub{subs: map[chan isolation.TaskEvent]bool{}, watching: map[string]bool{}}
}

func (h *eventHub) subscribe(ctx context.Context) <-chan isolation.TaskEvent {
	ch := make(chan isolation.TaskEvent, 256)
	h.mu.Lock()
	h.subs[ch] = true
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		close(ch)
		h.mu.Unlock()
	})
	return ch
}

func (h *eventHub) publish(e isolation.TaskEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- e:
		default: // a subscriber 256 events behind misses this one
		}
	}
}

func (h *eventHub) startWatch(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watching[key] {
		return false
	}
	h.watching[key] = true
	return true
}

func (h *eventHub) endWatch(key string) {
	h.mu.Lock()
	delete(h.watching, key)
	h.mu.Unlock()
}
