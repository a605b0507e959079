package sandbox_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
)

// reaperBinary is the real berth-sandbox-init, reached through a symlink
// named berth-init (what a container's --init runs). No root needed.
func reaperBinary(t *testing.T) string {
	t.Helper()
	bin := initPath // built by TestMain when root
	if bin == "" {
		var err error
		if bin, err = sandboxtest.BuildInit(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(t.TempDir(), sandbox.ReaperName)
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// exitCode waits for cmd and returns its exit status (128+n for signal n,
// as a shell reports it).
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// TestReaper runs the reaping init as a process of its own (not PID 1: it
// makes itself a subreaper, so orphans come to it all the same).
func TestReaper(t *testing.T) {
	bin := reaperBinary(t)

	t.Run("exit codes pass through", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want int
		}{
			{[]string{"--", "sh", "-c", "exit 7"}, 7},
			{[]string{"--", "true"}, 0},
			{[]string{"sh", "-c", "exit 3"}, 3}, // "--" is optional
			{[]string{"--", "sh", "-c", "kill -KILL $$"}, 128 + 9},
			{[]string{"--", "no-such-command-berth"}, 127},
			{[]string{"--", "/etc/passwd"}, 126},
			{nil, 2},
		} {
			cmd := exec.Command(bin, tc.args...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if got := exitCode(t, cmd); got != tc.want {
				t.Errorf("berth-init %q exited %d, want %d", tc.args, got, tc.want)
			}
		}
	})

	// start runs script under the init and waits until it printed "ready".
	start := func(t *testing.T, script string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, "--", "sh", "-c", script)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("script said %q, %v", line, err)
		}
		return cmd
	}

	t.Run("signals are forwarded to the command", func(t *testing.T) {
		// The command handles TERM; the init itself would die of it
		// otherwise (not PID 1 here), with 143.
		cmd := start(t, `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if got := exitCode(t, cmd); got != 42 {
			t.Fatalf("exit %d after SIGTERM, want the trap's 42", got)
		}
		// A signal the command does not handle kills it: 128+n.
		cmd = start(t, `echo ready; exec sleep 100`)
		if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		if got := exitCode(t, cmd); got != 128+int(syscall.SIGUSR1) {
			t.Fatalf("exit %d after SIGUSR1, want %d", got, 128+int(syscall.SIGUSR1))
		}
	})

	t.Run("orphaned grandchild is reaped", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "gc")
		// The grandchild is started by a subshell that exits at once, so
		// it is orphaned and reparented to the init; once reparented it
		// records its parent and exits. The command then waits until it
		// is gone from /proc (a zombie nobody reaps stays there): exit 3
		// if that takes 60 s.
		script := `
( sh -c 'echo $$ > "$1.pid"
  while :; do read -r _ _ _ ppid _ < /proc/$$/stat; [ "$ppid" = "$2" ] && break; sleep 0.01; done
  echo $ppid > "$1.tmp"; mv "$1.tmp" "$1.ppid"' _ "$1" "$PPID" & )
i=0
while [ ! -e "$1.ppid" ]; do i=$((i+1)); [ $i -gt 6000 ] && exit 4; sleep 0.01; done
gc=$(cat "$1.pid")
i=0
while [ -e /proc/$gc ]; do i=$((i+1)); [ $i -gt 6000 ] && exit 3; sleep 0.01; done
exit 0`
		cmd := exec.Command(bin, "--", "sh", "-c", script, "_", f)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.AfterFunc(90*time.Second, func() { _ = cmd.Process.Kill() })
		defer deadline.Stop()
		if got := exitCode(t, cmd); got != 0 {
			t.Fatalf("script exited %d (3: the orphan stayed a zombie, 4: never reparented to the init)", got)
		}
		b, err := os.ReadFile(f + ".ppid")
		if err != nil {
			t.Fatal(err)
		}
		if ppid, _ := strconv.Atoi(strings.TrimSpace(string(b))); ppid != cmd.Process.Pid {
			t.Fatalf("orphan's parent was %d, want the init %d", ppid, cmd.Process.Pid)
		}
	})
}
