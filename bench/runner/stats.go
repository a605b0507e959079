package runner

import (
	"slices"
	"time"
)

// Summary describes the timed runs of one side of a benchmark.
// The zero Summary describes no runs.
type Summary struct {
	// Samples are the wall-clock times of the timed runs, in run order.
	Samples []time.Duration `json:"samples_ns"`
	Median  time.Duration   `json:"median_ns"`
	// P90 is the nearest-rank 90th percentile: the smallest sample that is
	// at least as large as 90% of the samples.
	P90  time.Duration `json:"p90_ns"`
	Min  time.Duration `json:"min_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarize computes the statistics of samples. It does not modify or keep
// a reference to samples' backing array.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	sorted := slices.Sorted(slices.Values(samples))
	var total time.Duration
	for _, s := range sorted {
		total += s
	}
	return Summary{
		Samples: slices.Clone(samples),
		Median:  median(sorted),
		P90:     nearestRank(sorted, 90),
		Min:     sorted[0],
		Max:     sorted[len(sorted)-1],
		Mean:    total / time.Duration(len(sorted)),
	}
}

// median returns the middle of sorted, or the mean of the two middle
// samples when their count is even. sorted must not be empty.
func median(sorted []time.Duration) time.Duration {
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return sorted[mid-1] + (sorted[mid]-sorted[mid-1])/2
}

// nearestRank returns the p-th percentile of sorted (0 < p <= 100) by the
// nearest-rank method, which always returns an observed sample.
// sorted must not be empty.
func nearestRank(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n), 1-based
	return sorted[max(rank, 1)-1]
}

// Ratio returns ours.Median / peer.Median, the figure judged against a
// benchmark's Target. It returns 0 if either side has no runs.
func Ratio(ours, peer Summary) float64 {
	if ours.Median <= 0 || peer.Median <= 0 {
		return 0
	}
	return float64(ours.Median) / float64(peer.Median)
}
