package supervisor

import "sync"

// chunk is a piece of a process's output.
type chunk struct {
	stream string
	data   []byte
}

// maxQueued bounds what one attach may fall behind; a subscriber further
// behind is cut off (its attach ends) rather than slowing the container.
const maxQueued = 16 << 20

// broadcaster fans a process's output out to every attach. Output written
// while nobody is attached is kept (up to keep bytes) for the first
// attach; the container log has the rest.
type broadcaster struct {
	mu     sync.Mutex
	subs   map[*subscriber]bool
	kept   []chunk
	keep   int
	keptN  int
	done   bool
	closed chan struct{}
}

func newBroadcaster(keep int) *broadcaster {
	return &broadcaster{subs: map[*subscriber]bool{}, keep: keep, closed: make(chan struct{})}
}

// subscriber is one attach's queue.
type subscriber struct {
	mu     sync.Mutex
	queue  []chunk
	size   int
	wake   chan struct{}
	ch     chan chunk
	stop   chan struct{}
	once   sync.Once
	isDone bool // the output ended (not cut off, not cancelled)
}

func (b *broadcaster) write(stream string, p []byte) {
	c := chunk{stream: stream, data: append([]byte(nil), p...)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) == 0 {
		if b.keptN+len(c.data) <= b.keep {
			b.kept = append(b.kept, c)
			b.keptN += len(c.data)
		}
		return
	}
	for s := range b.subs {
		if !s.push(c) {
			delete(b.subs, s)
			s.cancel()
		}
	}
}

// close ends the output: every attach drains and ends.
func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	for s := range b.subs {
		s.finish()
	}
	close(b.closed)
}

// subscribe returns a subscriber whose ch yields output from now on (and
// what was kept, for the first one) and closes when the output ends or the
// subscriber is cancelled.
func (b *broadcaster) subscribe() *subscriber {
	s := &subscriber{wake: make(chan struct{}, 1), ch: make(chan chunk), stop: make(chan struct{})}
	b.mu.Lock()
	for _, c := range b.kept {
		s.push(c)
	}
	b.kept, b.keptN = nil, 0
	if b.done {
		s.finish()
	} else {
		b.subs[s] = true
	}
	b.mu.Unlock()
	go s.run()
	return s
}

func (b *broadcaster) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
	s.cancel()
}

func (s *subscriber) push(c chunk) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+len(c.data) > maxQueued {
		return false
	}
	s.queue = append(s.queue, c)
	s.size += len(c.data)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *subscriber) finish() {
	s.mu.Lock()
	s.isDone = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) cancel() { s.once.Do(func() { close(s.stop) }) }

// ended reports whether ch closed because the output ended.
func (s *subscriber) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isDone && len(s.queue) == 0
}

func (s *subscriber) run() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		q := s.queue
		s.queue, s.size = nil, 0
		done := s.isDone
		s.mu.Unlock()
		for _, c := range q {
			select {
			case s.ch <- c:
			case <-s.stop:
				return
			}
		}
		if done && len(q) == 0 {
			return
		}
		if done {
			continue
		}
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
	}
}
