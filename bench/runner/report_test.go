package runner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestWriteReportRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results", "nested", "run.json")
	ours := Summarize([]time.Duration{3, 1, 2})
	rep := Report{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Host:    ThisHost(),
		Results: []Result{
			{Name: "a", Status: StatusMet, Iterations: 3, Target: 2, Ours: &ours, Peer: &ours, Ratio: 1},
			{Name: "b", Status: StatusSkipped, Iterations: 3, Target: 2, Reason: "peer: runc not found in PATH"},
		},
	}
	if err := WriteReport(path, rep); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("results file is not JSON: %v", err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("read back %+v, want %+v", got, rep)
	}

	// Durations are integer nanoseconds under stable names.
	var raw struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	o := raw.Results[0]["ours"].(map[string]any)
	if o["median_ns"] != float64(2) || !reflect.DeepEqual(o["samples_ns"], []any{3.0, 1.0, 2.0}) {
		t.Errorf("ours = %v, want median_ns 2 and samples_ns [3 1 2]", o)
	}
	if _, ok := raw.Results[1]["ours"]; ok {
		t.Errorf("skipped result has timings: %v", raw.Results[1])
	}
}
