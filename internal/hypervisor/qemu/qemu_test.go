package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// tuneArgs are the boot-time kernel arguments of the research file.
var tuneArgs = []string{"quiet", "panic=-1", "cryptomgr.notests", "no_timer_check", "i8042.noaux", "i8042.nokbd",
	"i8042.nopnp", "8250.nr_uarts=1", "mitigations=off", "random.trust_cpu=on"}

// testDriver is a driver for the tests: TCG unless BERTH_TEST_QEMU_ACCEL
// says otherwise (CI has no KVM), machine from BERTH_TEST_QEMU_MACHINE.
func testDriver(t *testing.T, opts Options) hypervisor.Driver {
	t.Helper()
	if opts.Accel == "" {
		opts.Accel = os.Getenv("BERTH_TEST_QEMU_ACCEL")
		if opts.Accel == "" {
			opts.Accel = "tcg"
		}
	}
	if opts.Machine == "" {
		opts.Machine = os.Getenv("BERTH_TEST_QEMU_MACHINE")
	}
	if opts.TBSizeMiB == 0 {
		opts.TBSizeMiB, _ = strconv.Atoi(os.Getenv("BERTH_TEST_QEMU_TBSIZE"))
	}
	opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "qemu", Output: testWriter{t}, Level: hclog.Debug})
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// testConfig is a 256 MiB, 2-vCPU VM in a fresh short run dir.
func testConfig(t *testing.T, a assets) hypervisor.Config {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "hv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() { // what the guest and qemu said
			for _, f := range []string{"console.log", stderrLog} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("%s (tail):\n%s", f, strings.Join(lines[max(0, len(lines)-60):], "\n"))
			}
		}
		os.RemoveAll(dir)
	})
	return hypervisor.Config{
		Kernel: a.kernel, Initrd: a.initrd, Cmdline: tuneArgs,
		CPUs: 2, MemoryBytes: 256 << 20,
		ConsoleLog: filepath.Join(dir, "console.log"), RunDir: dir,
	}
}

// agent is the test guest's line protocol over DialAgent's conn.
type agent struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialAgent(t *testing.T, ctx context.Context, m hypervisor.Machine) *agent {
	t.Helper()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatalf("DialAgent: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &agent{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// call sends a command and returns the reply line (within 90 s: a guest
// still booting under TCG and -race answers late).
func (a *agent) call(cmd string) string {
	a.t.Helper()
	a.conn.SetDeadline(time.Now().Add(90 * time.Second))
	if _, err := fmt.Fprintln(a.conn, cmd); err != nil {
		a.t.Fatalf("agent %q: %v", cmd, err)
	}
	line, err := a.r.ReadString('\n')
	if err != nil {
		a.t.Fatalf("agent %q: %v", cmd, err)
	}
	return strings.TrimSpace(line)
}

func (a *agent) count() int {
	a.t.Helper()
	s := a.call("count")
	n, err := strconv.Atoi(strings.TrimPrefix(s, "count "))
	if err != nil {
		a.t.Fatalf("count reply %q", s)
	}
	return n
}

var tickRE = regexp.MustCompile(`(?m)^tick (\d+)\r?$`)

// ticks returns the tick numbers in the console log, in order.
func ticks(t *testing.T, cfg hypervisor.Config) []int {
	t.Helper()
	b, err := os.ReadFile(cfg.ConsoleLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, m := range tickRE.FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		out = append(out, n)
	}
	return out
}

func lastTick(t *testing.T, cfg hypervisor.Config) int {
	ts := ticks(t, cfg)
	if len(ts) == 0 {
		return 0
	}
	return ts[len(ts)-1]
}

// waitTick waits until the console shows a tick above n and returns it.
func waitTick(t *testing.T, cfg hypervisor.Config, n int) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if last := lastTick(t, cfg); last > n {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("console shows no tick after %d within 60s", n)
	return 0
}

// assertGone checks that the VM's process and sockets are gone.
func assertGone(t *testing.T, m hypervisor.Machine, cfg hypervisor.Config) {
	t.Helper()
	if err := syscall.Kill(m.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu %d still exists (kill 0: %v)", m.Pid(), err)
	}
	for _, s := range []string{qmpSocket, agentSocket} {
		if _, err := os.Stat(filepath.Join(cfg.RunDir, s)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left behind (%v)", s, err)
		}
	}
}

func startVM(t *testing.T, ctx context.Context, d hypervisor.Driver, cfg hypervisor.Config) hypervisor.Machine {
	t.Helper()
	m, err := d.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Kill(); m.Wait() })
	return m
}

// TestLifecycle boots a VM (the one cold boot of this test), talks to its
// agent, pauses and resumes it, saves it, restores the save into a second
// qemu that continues the counter, and shuts that one down. Root only.
func TestLifecycle(t *testing.T) {
	a := bootAssets(t)
	d := testDriver(t, Options{})
	cfg := testConfig(t, a)
	cfg.Balloon = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t0 := time.Now()
	m := startVM(t, ctx, d, cfg)
	ag := dialAgent(t, ctx, m)
	if got := ag.call("ping hello"); got != "pong hello" {
		t.Fatalf("echo: got %q", got)
	}
	t.Logf("boot to agent echo: %v (%s)", time.Since(t0), d.Platform().Name)
	waitTick(t, cfg, 0)
	if got := ag.count(); got < 1 {
		t.Fatalf("count %d", got)
	}

	// Pause stops the guest: no tick is printed while paused.
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Pause(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a tick being printed at the stop may still land
	paused := lastTick(t, cfg)
	time.Sleep(700 * time.Millisecond)
	if now := lastTick(t, cfg); now != paused {
		t.Fatalf("counter moved while paused: %d -> %d", paused, now)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitTick(t, cfg, paused)

	// Balloon: shrink the guest, the balloon device follows.
	if err := m.SetBalloon(ctx, 192<<20); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "balloon at 192 MiB", func() bool {
		act, err := m.(*vm).balloonActual(ctx)
		return err == nil && act == 192<<20
	})
	if err := m.SetBalloon(ctx, 256<<20); err != nil {
		t.Fatal(err)
	}

	// Save: the VM stays paused and the state is on disk.
	before := ag.count()
	saveDir := filepath.Join(cfg.RunDir, "ck")
	t1 := time.Now()
	if err := m.Save(ctx, saveDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("save (plain, -m 256): %v", time.Since(t1))
	ck, err := hypervisor.ReadCheckpoint(saveDir)
	if err != nil {
		t.Fatal(err)
	}
	if ck.SharedRAM || ck.MemoryMiB != 256 || !ck.Balloon {
		t.Fatalf("checkpoint %+v", ck)
	}
	saved := lastTick(t, cfg)
	if saved < before {
		t.Fatalf("console tick %d below agent count %d", saved, before)
	}
	ag.conn.Close()
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(); err != nil {
		t.Fatalf("Wait after Kill: %v", err)
	}
	assertGone(t, m, cfg)

	// A mismatching config is refused before qemu starts.
	bad := cfg
	bad.CPUs = 1
	if _, err := d.Restore(ctx, bad, saveDir); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "cpus") {
		t.Fatalf("restore with other cpus: %v", err)
	}

	// Restore in a new qemu (same run dir, same console log): the counter
	// continues from where it was saved, not from a reboot.
	t2 := time.Now()
	m2, err := d.Restore(ctx, cfg, saveDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Kill(); m2.Wait() })
	t.Logf("restore (plain, -m 256): %v", time.Since(t2))
	next := waitTick(t, cfg, saved)
	all := ticks(t, cfg)
	for i := 1; i < len(all); i++ {
		if all[i] < all[i-1] {
			t.Fatalf("counter went back from %d to %d: the guest rebooted", all[i-1], all[i])
		}
	}
	t.Logf("saved at tick %d, first tick after restore %d", saved, next)
	ag2 := dialAgent(t, ctx, m2)
	if got := ag2.call("ping again"); got != "pong again" {
		t.Fatalf("echo after restore: %q", got)
	}
	if c := ag2.count(); c < before {
		t.Fatalf("count after restore %d < %d before save", c, before)
	}

	// Shutdown: ACPI power-off, qemu exits, nothing left behind. Without
	// the power-button modules the guest ignores it and Shutdown kills the
	// VM when its context ends.
	t3 := time.Now()
	if a.powerButton {
		sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
		defer scancel()
		if err := m2.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Log("the kernel store lacks button/evdev: testing Shutdown's kill at the deadline")
		sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
		defer scancel()
		if err := m2.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown of a guest without a power button: %v", err)
		}
	}
	t.Logf("shutdown: %v", time.Since(t3))
	if err := m2.Wait(); err != nil {
		t.Fatalf("Wait after Shutdown: %v", err)
	}
	assertGone(t, m2, cfg)
	if err := m2.Pause(ctx); !errors.Is(err, hypervisor.ErrExited) {
		t.Fatalf("Pause after exit: %v", err)
	}
}

// TestSharedMemorySaveRestore saves and restores a VM whose RAM is a shared
// file (x-ignore-shared): the state file holds only device state and the
// counter continues after restore. Root only.
func TestSharedMemorySaveRestore(t *testing.T) {
	a := bootAssets(t)
	d := testDriver(t, Options{})
	cfg := testConfig(t, a)
	cfg.MemoryFile = filepath.Join(cfg.RunDir, "ram")
	disk := filepath.Join(cfg.RunDir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Disks = []hypervisor.Disk{{Path: disk}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	m := startVM(t, ctx, d, cfg)
	ag := dialAgent(t, ctx, m)
	if got := ag.call("ping x"); got != "pong x" {
		t.Fatalf("echo: %q", got)
	}
	before := ag.count()
	saveDir := filepath.Join(cfg.RunDir, "ck")
	t1 := time.Now()
	if err := m.Save(ctx, saveDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("save (memory file, -m 256): %v", time.Since(t1))
	fi, err := os.Stat(filepath.Join(saveDir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 8<<20 {
		t.Fatalf("state file %d bytes: guest RAM went into the stream despite x-ignore-shared", fi.Size())
	}
	t.Logf("state file with memory file: %d bytes", fi.Size())
	saved := lastTick(t, cfg)
	ag.conn.Close()
	m.Kill()
	m.Wait()
	assertGone(t, m, cfg)

	noRAM := cfg
	noRAM.MemoryFile = ""
	if _, err := d.Restore(ctx, noRAM, saveDir); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("restore without the memory file: %v", err)
	}

	// The restore may point the disk at another file (a clone): disks are
	// not in the migration stream, only their device state.
	moved := filepath.Join(cfg.RunDir, "disk-clone.img")
	if err := os.Rename(disk, moved); err != nil {
		t.Fatal(err)
	}
	cfg.Disks[0].Path = moved
	t2 := time.Now()
	m2, err := d.Restore(ctx, cfg, saveDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Kill(); m2.Wait() })
	t.Logf("restore (memory file, -m 256): %v", time.Since(t2))
	waitTick(t, cfg, saved)
	rss, pss := memOf(t, m2.Pid())
	t.Logf("qemu after restore from the memory file: RSS %d kB, PSS %d kB", rss, pss)
	ag2 := dialAgent(t, ctx, m2)
	if c := ag2.count(); c < before {
		t.Fatalf("count after restore %d < %d before save", c, before)
	}
	// A guest power-off ends qemu cleanly: Wait returns nil, nothing left.
	fmt.Fprintln(ag2.conn, "poweroff")
	if err := m2.Wait(); err != nil {
		t.Fatalf("Wait after guest poweroff: %v", err)
	}
	assertGone(t, m2, cfg)
}

// TestStartErrors: a kernel qemu cannot load, a disk in the wrong format and
// a missing qemu binary fail Start with qemu's own message, in bounded time,
// leaving nothing running. Root only.
func TestStartErrors(t *testing.T) {
	a := bootAssets(t)
	d := testDriver(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cases := []struct {
		name string
		edit func(*hypervisor.Config)
		want string
		kind error
		qemu bool // qemu runs and fails
	}{
		{name: "missing kernel", edit: func(c *hypervisor.Config) { c.Kernel = "/nonexistent/vmlinux" }, want: "kernel", kind: errdefs.ErrInvalidArgument},
		{name: "garbage kernel", edit: func(c *hypervisor.Config) {
			p := filepath.Join(c.RunDir, "junk")
			os.WriteFile(p, []byte("not a kernel"), 0o644)
			c.Kernel = p
		}, want: "qemu exited", qemu: true},
		{name: "qcow2 that is raw", edit: func(c *hypervisor.Config) {
			p := filepath.Join(c.RunDir, "disk.img")
			os.WriteFile(p, make([]byte, 1<<20), 0o644)
			c.Disks = []hypervisor.Disk{{Path: p, Format: "qcow2"}}
		}, want: "qcow2", qemu: true},
		{name: "bad format", edit: func(c *hypervisor.Config) {
			c.Disks = []hypervisor.Disk{{Path: a.kernel, Format: "vmdk"}}
		}, want: "vmdk", kind: errdefs.ErrInvalidArgument},
		{name: "user-mode network not listening", edit: func(c *hypervisor.Config) {
			c.NICs = []hypervisor.NIC{{Socket: filepath.Join(c.RunDir, "nobody.sock")}}
		}, want: "nobody.sock", kind: errdefs.ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, a)
			tc.edit(&cfg)
			t0 := time.Now()
			m, err := d.Start(ctx, cfg)
			if err == nil {
				m.Kill()
				m.Wait()
				t.Fatal("Start succeeded")
			}
			t.Logf("%v after %v", err, time.Since(t0))
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Fatalf("error kind: %v", err)
			}
			ents, _ := os.ReadDir(cfg.RunDir)
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".sock") {
					t.Errorf("socket %s left behind", e.Name())
				}
			}
			if tc.qemu {
				assertNoQemu(t, cfg.RunDir)
			}
		})
	}
	// A corrupt checkpoint: qemu rejects the stream, Restore says so and
	// leaves nothing running.
	t.Run("corrupt checkpoint", func(t *testing.T) {
		cfg := testConfig(t, a)
		dir := filepath.Join(cfg.RunDir, "ck")
		os.Mkdir(dir, 0o700)
		os.WriteFile(filepath.Join(dir, stateFile), []byte("QEVM garbage"), 0o600)
		if err := hypervisor.WriteCheckpoint(dir, hypervisor.NewCheckpoint(d.Platform(), cfg, stateFile, "test")); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		m, err := d.Restore(ctx, cfg, dir)
		if err == nil {
			m.Kill()
			m.Wait()
			t.Fatal("Restore of garbage succeeded")
		}
		t.Logf("%v after %v", err, time.Since(t0))
		if !strings.Contains(err.Error(), "restore "+dir) || !strings.Contains(err.Error(), "migration") {
			t.Fatalf("error %q does not name the checkpoint and the migration", err)
		}
		assertNoQemu(t, cfg.RunDir)
	})

	// Auto-detection picks an accelerator qemu can actually start on.
	auto, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if accel := auto.Platform().Accel; accel == "kvm" {
		if err := probeKVM(auto.(*driver).bin, "microvm"); err != nil {
			t.Fatalf("auto picked kvm, which fails: %v", err)
		}
	} else if kvmUsable() && probeKVM(auto.(*driver).bin, "microvm") == nil {
		t.Fatalf("auto picked %s though kvm works", accel)
	}
	t.Logf("auto accelerator: %s", auto.Platform().Accel)
	if _, err := New(Options{Binary: "/nonexistent/qemu-system-x86_64"}); !errors.Is(err, errdefs.ErrUnavailable) ||
		!strings.Contains(err.Error(), "qemu-system-x86_64") {
		t.Fatalf("missing qemu: %v", err)
	}
}

// assertNoQemu checks that no process has dir in its command line.
func assertNoQemu(t *testing.T, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), dir+"/") && strings.Contains(string(b), "qemu") {
			t.Errorf("qemu left running: %s", p)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
