package runner

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable renders results as an aligned table, one row per benchmark,
// followed by the error and stderr tail of each failed benchmark.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tN\tOURS MEDIAN\tOURS P90\tPEER MEDIAN\tPEER P90\tRATIO\tTARGET\tRESULT")
	for _, r := range results {
		fmt.Fprintln(tw, strings.Join(row(r), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if r.Status == StatusFailed {
			writeFailure(w, r)
		}
	}
	return nil
}

// row returns the table cells of r; cells without a value are "-".
func row(r Result) []string {
	cells := []string{r.Name, fmt.Sprint(r.Iterations), "-", "-", "-", "-", "-", fmt.Sprintf("%.2f", r.Target), ""}
	if r.Ours != nil && r.Peer != nil {
		cells[2], cells[3] = formatDuration(r.Ours.Median), formatDuration(r.Ours.P90)
		cells[4], cells[5] = formatDuration(r.Peer.Median), formatDuration(r.Peer.P90)
		cells[6] = fmt.Sprintf("%.2f", r.Ratio)
	}
	switch r.Status {
	case StatusSkipped:
		cells[8] = "skipped: " + r.Reason
	case StatusFailed:
		cells[8] = "FAILED (see below)"
	default:
		cells[8] = string(r.Status)
	}
	return cells
}

func writeFailure(w io.Writer, r Result) {
	fmt.Fprintf(w, "\n%s failed: %s\n", r.Name, r.Reason)
	if r.StderrTail == "" {
		fmt.Fprintln(w, "  (no stderr)")
		return
	}
	fmt.Fprintln(w, "  stderr (tail):")
	for line := range strings.SplitSeq(r.StderrTail, "\n") {
		fmt.Fprintf(w, "  | %s\n", line)
	}
}

// formatDuration renders d with three significant digits in the largest
// unit in which it is at least 1: 812µs, 1.23ms, 45.6ms, 2.00s.
func formatDuration(d time.Duration) string {
	units := []struct {
		size time.Duration
		name string
	}{{time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "µs"}}
	for _, u := range units {
		if d >= u.size {
			return threeDigits(float64(d)/float64(u.size)) + u.name
		}
	}
	return fmt.Sprintf("%dns", d)
}

func threeDigits(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
