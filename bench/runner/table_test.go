package runner

import (
	"bytes"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	const us = time.Microsecond
	results := []Result{
		{
			Name: "process-spawn", Status: StatusMet, Iterations: 100, Target: 4,
			Ours:  &Summary{Median: 1850 * us, P90: 2170 * us},
			Peer:  &Summary{Median: 941 * us, P90: 1100 * us},
			Ratio: 1.9660,
		},
		{
			Name: "pull-alpine", Status: StatusMissed, Iterations: 10, Target: 1.2,
			Ours:  &Summary{Median: 2 * time.Second, P90: 2500 * time.Millisecond},
			Peer:  &Summary{Median: 1250 * time.Millisecond, P90: 1300 * time.Millisecond},
			Ratio: 1.6,
		},
		{Name: "run-vs-runc", Status: StatusSkipped, Iterations: 20, Target: 1.2, Reason: "peer: runc not found in PATH"},
		{
			Name: "unpack", Status: StatusFailed, Iterations: 5, Target: 1.1,
			Reason: "ours warm-up: bin/berth unpack: exit status 2", StderrTail: "error: no such layer\nhint: pull first",
		},
		{Name: "quiet-failure", Status: StatusFailed, Iterations: 5, Target: 1.1, Reason: "setup: /bin/false: exit status 1"},
	}
	want := `NAME           N    OURS MEDIAN  OURS P90  PEER MEDIAN  PEER P90  RATIO  TARGET  RESULT
process-spawn  100  1.85ms       2.17ms    941µs        1.10ms    1.97   4.00    met
pull-alpine    10   2.00s        2.50s     1.25s        1.30s     1.60   1.20    missed
run-vs-runc    20   -            -         -            -         -      1.20    skipped: peer: runc not found in PATH
unpack         5    -            -         -            -         -      1.10    FAILED (see below)
quiet-failure  5    -            -         -            -         -      1.10    FAILED (see below)

unpack failed: ours warm-up: bin/berth unpack: exit status 2
  stderr (tail):
  | error: no such layer
  | hint: pull first

quiet-failure failed: setup: /bin/false: exit status 1
  (no stderr)
`
	var buf bytes.Buffer
	if err := WriteTable(&buf, results); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != want {
		t.Errorf("WriteTable rendered\n%s\nwant\n%s", got, want)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{850 * time.Nanosecond, "850ns"},
		{time.Microsecond, "1.00µs"},
		{812 * time.Microsecond, "812µs"},
		{1234 * time.Microsecond, "1.23ms"},
		{45600 * time.Microsecond, "45.6ms"},
		{2 * time.Second, "2.00s"},
		{125 * time.Second, "125s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
