package wire

import (
	"testing"
	"time"
)

func TestUnixNanoRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{{}, time.Unix(1700000000, 123456789), time.Unix(0, 1)} {
		got := FromUnixNano(UnixNano(tm))
		if !got.Equal(tm) || got.IsZero() != tm.IsZero() {
			t.Errorf("round trip of %v = %v", tm, got)
		}
	}
	if UnixNano(time.Time{}) != 0 {
		t.Error("the zero time must encode as 0")
	}
}
