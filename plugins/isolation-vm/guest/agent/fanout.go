//go:build linux

package agent

import "sync"

// chunk is a piece of a process's output.
type chunk struct {
	stderr bool
	data   []byte
}

// maxQueued bounds what one attach may fall behind; an attach further
// behind is cut off (it ends) rather than stalling the container.
const maxQueued = 16 << 20

// fanout copies a process's output to every attach. Output written while
// nobody is attached is kept, up to keep bytes, for the next attach, so the
// host that attaches right after create loses nothing.
type fanout struct {
	mu     sync.Mutex
	subs   map[*sub]bool
	kept   []chunk
	keptN  int
	keep   int
	done   bool
	closed chan struct{}
}

func newFanout(keep int) *fanout {
	return &fanout{subs: map[*sub]bool{}, keep: keep, closed: make(chan struct{})}
}

// sub is one attach's queue: ch yields its chunks and closes when the
// output ended (ended() is then true) or the attach was cut off.
type sub struct {
	mu    sync.Mutex
	queue []chunk
	size  int
	done  bool
	wake  chan struct{}
	stop  chan struct{}
	once  sync.Once
	ch    chan chunk
}

func (f *fanout) write(stderr bool, p []byte) {
	c := chunk{stderr: stderr, data: append([]byte(nil), p...)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		if f.keptN+len(c.data) <= f.keep {
			f.kept = append(f.kept, c)
			f.keptN += len(c.data)
		}
		return
	}
	for s := range f.subs {
		if !s.push(c) {
			delete(f.subs, s)
			s.cancel()
		}
	}
}

// close ends the output: every attach drains and ends.
func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return
	}
	f.done = true
	for s := range f.subs {
		s.finish()
	}
	close(f.closed)
}

// subscribe returns an attach's queue, starting with what was kept.
func (f *fanout) subscribe() *sub {
	s := &sub{wake: make(chan struct{}, 1), stop: make(chan struct{}), ch: make(chan chunk)}
	f.mu.Lock()
	for _, c := range f.kept {
		s.push(c)
	}
	f.kept, f.keptN = nil, 0
	if f.done {
		s.finish()
	} else {
		f.subs[s] = true
	}
	f.mu.Unlock()
	go s.run()
	return s
}

func (f *fanout) unsubscribe(s *sub) {
	f.mu.Lock()
	delete(f.subs, s)
	f.mu.Unlock()
	s.cancel()
}

func (s *sub) push(c chunk) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+len(c.data) > maxQueued {
		return false
	}
	s.queue = append(s.queue, c)
	s.size += len(c.data)
	s.poke()
	return true
}

func (s *sub) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sub) finish() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	s.poke()
}

func (s *sub) cancel() { s.once.Do(func() { close(s.stop) }) }

// ended reports whether ch closed because the output ended.
func (s *sub) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done && len(s.queue) == 0
}

func (s *sub) run() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		q, done := s.queue, s.done
		s.queue, s.size = nil, 0
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
