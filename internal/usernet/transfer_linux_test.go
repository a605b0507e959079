package usernet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/internal/hypervisor"
)

// vmTarget says how the host reaches a netguest VM's transfer ports.
type vmTarget struct {
	Sink      string // the guest's :5002 as the host dials it
	Control   string // the guest's :5003 as the host dials it
	HostIP    string // where the host's sink listens for guest → host
	GuestDial string // the address the guest dials for HostIP (the gateway for usernet)
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// pushToGuest sends mib MiB to the guest's sink and checks it got all.
func pushToGuest(tg vmTarget, mib int) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", tg.Sink, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	start := time.Now()
	if _, err := io.CopyN(c, zeros{}, int64(mib)<<20); err != nil {
		return 0, err
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if want := fmt.Sprintf("got %d <nil>\n", int64(mib)<<20); err != nil || line != want {
		return 0, fmt.Errorf("guest sink answered %q (%v), want %q", line, err, want)
	}
	return took, nil
}

// pullFromGuest has the guest send mib MiB to a sink on the host and
// checks the host got all; the time is the host's, first byte to last.
func pullFromGuest(tg vmTarget, mib int) (time.Duration, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(tg.HostIP, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	type result struct {
		n    int64
		took time.Duration
		err  error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Minute))
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		got <- result{n, time.Since(start), err}
	}()
	ctl, err := net.DialTimeout("tcp", tg.Control, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer ctl.Close()
	ctl.SetDeadline(time.Now().Add(10 * time.Minute))
	port := ln.Addr().(*net.TCPAddr).Port
	fmt.Fprintf(ctl, "send %s %d\n", net.JoinHostPort(tg.GuestDial, strconv.Itoa(port)), mib)
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("no data from the guest")
	}
	line, _ := bufio.NewReader(ctl).ReadString('\n')
	if want := int64(mib) << 20; r.err != nil || r.n != want {
		return 0, fmt.Errorf("host got %d bytes (%v), want %d; guest said %q", r.n, r.err, want, line)
	}
	return r.took, nil
}

// userTarget publishes the guest's transfer ports on 127.0.0.1 of n.
func userTarget(t *testing.T, n *Network, guest netip.Addr) vmTarget {
	t.Helper()
	sink, ctl := freePort(t), freePort(t)
	for _, p := range []Port{{HostIP: "127.0.0.1", HostPort: sink, GuestIP: guest, GuestPort: 5002},
		{HostIP: "127.0.0.1", HostPort: ctl, GuestIP: guest, GuestPort: 5003}} {
		if err := n.Publish(p); err != nil {
			t.Fatal(err)
		}
	}
	return vmTarget{Sink: fmt.Sprintf("127.0.0.1:%d", sink), Control: fmt.Sprintf("127.0.0.1:%d", ctl),
		HostIP: "127.0.0.1", GuestDial: n.Config().Gateway.String()}
}

// tapVM boots a netguest VM on a TAP (the kernel datapath VM networks use
// as root, without the bridge): host 10.0.10.1/24 on the TAP, guest
// 10.0.10.2. The TAP is removed at cleanup.
func tapVM(t *testing.T, d hypervisor.Driver, kernel, initrd string) vmTarget {
	t.Helper()
	name := fmt.Sprintf("tbun%d", os.Getpid()%100000)
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP,
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE}
	if err := netlink.LinkAdd(tap); err != nil {
		t.Fatalf("tap %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.0.10.1/24")
	if err := netlink.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	console := guestVM(t, d, kernel, initrd, hypervisor.NIC{TAP: name, MAC: "02:be:0a:00:0a:02"},
		"netguest.mac=02:be:0a:00:0a:02", "netguest.ip=10.0.10.2/24", "netguest.gw=10.0.10.1")
	waitConsole(t, console)
	return vmTarget{Sink: "10.0.10.2:5002", Control: "10.0.10.2:5003", HostIP: "10.0.10.1", GuestDial: "10.0.10.1"}
}

func vmRSS(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	return 0
}

// TestBenchServe is the long-running side of scripts/bench-usernet.sh,
// skipped unless BERTH_USERNET_BENCH_DIR is set: it boots a netguest VM on
// a user-mode network (this process is the usernet process) and one on a
// TAP, writes DIR/targets.json, and serves until DIR/stop appears (at most
// an hour). DIR/rss.json has this process's RSS before the network and at
// the end (kB).
func TestBenchServe(t *testing.T) {
	dir := os.Getenv("BERTH_USERNET_BENCH_DIR")
	if dir == "" {
		t.Skip("BERTH_USERNET_BENCH_DIR not set (scripts/bench-usernet.sh)")
	}
	d := vmDriver(t)
	kernel, initrd := vmAssets(t, d)
	rssBefore := vmRSS(os.Getpid())
	n, err := New(Config{Subnet: testSubnet, Gateway: testGateway}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	sock := filepath.Join(dir, "qemu.sock")
	if err := n.ListenQemu(sock); err != nil {
		t.Fatal(err)
	}
	console := guestVM(t, d, kernel, initrd, hypervisor.NIC{Socket: sock, MAC: "02:be:0a:00:09:0f"},
		"netguest.mac=02:be:0a:00:09:0f", "netguest.ip="+guestA.String()+"/24", "netguest.gw="+testGateway.String())
	waitConsole(t, console)
	targets := map[string]vmTarget{"user": userTarget(t, n, guestA), "tap": tapVM(t, d, kernel, initrd)}
	b, _ := json.Marshal(targets)
	if err := os.WriteFile(filepath.Join(dir, "targets.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for ctx.Err() == nil {
		if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ = json.Marshal(map[string]int{"before_kB": rssBefore, "after_kB": vmRSS(os.Getpid())})
	os.WriteFile(filepath.Join(dir, "rss.json"), b, 0o644)
}

// TestBenchSend is one timed transfer of scripts/bench-usernet.sh, skipped
// unless BERTH_USERNET_BENCH_DIR is set: BERTH_USERNET_BENCH_MODE is
// user|tap-publish (host → guest) or user|tap-nat (guest → host),
// BERTH_USERNET_BENCH_MIB the size (default 64).
func TestBenchSend(t *testing.T) {
	dir := os.Getenv("BERTH_USERNET_BENCH_DIR")
	if dir == "" {
		t.Skip("BERTH_USERNET_BENCH_DIR not set (scripts/bench-usernet.sh)")
	}
	mib := 64
	if v, _ := strconv.Atoi(os.Getenv("BERTH_USERNET_BENCH_MIB")); v > 0 {
		mib = v
	}
	b, err := os.ReadFile(filepath.Join(dir, "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var targets map[string]vmTarget
	if err := json.Unmarshal(b, &targets); err != nil {
		t.Fatal(err)
	}
	mode := os.Getenv("BERTH_USERNET_BENCH_MODE")
	which, dir2, _ := strings.Cut(mode, "-")
	tg, ok := targets[which]
	if !ok || (dir2 != "publish" && dir2 != "nat") {
		t.Fatalf("BERTH_USERNET_BENCH_MODE %q: want user|tap-publish|nat", mode)
	}
	var took time.Duration
	if dir2 == "publish" {
		took, err = pushToGuest(tg, mib)
	} else {
		took, err = pullFromGuest(tg, mib)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d MiB in %s = %.1f MB/s", mode, mib, took, float64(int64(mib)<<20)/took.Seconds()/1e6)
}
