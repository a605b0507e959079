package tasklog

import (
	"strings"
	"testing"
	"time"
)

func drain(t *testing.T, s *Subscriber) string {
	t.Helper()
	var b strings.Builder
	timeout := time.After(30 * time.Second)
	for {
		select {
		case c, ok := <-s.C():
			if !ok {
				return b.String()
			}
			b.WriteString(c.Stream + ":" + string(c.Data) + ";")
		case <-timeout:
			t.Fatal("Subscriber did not end 30s after the output closed")
		}
	}
}

func TestBroadcasterKeepsOutputForTheFirstAttach(t *testing.T) {
	b := NewBroadcaster(8)
	b.Write("stdout", []byte("early"))   // kept
	b.Write("stderr", []byte("toolong")) // over the 8 bytes kept: dropped
	first := b.Subscribe()
	b.Write("stdout", []byte("live"))
	second := b.Subscribe() // sees only what follows
	b.Write("stderr", []byte("both"))
	b.Close()
	if got := drain(t, first); got != "stdout:early;stdout:live;stderr:both;" {
		t.Errorf("first attach got %q", got)
	}
	if got := drain(t, second); got != "stderr:both;" {
		t.Errorf("second attach got %q", got)
	}
	if !first.Ended() || !second.Ended() {
		t.Error("subscribers of a closed output do not report its end")
	}
	select {
	case <-b.Closed():
	default:
		t.Error("closed channel still open after close")
	}
}

func TestBroadcasterAfterCloseAndCancel(t *testing.T) {
	b := NewBroadcaster(0)
	b.Close()
	b.Close() // twice is fine
	if got := drain(t, b.Subscribe()); got != "" {
		t.Errorf("attach after the end got %q", got)
	}
	b = NewBroadcaster(0)
	s := b.Subscribe()
	b.Unsubscribe(s)
	drain(t, s) // the channel closes
	if s.Ended() {
		t.Error("a cancelled attach reports the output's end")
	}
	b.Write("stdout", []byte("after")) // nobody left: no block, no panic
}

func TestBroadcasterCutsOffASlowAttach(t *testing.T) {
	b := NewBroadcaster(0)
	slow := b.Subscribe()
	Chunk := make([]byte, 1<<20)
	for i := 0; i < 20; i++ { // 20 MiB, never read: over MaxQueued
		b.Write("stdout", Chunk)
	}
	b.Close()
	n := 0
	for c := range slow.ch {
		n += len(c.Data)
	}
	if n > MaxQueued {
		t.Errorf("slow attach received %d bytes, more than the %d queued", n, MaxQueued)
	}
	if slow.Ended() {
		t.Error("a cut-off attach reports the output's end")
	}
}
