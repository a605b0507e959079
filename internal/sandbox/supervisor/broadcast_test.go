package supervisor

import (
	"strings"
	"testing"
	"time"
)

func drain(t *testing.T, s *subscriber) string {
	t.Helper()
	var b strings.Builder
	timeout := time.After(30 * time.Second)
	for {
		select {
		case c, ok := <-s.ch:
			if !ok {
				return b.String()
			}
			b.WriteString(c.stream + ":" + string(c.data) + ";")
		case <-timeout:
			t.Fatal("subscriber did not end 30s after the output closed")
		}
	}
}

func TestBroadcasterKeepsOutputForTheFirstAttach(t *testing.T) {
	b := newBroadcaster(8)
	b.write("stdout", []byte("early"))   // kept
	b.write("stderr", []byte("toolong")) // over the 8 bytes kept: dropped
	first := b.subscribe()
	b.write("stdout", []byte("live"))
	second := b.subscribe() // sees only what follows
	b.write("stderr", []byte("both"))
	b.close()
	if got := drain(t, first); got != "stdout:early;stdout:live;stderr:both;" {
		t.Errorf("first attach got %q", got)
	}
	if got := drain(t, second); got != "stderr:both;" {
		t.Errorf("second attach got %q", got)
	}
	if !first.ended() || !second.ended() {
		t.Error("subscribers of a closed output do not report its end")
	}
	select {
	case <-b.closed:
	default:
		t.Error("closed channel still open after close")
	}
}

func TestBroadcasterAfterCloseAndCancel(t *testing.T) {
	b := newBroadcaster(0)
	b.close()
	b.close() // twice is fine
	if got := drain(t, b.subscribe()); got != "" {
		t.Errorf("attach after the end got %q", got)
	}
	b = newBroadcaster(0)
	s := b.subscribe()
	b.unsubscribe(s)
	drain(t, s) // the channel closes
	if s.ended() {
		t.Error("a cancelled attach reports the output's end")
	}
	b.write("stdout", []byte("after")) // nobody left: no block, no panic
}

func TestBroadcasterCutsOffASlowAttach(t *testing.T) {
	b := newBroadcaster(0)
	slow := b.subscribe()
	chunk := make([]byte, 1<<20)
	for i := 0; i < 20; i++ { // 20 MiB, never read: over maxQueued
		b.write("stdout", chunk)
	}
	b.close()
	n := 0
	for c := range slow.ch {
		n += len(c.data)
	}
	if n > maxQueued {
		t.Errorf("slow attach received %d bytes, more than the %d queued", n, maxQueued)
	}
	if slow.ended() {
		t.Error("a cut-off attach reports the output's end")
	}
}
