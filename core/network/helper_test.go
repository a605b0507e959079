package network

import (
	"context"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	sdknet "github.com/berth-dev/berth/sdk/network"
)

// TestMain lets the test binary play a network helper (the real one,
// `berth system network-helper`, runs in core/cmd/berth's e2e test): it
// appends "start" and one "hup" per SIGHUP to <state>.events and exits on
// SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_TEST_HELPER") == "1" {
		os.Exit(fakeHelper())
	}
	os.Exit(m.Run())
}

func fakeHelper() int {
	state := os.Args[len(os.Args)-1]
	ev := func(s string) {
		f, err := os.OpenFile(state+".events", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err == nil {
			_, _ = f.WriteString(s + "\n")
			_ = f.Close()
		}
	}
	// Like netd, report each load in the status file; ports whose host
	// port is in $BERTH_TEST_HELPER_BUSY fail as if taken.
	report := func() {
		st, raw, err := netd.ReadState(state)
		if err != nil {
			return
		}
		status := netd.Status{Pid: os.Getpid(), StateSHA256: netd.HashState(raw)}
		if os.Getenv("BERTH_TEST_HELPER_NOPID") == "1" {
			status.Pid = 0 // as usernet's helper: no pid in its status
		}
		for _, p := range st.Ports {
			ps := netd.PortStatus{Port: p}
			if os.Getenv("BERTH_TEST_HELPER_BUSY") == strconv.Itoa(int(p.HostPort)) {
				ps.Error = "listen tcp: address already in use"
			}
			status.Ports = append(status.Ports, ps)
		}
		_, _ = netd.WriteJSON(netd.StatusPath(state), status)
	}
	// A slow start: until Notify, SIGHUP ends the process (its default).
	if d, err := time.ParseDuration(os.Getenv("BERTH_TEST_HELPER_DELAY")); err == nil {
		time.Sleep(d)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	report()
	ev("start")
	for s := range sigs {
		if s == syscall.SIGTERM {
			return 0
		}
		report()
		ev("hup")
	}
	return 0
}

func TestHelperLifecycle(t *testing.T) {
	ctx := context.Background()
	t.Setenv("BERTH_TEST_HELPER", "1")
	busyPort := freePort(t)
	t.Setenv("BERTH_TEST_HELPER_BUSY", strconv.Itoa(int(busyPort)))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	withHelpers := func(o *Options) {
		o.Datapath = &fakeDatapath{}
		o.HelperArgv = []string{exe, "-test.run=^$", "helper"}
	}
	s := open(t, root, withHelpers)
	n, err := s.Create(ctx, sdknet.CreateSpec{Name: "h", Subnet: "10.216.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, n.ID)
	events := func() string { b, _ := os.ReadFile(filepath.Join(dir, "state.json.events")); return string(b) }
	pidOf := func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "helper.pid"))
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return p
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (events %q)", what, events())
			}
		}
	}
	waitFor("the helper to start", func() bool { return strings.Count(events(), "start") == 1 })
	pid := pidOf()
	if pid == 0 || !signalAlive(pid) {
		t.Fatalf("helper pid %d not running", pid)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("helper session %d, want its own (%d)", sid, pid)
	}
	if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("f", 64), Network: "h"}); err != nil {
		t.Fatal(err)
	}
	waitFor("a SIGHUP after attach", func() bool { return strings.Count(events(), "hup") >= 1 })
	// A port the helper cannot serve fails the attach, which leaves nothing.
	_, err = s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("9", 64), Network: "h",
		Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: busyPort, ContainerPort: 80}}})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), strconv.Itoa(int(busyPort))) {
		t.Errorf("attach with a port the helper cannot serve = %v, want InvalidArgument naming it", err)
	}
	if eps, _ := s.Endpoints(ctx, "h"); len(eps) != 1 {
		t.Errorf("endpoints after a refused attach: %+v", eps)
	}

	// The daemon goes away and comes back: the helper is adopted, not
	// started twice.
	_ = s.Close()
	s = open(t, root, withHelpers)
	time.Sleep(200 * time.Millisecond)
	if got := pidOf(); got != pid || strings.Count(events(), "start") != 1 {
		t.Fatalf("after reopen pid %d (was %d), events %q: want the helper adopted", got, pid, events())
	}

	// A helper that dies is started again.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor("the helper to be restarted", func() bool { return strings.Count(events(), "start") == 2 })
	pid2 := pidOf()
	if pid2 == pid || !signalAlive(pid2) {
		t.Fatalf("restarted helper pid %d", pid2)
	}

	// Removing the network stops its helper and removes its directory.
	if err := s.Detach(ctx, strings.Repeat("f", 64)); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	waitFor("the helper to exit", func() bool { return !signalAlive(pid2) || isZombie(pid2) })
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("network dir left: %v", err)
	}
	_ = s.Close()
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) uint16 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// TestHelperNotSignalledWhileStarting: changes made while a helper is still
// starting (no status of its own yet) send it no SIGHUP, which would end it
// before it handles the signal; it loads the latest state when it starts.
func TestHelperNotSignalledWhileStarting(t *testing.T) {
	for _, nopid := range []string{"0", "1"} {
		t.Run("nopid="+nopid, func(t *testing.T) {
			t.Setenv("BERTH_TEST_HELPER_NOPID", nopid)
			testHelperNotSignalledWhileStarting(t)
		})
	}
}

func testHelperNotSignalledWhileStarting(t *testing.T) {
	ctx := context.Background()
	t.Setenv("BERTH_TEST_HELPER", "1")
	t.Setenv("BERTH_TEST_HELPER_DELAY", "1500ms")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	s := open(t, root, func(o *Options) {
		o.Datapath = &fakeDatapath{}
		o.HelperArgv = []string{exe, "-test.run=^$", "helper"}
	})
	defer s.Close()
	n, err := s.Create(ctx, sdknet.CreateSpec{Name: "slow", Subnet: "10.217.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(root, n.ID, "helper.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for i := range 3 { // each rewrites the state and would signal
		if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat(strconv.Itoa(i+1), 64), Network: "slow"}); err != nil {
			t.Fatal(err)
		}
	}
	statePath := filepath.Join(root, n.ID, "state.json")
	raw, _ := os.ReadFile(statePath)
	var st netd.Status
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err = netd.ReadStatus(statePath); err == nil && st.StateSHA256 == netd.HashState(raw) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helper never reported the latest state (status %+v, %v)", st, err)
		}
	}
	events := filepath.Join(root, n.ID, "state.json.events")
	if b, _ := os.ReadFile(events); strings.Count(string(b), "start") != 1 || !signalAlive(pid) {
		t.Errorf("events %q, first helper %d alive %v: the starting helper was killed and restarted", b, pid, signalAlive(pid))
	}
	// Once it has reported, changes signal it again.
	if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: strings.Repeat("8", 64), Network: "slow"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(events); strings.Contains(string(b), "hup") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no SIGHUP reached the started helper")
		}
	}
	for i := range 3 {
		_ = s.Detach(ctx, strings.Repeat(strconv.Itoa(i+1), 64))
	}
	_ = s.Detach(ctx, strings.Repeat("8", 64))
	if err := s.Remove(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
}
