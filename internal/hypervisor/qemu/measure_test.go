package qemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
)

// TestMeasure reports boot-to-agent time per machine type, idle qemu memory
// per TCG cache size, and what balloon free-page reporting returns. It
// asserts only that the VMs work; the numbers go to the log (and NOTES).
// Opt-in: BERTH_HV_MEASURE=<runs>; it boots many VMs.
func TestMeasure(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("BERTH_HV_MEASURE"))
	if runs < 1 {
		t.Skip("set BERTH_HV_MEASURE=<runs> to measure")
	}
	a := bootAssets(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	boot := func(t *testing.T, d hypervisor.Driver, cfg hypervisor.Config) (hypervisor.Machine, *agent, time.Duration) {
		t0 := time.Now()
		m := startVM(t, ctx, d, cfg)
		ag := dialAgent(t, ctx, m)
		if got := ag.call("ping m"); got != "pong m" {
			t.Fatalf("echo %q", got)
		}
		return m, ag, time.Since(t0)
	}
	stop := func(m hypervisor.Machine) { m.Kill(); m.Wait() }

	// Boot to agent, interleaved so load drifts hit both alike.
	t.Run("boot", func(t *testing.T) {
		times := map[string][]time.Duration{}
		for i := 0; i < runs; i++ {
			for _, mt := range []string{"microvm", "q35"} {
				d := testDriver(t, Options{Machine: mt})
				m, _, dt := boot(t, d, testConfig(t, a))
				times[mt] = append(times[mt], dt)
				stop(m)
			}
		}
		for mt, ds := range times {
			t.Logf("MEASURE boot-to-agent %s (%s): median %v, all %v", mt, accelOf(t), median(ds), ds)
		}

	})
	// Idle memory per TCG translation cache size (meaningless under KVM).
	t.Run("tbsize", func(t *testing.T) {
		for _, tb := range []int{-1, 32, 16, 8} {
			d := testDriver(t, Options{TBSizeMiB: tb})
			m, _, _ := boot(t, d, testConfig(t, a))
			time.Sleep(5 * time.Second)
			rss, pss := memOf(t, m.Pid())
			t.Logf("MEASURE idle qemu %s tb-size=%d MiB: RSS %d kB, PSS %d kB", accelOf(t), tb, rss, pss)
			stop(m)
		}

	})
	// Disk cache modes: per-write cost of synchronous 4 KiB writes and reads
	// from the guest (a host file on this machine's ext4).
	t.Run("disk", func(t *testing.T) {
		for _, cache := range []string{"writeback", "none", "unsafe"} {
			d := testDriver(t, Options{})
			d.(*driver).m.diskCache = cache
			cfg := testConfig(t, a)
			img := filepath.Join(cfg.RunDir, "disk.img")
			if err := os.WriteFile(img, make([]byte, 64<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.Disks = []hypervisor.Disk{{Path: img}}
			m, ag, _ := boot(t, d, cfg)
			t.Logf("MEASURE disk cache=%s: %s", cache, ag.call("diskbench 500"))
			stop(m)
		}
	})
	// Balloon free-page reporting: does memory the guest frees leave qemu?
	t.Run("balloon", func(t *testing.T) {
		d := testDriver(t, Options{})
		cfg := testConfig(t, a)
		cfg.Balloon = true
		cfg.MemoryBytes = 512 << 20
		if o := os.Getenv("BERTH_HV_REPORT_ORDER"); o != "" {
			cfg.Cmdline = append(slices.Clone(cfg.Cmdline), "page_reporting.page_reporting_order="+o)
		}
		m, ag, _ := boot(t, d, cfg)
		time.Sleep(3 * time.Second)
		idle, _ := memOf(t, m.Pid())
		if os.Getenv("BERTH_HV_COMPACT") != "" {
			ag.call("compact")
			time.Sleep(5 * time.Second)
			rss, pss := memOf(t, m.Pid())
			t.Logf("MEASURE idle after a guest compaction (balloon free-page-reporting): RSS %d kB (was %d), PSS %d kB", rss, idle, pss)
			idle = rss
		}
		if got := ag.call("alloc 200"); got != "alloc ok" {
			t.Fatalf("alloc: %q", got)
		}
		full, _ := memOf(t, m.Pid())
		freeBefore := ag.call("meminfo")
		if got := ag.call("free"); got != "free ok" {
			t.Fatalf("free: %q", got)
		}
		t.Logf("guest before free: %s, after: %s", freeBefore, ag.call("meminfo"))
		if os.Getenv("BERTH_HV_COMPACT") != "" {
			ag.call("compact")
		}
		var after int
		for i := 0; i < 20; i++ {
			time.Sleep(time.Second)
			after, _ = memOf(t, m.Pid())
		}
		t.Logf("guest at the end: %s", ag.call("meminfo"))
		// Inflating the balloon takes pages from the guest; qemu discards them.
		if err := m.SetBalloon(ctx, 128<<20); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "balloon at 128 MiB", func() bool {
			act, err := m.(*vm).balloonActual(ctx)
			return err == nil && act == 128<<20
		})
		time.Sleep(2 * time.Second)
		inflated, _ := memOf(t, m.Pid())
		t.Logf("MEASURE balloon inflated to leave the guest 128 of 512 MiB: qemu RSS %d kB (before %d kB), guest %s", inflated, after, ag.call("meminfo"))
		t.Logf("MEASURE balloon free-page-reporting: qemu RSS idle %d kB, after guest touched 200 MiB %d kB, 20 s after it freed them %d kB (returned %d kB)",
			idle, full, after, full-after)
		stop(m)
	})
}

func accelOf(t *testing.T) string {
	if a := os.Getenv("BERTH_TEST_QEMU_ACCEL"); a != "" {
		return a
	}
	return "tcg"
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// memOf reads Rss and Pss (kB) of pid from smaps_rollup.
func memOf(t *testing.T, pid int) (rss, pss int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, _ := strings.Cut(s.Text(), ":")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "Rss":
			rss = n
		case "Pss":
			pss = n
		}
	}
	return rss, pss
}
