package manager

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

func TestProcTableAndDescendants(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	self, child := os.Getpid(), cmd.Process.Pid
	pids := descendants(self)
	if pids[0] != self || !slices.Contains(pids, child) {
		t.Fatalf("descendants(%d) = %v, want it and %d", self, pids, child)
	}
	tab := procTable([]int{child, 1 << 30})
	if !slices.Equal(tab.Titles, []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}) || len(tab.Processes) != 1 {
		t.Fatalf("procTable = %+v; want one row (the missing pid skipped)", tab)
	}
	row := tab.Processes[0]
	if row[1] != strconv.Itoa(child) || row[2] != strconv.Itoa(self) || row[7] != "sleep 30" || !strings.Contains(row[6], ":") {
		t.Errorf("row = %q", row)
	}
	if _, err := exec.LookPath("ps"); err == nil {
		res, err := psTable(context.Background(), []string{"-o", "pid,args"}, []int{child})
		if err != nil || len(res.Processes) != 1 || res.Processes[0][0] != strconv.Itoa(child) || res.Processes[0][1] != "sleep 30" {
			t.Errorf("psTable = %+v, %v", res, err)
		}
		if _, err := psTable(context.Background(), []string{"-o", "args"}, []int{child}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ps without a PID column: %v", err)
		}
	}
}

func TestTTYName(t *testing.T) {
	for nr, want := range map[int64]string{0: "?", 136<<8 | 3: "pts/3", 4<<8 | 1: "tty1", 4<<8 | 65: "ttyS1", 137 << 8: "pts/256"} {
		if got := ttyName(nr); got != want {
			t.Errorf("ttyName(%#x) = %s, want %s", nr, got, want)
		}
	}
	if got := unescapeMountinfo(`/a\040b/c\134d`); got != `/a b/c\d` {
		t.Errorf("unescape = %q", got)
	}
}

func TestTopAndRestartPolicy(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Top(ctx, "web", nil); !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "created") {
		t.Errorf("Top of a created container: %v", err)
	}
	got, err := m.SetRestartPolicy(ctx, "web", lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 2})
	if err != nil || got.Config.Restart != (lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 2}) {
		t.Fatalf("SetRestartPolicy = %+v, %v", got.Config.Restart, err)
	}
	if c2 := stateOf(t, m, c.ID); c2.Config.Restart.Name != "on-failure" {
		t.Errorf("stored policy %+v", c2.Config.Restart)
	}
	for _, bad := range []lifecycle.RestartPolicy{{Name: "sometimes"}, {Name: "always", MaxRetries: 1}, {Name: "on-failure", MaxRetries: -1}} {
		if _, err := m.SetRestartPolicy(ctx, "web", bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("SetRestartPolicy(%+v): %v", bad, err)
		}
	}
	if _, err := m.Create(ctx, "auto", lifecycle.Config{Image: "alpine", Labels: map[string]string{labelAutoRemove: "true"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetRestartPolicy(ctx, "auto", lifecycle.RestartPolicy{Name: "always"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("restart policy on a --rm container: %v", err)
	}
}
