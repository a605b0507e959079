package rpolicy

// The engine against real processes through ProcSource. The CPU test is
// CPU-heavy (half a CPU for ~3 s); tests run serially.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/resources"
)

const helperEnv = "BERTH_RPOLICY_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "alloc":
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
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
	case "spin":
		runtime.GOMAXPROCS(1)
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		for x := 0; ; x++ {
		}
	}
}

const waitFor = 30 * time.Second

type proc struct {
	cmd  *exec.Cmd
	out  *bufio.Reader
	done chan error
}

// start runs a helper blocked on stdin, attaches it to group id, then
// releases it.
func start(t *testing.T, e *Engine, id, mode string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: bufio.NewReader(pr), done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-p.done
		_ = pr.Close()
	})
	if _, err := e.Attach(id, cmd.Process.Pid); err != nil {
		t.Fatalf("Attach(%s, %d): %v", id, cmd.Process.Pid, err)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	return p
}

func newEngine(t *testing.T) (*Engine, chan resources.LimitEvent) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("ProcSource reads Linux procfs")
	}
	events := make(chan resources.LimitEvent, 100)
	e := NewEngine(ProcSource{}, EngineOptions{SampleInterval: 100 * time.Millisecond, Publish: func(ev resources.LimitEvent) {
		select {
		case events <- ev:
		default:
		}
	}})
	t.Cleanup(e.Close)
	return e, events
}

func waitEvent(t *testing.T, events chan resources.LimitEvent, what string, match func(resources.LimitEvent) bool) resources.LimitEvent {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case ev := <-events:
			t.Logf("event: %+v", ev)
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, waitFor)
		}
	}
}

func procState(t *testing.T, pid int) (state string, nice int) {
	t.Helper()
	f, err := ProcSource{}.statFields(pid)
	if err != nil {
		t.Fatal(err)
	}
	nice, _ = strconv.Atoi(f[16])
	return f[0], nice
}

func TestEngineHardLimitKills(t *testing.T) {
	e, events := newEngine(t)
	if err := e.Add("hard", resources.Limits{MemoryBytes: 48 << 20}, false); err != nil {
		t.Fatal(err)
	}
	p := start(t, e, "hard", "alloc", "BERTH_HELPER_MIB=160")
	ev := waitEvent(t, events, "oom_kill event", func(ev resources.LimitEvent) bool {
		return ev.GroupID == "hard" && ev.Kind == resources.EventOOMKill
	})
	if ev.Resource != resources.ResourceMemory || ev.Count < 1 || !strings.Contains(ev.Message, "hard") {
		t.Errorf("event %+v: want memory, count >= 1, naming the group", ev)
	}
	select {
	case err := <-p.done:
		p.done <- err
		ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("helper ended with %v, want SIGKILL", err)
		}
	case <-time.After(waitFor):
		t.Fatal("helper above its hard limit still runs")
	}
	u, err := e.Usage("hard")
	if err != nil || u.MemoryPeakBytes <= 48<<20 {
		t.Errorf("Usage = %+v, %v; want a peak above the limit that triggered the kill", u, err)
	}
}

func TestEngineSoftLimitBackground(t *testing.T) {
	e, events := newEngine(t)
	if err := e.Add("soft", resources.Limits{MemorySoftBytes: 32 << 20}, false); err != nil {
		t.Fatal(err)
	}
	p := start(t, e, "soft", "alloc", "BERTH_HELPER_MIB=64")
	waitEvent(t, events, "memory_pressure event", func(ev resources.LimitEvent) bool {
		return ev.GroupID == "soft" && ev.Kind == resources.EventMemoryPressure
	})
	if line, err := p.out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "allocated" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	state, nice := procState(t, p.cmd.Process.Pid)
	if state == "Z" || nice != 19 {
		t.Errorf("helper above its soft limit: state %s nice %d, want alive at nice 19 (background)", state, nice)
	}
}

func TestEngineCPUQuota(t *testing.T) {
	e, events := newEngine(t)
	if err := e.Add("quota", resources.Limits{CPUs: 0.5}, false); err != nil {
		t.Fatal(err)
	}
	// A spinner with no limit, measured over the same windows, says how
	// much CPU one process could get meanwhile (CI runs packages in
	// parallel on 2 CPUs): the quota's lower bound is relative to it.
	if err := e.Add("free", resources.Limits{}, false); err != nil {
		t.Fatal(err)
	}
	start(t, e, "quota", "spin")
	start(t, e, "free", "spin")
	time.Sleep(300 * time.Millisecond)
	for attempt := 1; ; attempt++ {
		q0, err := e.Usage("quota")
		if err != nil {
			t.Fatal(err)
		}
		f0, err := e.Usage("free")
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		time.Sleep(3 * time.Second)
		q1, err := e.Usage("quota")
		if err != nil {
			t.Fatal(err)
		}
		f1, err := e.Usage("free")
		if err != nil {
			t.Fatal(err)
		}
		elapsed := float64(time.Since(t0))
		share := float64(q1.CPUUsageNanos-q0.CPUUsageNanos) / elapsed
		available := float64(f1.CPUUsageNanos-f0.CPUUsageNanos) / elapsed
		t.Logf("cpus=0.5 by SIGSTOP/SIGCONT duty cycling: %.2f of a CPU while an unlimited spinner got %.2f, %d throttles (attempt %d)",
			share, available, q1.CPUThrottledPeriods, attempt)
		if share > 0.60 {
			t.Fatalf("cpus=0.5 used %.2f of a CPU, want at most 0.60", share)
		}
		// At least 60% of what the limit allows under the current load.
		if want := 0.6 * min(0.5, available); share >= want {
			break
		} else if attempt == 3 {
			t.Fatalf("cpus=0.5 used %.2f of a CPU three times while an unlimited spinner got %.2f, want at least %.2f", share, available, want)
		}
	}
	waitEvent(t, events, "cpu_throttled event", func(ev resources.LimitEvent) bool {
		return ev.GroupID == "quota" && ev.Kind == resources.EventCPUThrottled
	})
}

func TestEngineNeverResumesPausedGroup(t *testing.T) {
	e, _ := newEngine(t)
	if err := e.Add("paused", resources.Limits{CPUs: 0.2}, false); err != nil {
		t.Fatal(err)
	}
	p := start(t, e, "paused", "spin")
	pid := p.cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	// Lifecycle marks the group paused, then isolation freezes it.
	if err := e.SetPaused("paused", true); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	u0, _ := e.Usage("paused")
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		if state, _ := procState(t, pid); state != "T" {
			t.Fatalf("paused group's process is in state %s: the duty cycle resumed it", state)
		}
	}
	u1, _ := e.Usage("paused")
	if u1.CPUUsageNanos != u0.CPUUsageNanos {
		t.Errorf("paused group used CPU: %d → %d ns", u0.CPUUsageNanos, u1.CPUUsageNanos)
	}
	// Unpaused and thawed, it runs (throttled) again.
	if err := e.SetPaused("paused", false); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	deadline := time.Now().Add(waitFor)
	for {
		u, _ := e.Usage("paused")
		if u.CPUUsageNanos > u1.CPUUsageNanos {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("group never ran again after it was unpaused")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEngineFollowsDescendants(t *testing.T) {
	e, _ := newEngine(t)
	if err := e.Add("tree", resources.Limits{}, false); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	cmd.SysProcAttr = nil
	if _, err := e.Attach("tree", cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for {
		u, err := e.Usage("tree")
		if err != nil {
			t.Fatal(err)
		}
		if u.Pids == 3 {
			break
		}
		if time.Now().After(deadline) {
			pids, _ := e.Pids("tree")
			t.Fatalf("group has %d processes (%v), want the shell and its two children", u.Pids, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := e.Attach("tree", 1<<30); err == nil {
		t.Error("Attach of a pid that does not exist succeeded")
	}
	if _, err := e.Attach("nope", os.Getpid()); err == nil {
		t.Error("Attach to a missing group succeeded")
	}
}

func TestNiceForShares(t *testing.T) {
	for shares, want := range map[uint64]int{0: 0, 1024: 0, 256: 6, 512: 3, 2: 19, 4096: -6, 262144: -20} {
		if got := NiceForShares(shares); got != want {
			t.Errorf("NiceForShares(%d) = %d, want %d", shares, got, want)
		}
	}
}

// TestEngineOneScheduler checks that groups cost no goroutines: fifty
// groups with every sampled limit, each with a process, are served by the
// engine's one scheduler.
func TestEngineOneScheduler(t *testing.T) {
	e, _ := newEngine(t)
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for i := range 50 {
		id := fmt.Sprintf("g%02d", i)
		if err := e.Add(id, resources.Limits{CPUs: 0.5, MemoryBytes: 64 << 20, MemorySoftBytes: 32 << 20}, false); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if _, err := e.Attach(id, cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // several scheduler ticks
	// exec.Cmd keeps no goroutine for a started process without pipes.
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines before 50 groups, %d with them: want no goroutine per group", before, after)
	}
	for i := range 50 {
		if pids, err := e.Pids(fmt.Sprintf("g%02d", i)); err != nil || len(pids) != 1 {
			t.Errorf("group g%02d members %v, %v; want its sleep", i, pids, err)
		}
	}
}
