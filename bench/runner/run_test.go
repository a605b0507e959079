package runner

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	tests := []struct {
		n    int
		want []step
	}{
		{0, []step{{roleOurs, 0}, {rolePeer, 0}}},
		{1, []step{{roleOurs, 0}, {rolePeer, 0}, {roleOurs, 1}, {rolePeer, 1}}},
		{3, []step{{roleOurs, 0}, {rolePeer, 0}, {roleOurs, 1}, {rolePeer, 1}, {roleOurs, 2}, {rolePeer, 2}, {roleOurs, 3}, {rolePeer, 3}}},
	}
	for _, tt := range tests {
		if got := schedule(tt.n); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("schedule(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

// eventLog is a file that commands append words to, so that a test can see
// which commands ran and in what order.
type eventLog string

func newEventLog(t *testing.T) eventLog {
	return eventLog(filepath.Join(t.TempDir(), "events"))
}

// cmd returns a command that appends word to the log.
func (l eventLog) cmd(word string) Command {
	return Command{
		Argv: []string{"/bin/sh", "-c", `echo ` + word + ` >> "$BENCH_TEST_LOG"`},
		Env:  []string{"BENCH_TEST_LOG=" + string(l)},
	}
}

// cmds returns one cmd per word.
func (l eventLog) cmds(words ...string) []Command {
	var out []Command
	for _, w := range words {
		out = append(out, l.cmd(w))
	}
	return out
}

func (l eventLog) events(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(string(l))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// loggedBenchmark returns a benchmark whose every command appends to log.
func loggedBenchmark(log eventLog, iterations int) Benchmark {
	return Benchmark{
		Name:       "logged",
		Setup:      log.cmds("setup1", "setup2"),
		Teardown:   log.cmds("teardown"),
		Ours:       Side{Run: log.cmd("ours"), Prepare: log.cmds("ours-prepare"), Cleanup: log.cmds("ours-cleanup")},
		Peer:       Side{Run: log.cmd("peer"), Prepare: log.cmds("peer-prepare"), Cleanup: log.cmds("peer-cleanup")},
		Target:     1000,
		Iterations: iterations,
	}
}

func TestRunInterleavesWarmUpThenOursAndPeer(t *testing.T) {
	log := newEventLog(t)
	res := (&Runner{}).Run(context.Background(), loggedBenchmark(log, 2))

	if res.Status != StatusMet {
		t.Fatalf("Status = %q (%s), want met", res.Status, res.Reason)
	}
	ours := []string{"ours-prepare", "ours", "ours-cleanup"}
	peer := []string{"peer-prepare", "peer", "peer-cleanup"}
	var want []string
	want = append(want, "setup1", "setup2")
	for range 3 { // warm-up and two timed iterations
		want = append(want, ours...)
		want = append(want, peer...)
	}
	want = append(want, "teardown")
	if got := log.events(t); !reflect.DeepEqual(got, want) {
		t.Errorf("commands ran in order\n%v\nwant\n%v", got, want)
	}
	if len(res.Ours.Samples) != 2 || len(res.Peer.Samples) != 2 {
		t.Errorf("got %d ours and %d peer samples, want 2 each (warm-up untimed)", len(res.Ours.Samples), len(res.Peer.Samples))
	}
	if res.Ratio <= 0 {
		t.Errorf("Ratio = %v, want > 0", res.Ratio)
	}
}

func TestRunIterationsOverride(t *testing.T) {
	b := Benchmark{Name: "true", Ours: Side{Run: Cmd("/bin/true")}, Peer: Side{Run: Cmd("true")}, Target: 1000, Iterations: 50}
	res := (&Runner{Iterations: 3}).Run(context.Background(), b)
	if res.Status != StatusMet {
		t.Fatalf("Status = %q (%s), want met", res.Status, res.Reason)
	}
	if res.Iterations != 3 || len(res.Ours.Samples) != 3 || len(res.Peer.Samples) != 3 {
		t.Errorf("Iterations = %d with %d/%d samples, want 3 with 3/3", res.Iterations, len(res.Ours.Samples), len(res.Peer.Samples))
	}
}

func TestRunMissedTarget(t *testing.T) {
	// /bin/sleep 0.01 cannot be as fast as a tenth of /bin/true.
	b := Benchmark{Name: "sleep", Ours: Side{Run: Cmd("/bin/sleep", "0.01")}, Peer: Side{Run: Cmd("/bin/true")}, Target: 0.1, Iterations: 2}
	res := (&Runner{}).Run(context.Background(), b)
	if res.Status != StatusMissed {
		t.Errorf("Status = %q (%s), want missed", res.Status, res.Reason)
	}
}

func TestRunResolvesRelativeProgramsAgainstDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bin", "tool"), "#!/bin/sh\nexit 0\n", 0o755)
	b := Benchmark{Name: "rel", Ours: Side{Run: Cmd("bin/tool")}, Peer: Side{Run: Cmd("/bin/true")}, Target: 1000, Iterations: 1}
	if res := (&Runner{Dir: dir}).Run(context.Background(), b); res.Status != StatusMet {
		t.Errorf("Status = %q (%s), want met", res.Status, res.Reason)
	}
}

func TestRunSkips(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bin", "not-executable"), "data", 0o644)
	tests := []struct {
		name       string
		edit       func(*Benchmark)
		wantReason string
	}{
		{"our binary not built", func(b *Benchmark) { b.Ours.Run = Cmd("bin/berth", "version") },
			"ours: bin/berth not found (run make build)"},
		{"peer not installed", func(b *Benchmark) { b.Peer.Run = Cmd("berth-bench-no-such-peer") },
			"peer: berth-bench-no-such-peer not found in PATH"},
		{"peer absolute path missing", func(b *Benchmark) { b.Peer.Run = Cmd("/nonexistent/runc", "run") },
			"peer: /nonexistent/runc not found"},
		{"not executable", func(b *Benchmark) { b.Ours.Run = Cmd("bin/not-executable") },
			"ours: bin/not-executable is not an executable file"},
		{"cleanup program missing", func(b *Benchmark) { b.Peer.Cleanup = []Command{Cmd("berth-bench-no-such-cleaner")} },
			"peer cleanup: berth-bench-no-such-cleaner not found in PATH"},
		{"requirement unmet", func(b *Benchmark) { b.Requires = func() error { return errString("needs root") } },
			"needs root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := newEventLog(t)
			b := loggedBenchmark(log, 1)
			tt.edit(&b)
			res := (&Runner{Dir: dir}).Run(context.Background(), b)
			if res.Status != StatusSkipped || res.Reason != tt.wantReason {
				t.Errorf("got %q %q, want skipped %q", res.Status, res.Reason, tt.wantReason)
			}
			if ev := log.events(t); len(ev) != 0 {
				t.Errorf("a skipped benchmark ran commands: %v", ev)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestRunFailures(t *testing.T) {
	failing := Command{Argv: []string{"/bin/sh", "-c", "echo first line >&2; echo boom >&2; exit 3"}}
	tests := []struct {
		name       string
		edit       func(*Benchmark, eventLog)
		wantReason []string
		wantTail   string
		wantEvents []string
	}{
		{
			name:       "ours fails in warm-up",
			edit:       func(b *Benchmark, _ eventLog) { b.Ours.Run = failing },
			wantReason: []string{"ours warm-up:", "exit status 3"},
			wantTail:   "first line\nboom",
			wantEvents: []string{"setup1", "setup2", "ours-prepare", "ours-cleanup", "teardown"},
		},
		{
			name: "peer fails on its second run",
			edit: func(b *Benchmark, log eventLog) {
				b.Peer.Run = Command{
					Argv: []string{"/bin/sh", "-c", `if [ -e "$MARK" ]; then echo again >&2; exit 1; fi; touch "$MARK"`},
					Env:  []string{"MARK=" + string(log) + ".mark"},
				}
			},
			wantReason: []string{"peer run 1/1:", "exit status 1"},
			wantTail:   "again",
			wantEvents: []string{"setup1", "setup2",
				"ours-prepare", "ours", "ours-cleanup", "peer-prepare", "peer-cleanup",
				"ours-prepare", "ours", "ours-cleanup", "peer-prepare", "peer-cleanup",
				"teardown"},
		},
		{
			name:       "setup fails, teardown still runs",
			edit:       func(b *Benchmark, log eventLog) { b.Setup = []Command{log.cmd("setup1"), Cmd("/bin/false")} },
			wantReason: []string{"setup: /bin/false: exit status 1"},
			wantEvents: []string{"setup1", "teardown"},
		},
		{
			name:       "teardown fails",
			edit:       func(b *Benchmark, _ eventLog) { b.Teardown = []Command{failing} },
			wantReason: []string{"teardown:", "exit status 3"},
			wantTail:   "first line\nboom",
		},
		{
			name:       "prepare fails",
			edit:       func(b *Benchmark, _ eventLog) { b.Peer.Prepare = []Command{failing} },
			wantReason: []string{"peer warm-up prepare:"},
			wantTail:   "first line\nboom",
			wantEvents: []string{"setup1", "setup2", "ours-prepare", "ours", "ours-cleanup", "teardown"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := newEventLog(t)
			b := loggedBenchmark(log, 1)
			tt.edit(&b, log)
			res := (&Runner{}).Run(context.Background(), b)
			if res.Status != StatusFailed {
				t.Fatalf("Status = %q, want failed", res.Status)
			}
			for _, want := range tt.wantReason {
				if !strings.Contains(res.Reason, want) {
					t.Errorf("Reason %q does not contain %q", res.Reason, want)
				}
			}
			if res.StderrTail != tt.wantTail {
				t.Errorf("StderrTail = %q, want %q", res.StderrTail, tt.wantTail)
			}
			if res.Ours != nil || res.Peer != nil || res.Ratio != 0 {
				t.Errorf("a failed benchmark reports timings: %+v", res)
			}
			if tt.wantEvents != nil {
				if got := log.events(t); !reflect.DeepEqual(got, tt.wantEvents) {
					t.Errorf("commands ran in order\n%v\nwant\n%v", got, tt.wantEvents)
				}
			}
		})
	}
}

func TestRunTimeout(t *testing.T) {
	b := Benchmark{Name: "slow", Ours: Side{Run: Cmd("/bin/sleep", "10")}, Peer: Side{Run: Cmd("/bin/true")}, Target: 1, Iterations: 1}
	res := (&Runner{Timeout: 50 * time.Millisecond}).Run(context.Background(), b)
	if res.Status != StatusFailed || !strings.Contains(res.Reason, "no exit within the 50ms timeout") {
		t.Errorf("got %q %q, want failed with a timeout", res.Status, res.Reason)
	}
}

func TestRunCancelledStillTearsDown(t *testing.T) {
	log := newEventLog(t)
	b := loggedBenchmark(log, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := (&Runner{}).Run(ctx, b)
	if res.Status != StatusFailed {
		t.Errorf("Status = %q, want failed", res.Status)
	}
	if got := log.events(t); !reflect.DeepEqual(got, []string{"teardown"}) {
		t.Errorf("commands ran %v, want only the teardown", got)
	}
}

func TestStderrTailKeepsTheEndAtALineBoundary(t *testing.T) {
	script := `i=0; while [ $i -lt 500 ]; do echo "line $i of noise"; i=$((i+1)); done >&2; exit 1`
	b := Benchmark{Name: "noisy", Ours: Side{Run: Cmd("/bin/sh", "-c", script)}, Peer: Side{Run: Cmd("/bin/true")}, Target: 1, Iterations: 1}
	res := (&Runner{}).Run(context.Background(), b)
	if len(res.StderrTail) > stderrTailBytes {
		t.Errorf("tail is %d bytes, want at most %d", len(res.StderrTail), stderrTailBytes)
	}
	if !strings.HasPrefix(res.StderrTail, "line ") || !strings.HasSuffix(res.StderrTail, "line 499 of noise") {
		t.Errorf("tail should hold whole lines up to the last; got %q…%q", res.StderrTail[:20], res.StderrTail[len(res.StderrTail)-20:])
	}
}

func TestValidate(t *testing.T) {
	good := Benchmark{Name: "run-vs-runc", Ours: Side{Run: Cmd("bin/berth")}, Peer: Side{Run: Cmd("runc")}, Target: 1.2, Iterations: 10}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	tests := []struct {
		name string
		edit func(*Benchmark)
		want string
	}{
		{"bad name", func(b *Benchmark) { b.Name = "Run_vs_runc" }, "lowercase"},
		{"no target", func(b *Benchmark) { b.Target = 0 }, "target 0 must be a positive ratio"},
		{"no iterations", func(b *Benchmark) { b.Iterations = 0 }, "iterations 0 must be at least 1"},
		{"empty peer", func(b *Benchmark) { b.Peer.Run = Command{} }, "peer command has no program"},
		{"empty setup", func(b *Benchmark) { b.Setup = []Command{{}} }, "setup command has no program"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := good
			tt.edit(&b)
			err := b.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if res := (&Runner{}).Run(context.Background(), b); res.Status != StatusFailed {
				t.Errorf("Run of an invalid benchmark: Status = %q, want failed", res.Status)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}
