package manager

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/lifecycle"
)

// eventBuffer is each subscriber's buffer; a subscriber that falls this far
// behind loses events (logged) rather than stalling the manager.
const eventBuffer = 256

// broadcaster fans events out to subscribers.
type broadcaster struct {
	log  hclog.Logger
	mu   sync.Mutex
	subs map[chan lifecycle.Event]struct{}
}

func newBroadcaster(log hclog.Logger) *broadcaster {
	return &broadcaster{log: log, subs: map[chan lifecycle.Event]struct{}{}}
}

// subscribe returns a channel of every event published from now on until
// ctx is done, when it is closed.
func (b *broadcaster) subscribe(ctx context.Context) <-chan lifecycle.Event {
	ch := make(chan lifecycle.Event, eventBuffer)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs, ch)
		close(ch)
		b.mu.Unlock()
	}()
	return ch
}

func (b *broadcaster) publish(e lifecycle.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
			b.log.Warn("event subscriber is too slow; dropping event", "kind", e.Kind, "container_id", e.ContainerID)
		}
	}
}
