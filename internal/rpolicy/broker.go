package rpolicy

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/resources"
)

// subscriberBuffer is how many events a slow subscriber may fall behind
// before events for it are dropped (and counted in the log).
const subscriberBuffer = 256

// Broker fans limit events out to every Events subscriber. Publishing never
// blocks the monitor: a subscriber whose buffer is full loses the event.
type Broker struct {
	log    hclog.Logger
	mu     sync.Mutex
	subs   map[chan resources.LimitEvent]struct{}
	closed bool
}

// NewBroker returns a broker with no subscribers.
func NewBroker(log hclog.Logger) *Broker {
	return &Broker{log: log, subs: map[chan resources.LimitEvent]struct{}{}}
}

// Subscribe returns a channel of every event published from now until ctx
// is done (or the Broker closes), then closed.
func (b *Broker) Subscribe(ctx context.Context) <-chan resources.LimitEvent {
	ch := make(chan resources.LimitEvent, subscriberBuffer)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(ch)
		return ch
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() { b.drop(ch) })
	return ch
}

func (b *Broker) drop(ch chan resources.LimitEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[ch]; ok {
		delete(b.subs, ch)
		close(ch)
	}
}

// Publish hands ev to every subscriber.
func (b *Broker) Publish(ev resources.LimitEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log.Info("limit event", "group", ev.GroupID, "resource", ev.Resource, "kind", ev.Kind, "count", ev.Count, "message", ev.Message)
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
			b.log.Warn("events subscriber is not keeping up; event dropped", "group", ev.GroupID, "kind", ev.Kind)
		}
	}
}

// Close ends every subscription.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}
