package runner

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func ms(vs ...int) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestSummarize(t *testing.T) {
	const m = time.Millisecond
	tests := []struct {
		name    string
		samples []time.Duration
		want    Summary
	}{
		{"none", nil, Summary{}},
		{"one", ms(7), Summary{Median: 7 * m, P90: 7 * m, Min: 7 * m, Max: 7 * m, Mean: 7 * m}},
		{"odd count, unsorted", ms(5, 1, 3), Summary{Median: 3 * m, P90: 5 * m, Min: 1 * m, Max: 5 * m, Mean: 3 * m}},
		{"even count averages the middle two", ms(4, 1, 2, 10), Summary{Median: 3 * m, P90: 10 * m, Min: 1 * m, Max: 10 * m, Mean: 4*m + m/4}},
		{"p90 of ten is the ninth", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), Summary{Median: 5500 * time.Microsecond, P90: 9 * m, Min: 1 * m, Max: 10 * m, Mean: 5500 * time.Microsecond}},
		{"p90 of eleven is the tenth", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), Summary{Median: 6 * m, P90: 10 * m, Min: 1 * m, Max: 11 * m, Mean: 6 * m}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.samples)
			got := Summarize(tt.samples)
			if !slices.Equal(tt.samples, in) {
				t.Errorf("Summarize modified its input: %v, was %v", tt.samples, in)
			}
			if !slices.Equal(got.Samples, tt.samples) {
				t.Errorf("Samples = %v, want the input in run order %v", got.Samples, tt.samples)
			}
			got.Samples = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.samples, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		name       string
		ours, peer Summary
		want       float64
	}{
		{"slower", Summary{Median: 3 * time.Millisecond}, Summary{Median: 2 * time.Millisecond}, 1.5},
		{"faster", Summary{Median: time.Millisecond}, Summary{Median: 4 * time.Millisecond}, 0.25},
		{"no peer runs", Summary{Median: time.Millisecond}, Summary{}, 0},
		{"no runs of ours", Summary{}, Summary{Median: time.Millisecond}, 0},
	}
	for _, tt := range tests {
		if got := Ratio(tt.ours, tt.peer); got != tt.want {
			t.Errorf("%s: Ratio = %v, want %v", tt.name, got, tt.want)
		}
	}
}
