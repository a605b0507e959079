package cgroupctl

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// helperEnv makes the test binary a workload (see TestMain): every helper
// first reads a line on stdin, so it can be attached to its group before
// it does any work.
const helperEnv = "BERTH_CGROUP_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "alloc":
		helperAlloc()
	case "spin":
		helperSpin()
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func waitRelease() {
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// helperAlloc allocates and touches BERTH_HELPER_MIB MiB, says "allocated"
// and then idles until killed.
func helperAlloc() {
	waitRelease()
	mib, _ := strconv.Atoi(os.Getenv("BERTH_HELPER_MIB"))
	var keep [][]byte
	for range mib {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	fmt.Println("allocated")
	for {
		time.Sleep(time.Hour)
		runtime.KeepAlive(keep)
	}
}

// helperSpin burns one CPU until killed.
func helperSpin() {
	runtime.GOMAXPROCS(1)
	waitRelease()
	x := 0
	for {
		x++
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates real cgroups (CI runs the tests as root)")
	}
}

var parentSeq atomic.Uint64

// testParent is a cgroup parent unique to this test binary and call, named
// berth* so that CI's cleanup recognises it.
func testParent() string {
	return fmt.Sprintf("berth-test-%d-%d", os.Getpid(), parentSeq.Add(1))
}

// newTestController returns a configured controller under a fresh parent.
// When t ends, every group it made is deleted (processes moved out by
// Delete are killed first by the tests that made them) and the parent is
// removed from every hierarchy.
func newTestController(t *testing.T, extra string) (*Controller, plugin.ConfigureRequest) {
	t.Helper()
	requireRoot(t)
	parent := testParent()
	cfg := fmt.Sprintf(`{"parent":%q,"sample_interval":"200ms"%s}`, parent, extra)
	req := plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(cfg)}, APIVersion: plugin.APIVersion, StateDir: t.TempDir()}
	c := New(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}}))
	if err := c.Configure(context.Background(), req); err != nil {
		t.Fatalf("Configure(%s): %v", cfg, err)
	}
	t.Cleanup(func() {
		groups, _ := c.List(context.Background())
		for _, g := range groups {
			for _, pid := range g.Pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err := c.Delete(context.Background(), g.ID); err != nil {
				t.Errorf("cleanup: Delete(%q): %v", g.ID, err)
			}
		}
		c.Close()
		removeParent(t, parent)
	})
	return c, req
}

// removeParent removes the parent cgroup in every hierarchy it exists in,
// failing the test when something is left inside it.
func removeParent(t *testing.T, parent string) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("cgroup %s left behind", filepath.Join(d, e.Name()))
				_ = os.Remove(filepath.Join(d, e.Name()))
			}
		}
		if err := os.Remove(d); err != nil {
			t.Errorf("remove test parent cgroup %s: %v", d, err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// workload is a helper process started blocked, attached to its group,
// then released.
type workload struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	done   chan error
}

// startWorkload starts the helper mode (or a shell script when mode is
// "sh"), attaches it to group id, and releases it.
func startWorkload(t *testing.T, c resources.Controller, id, mode string, env ...string) *workload {
	t.Helper()
	var cmd *exec.Cmd
	if mode == "sh" {
		cmd = exec.Command("sh", "-c", "read _; "+env[0])
		env = nil
	} else {
		cmd = exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A pipe of our own: exec's StdoutPipe is closed by Wait, which would
	// race with reading what the workload said just before it exited.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pr.Close() })
	cmd.Stdout = pw
	cmd.Stderr = testWriter{t}
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		t.Fatalf("start %s: %v", mode, err)
	}
	w := &workload{cmd: cmd, stdout: bufio.NewReader(pr), done: make(chan error, 1)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
	})
	if err := c.Attach(context.Background(), id, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("Attach(%q, %d): %v", id, cmd.Process.Pid, err)
	}
	go func() { w.done <- cmd.Wait() }()
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatalf("release %s: %v", mode, err)
	}
	return w
}

// readLine returns the next line the workload prints, failing the test
// (and killing the workload) when none comes within timeout.
func (w *workload) readLine(t *testing.T, timeout time.Duration) string {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := w.stdout.ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("workload said %q then: %v", r.line, r.err)
		}
		return r.line
	case <-time.After(timeout):
		_ = w.cmd.Process.Kill()
		t.Fatalf("workload printed nothing within %s", timeout)
		return ""
	}
}

// waitEvent reads events until one matches or timeout passes.
func waitEvent(t *testing.T, events <-chan resources.LimitEvent, timeout time.Duration, what string, match func(resources.LimitEvent) bool) resources.LimitEvent {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events channel closed while waiting for %s", what)
			}
			t.Logf("event: %+v", ev)
			if match(ev) {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, timeout)
		}
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor bounds every wait for something that happens eventually.
const waitFor = 30 * time.Second
