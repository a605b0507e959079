// Package wire holds the small conversions every layer's gRPC adapters
// share.
package wire

import "time"

// UnixNano encodes t for the wire: Unix nanoseconds, 0 for the zero time.
func UnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromUnixNano decodes UnixNano: 0 is the zero time.
func FromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
