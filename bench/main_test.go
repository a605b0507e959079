package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-dev/berth/bench/runner"
)

func TestDeclaredBenchmarksAreValidAndUniquelyNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, b := range benchmarks {
		if err := b.Validate(); err != nil {
			t.Error(err)
		}
		if seen[b.Name] {
			t.Errorf("benchmark %q is declared twice", b.Name)
		}
		seen[b.Name] = true
		if b.Description == "" {
			t.Errorf("benchmark %q has no description", b.Name)
		}
	}
}

func TestSelectBenchmarks(t *testing.T) {
	all := []runner.Benchmark{{Name: "process-spawn"}, {Name: "run-vs-runc"}, {Name: "pull-vs-skopeo"}}
	tests := []struct {
		pattern string
		want    []string
	}{
		{"", []string{"process-spawn", "run-vs-runc", "pull-vs-skopeo"}},
		{"runc|skopeo", []string{"run-vs-runc", "pull-vs-skopeo"}},
		{"^process-spawn$", []string{"process-spawn"}},
		{"nothing", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, b := range selectBenchmarks(all, regexp.MustCompile(tt.pattern)) {
			got = append(got, b.Name)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("-run %q selected %v, want %v", tt.pattern, got, tt.want)
		}
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"-list"}, 0, "process-spawn", ""},
		{[]string{"-list", "-run", "spawn"}, 0, "bin/berth version --client", ""},
		{[]string{"-run", "("}, 2, "", "-run: error parsing regexp"},
		{[]string{"-run", "no-such-benchmark"}, 2, "", `no benchmark matches -run "no-such-benchmark"; see -list`},
		{[]string{"-n", "-1"}, 2, "", "-n -1: must be at least 1"},
		{[]string{"process-spawn"}, 2, "", "select benchmarks with -run"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("bench %q: exit %d\nstdout: %s\nstderr: %s\nwant exit %d, stdout containing %q, stderr containing %q",
				tt.args, code, stdout.String(), stderr.String(), tt.wantCode, tt.wantStdout, tt.wantStderr)
		}
	}
}

func TestRunWritesTableAndResults(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results.json")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-run", "^noise-floor$", "-n", "2", "-o", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "noise-floor  2 ") || !strings.Contains(stdout.String(), "results: "+out) {
		t.Errorf("stdout lacks the table row or the results path:\n%s", stdout.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep runner.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Name != "noise-floor" || len(rep.Results[0].Ours.Samples) != 2 {
		t.Errorf("results file holds %+v, want one noise-floor result with 2 samples per side", rep.Results)
	}
}

func TestExitCode(t *testing.T) {
	met := runner.Result{Status: runner.StatusMet}
	missed := runner.Result{Status: runner.StatusMissed}
	skipped := runner.Result{Status: runner.StatusSkipped}
	failed := runner.Result{Status: runner.StatusFailed}
	tests := []struct {
		name       string
		results    []runner.Result
		failOnMiss bool
		want       int
	}{
		{"all met", []runner.Result{met, skipped}, false, 0},
		{"missed is reported, not failed", []runner.Result{met, missed}, false, 0},
		{"missed fails on request", []runner.Result{met, missed}, true, 1},
		{"failure fails", []runner.Result{failed, met}, false, 1},
	}
	for _, tt := range tests {
		if got := exitCode(context.Background(), tt.results, tt.failOnMiss); got != tt.want {
			t.Errorf("%s: exit code %d, want %d", tt.name, got, tt.want)
		}
	}
}
