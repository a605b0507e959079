package tasklog

import "sync"

// The streams of a process's output.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Chunk is a piece of a process's output.
type Chunk struct {
	// Stream is Stdout or Stderr.
	Stream string
	Data   []byte
}

// MaxQueued bounds what one attach may fall behind; a Subscriber further
// behind is cut off (its attach ends) rather than slowing the container.
const MaxQueued = 16 << 20

// Broadcaster fans a process's output out to every attach. Output written
// while nobody is attached is kept (up to keep bytes) for the first
// attach; the container log has the rest.
type Broadcaster struct {
	mu     sync.Mutex
	subs   map[*Subscriber]bool
	kept   []Chunk
	keep   int
	keptN  int
	done   bool
	closed chan struct{}
}

func NewBroadcaster(keep int) *Broadcaster {
	return &Broadcaster{subs: map[*Subscriber]bool{}, keep: keep, closed: make(chan struct{})}
}

// Subscriber is one attach's queue.
type Subscriber struct {
	mu     sync.Mutex
	queue  []Chunk
	size   int
	wake   chan struct{}
	ch     chan Chunk
	stop   chan struct{}
	once   sync.Once
	isDone bool // the output ended (not cut off, not cancelled)
}

func (b *Broadcaster) Write(stream string, p []byte) {
	c := Chunk{Stream: stream, Data: append([]byte(nil), p...)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) == 0 {
		if b.keptN+len(c.Data) <= b.keep {
			b.kept = append(b.kept, c)
			b.keptN += len(c.Data)
		}
		return
	}
	for s := range b.subs {
		if !s.push(c) {
			delete(b.subs, s)
			s.Cancel()
		}
	}
}

// Close ends the output: every attach drains and ends.
func (b *Broadcaster) Close() {
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

// subscribe returns a Subscriber whose ch yields output from now on (and
// what was kept, for the first one) and closes when the output ends or the
// Subscriber is cancelled.
func (b *Broadcaster) Subscribe() *Subscriber {
	s := &Subscriber{wake: make(chan struct{}, 1), ch: make(chan Chunk), stop: make(chan struct{})}
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

func (b *Broadcaster) Unsubscribe(s *Subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
	s.Cancel()
}

func (s *Subscriber) push(c Chunk) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+len(c.Data) > MaxQueued {
		return false
	}
	s.queue = append(s.queue, c)
	s.size += len(c.Data)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *Subscriber) finish() {
	s.mu.Lock()
	s.isDone = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscriber) Cancel() { s.once.Do(func() { close(s.stop) }) }

// Ended reports whether C closed because the output ended.
func (s *Subscriber) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isDone && len(s.queue) == 0
}

func (s *Subscriber) run() {
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

// C yields the subscriber's output and closes when the output ends or the
// subscriber is cancelled.
func (s *Subscriber) C() <-chan Chunk { return s.ch }

// Closed is closed once Close has ended the output.
func (b *Broadcaster) Closed() <-chan struct{} { return b.closed }
