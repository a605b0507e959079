package usernet

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// writeState writes st atomically, triggers a reload and waits for the
// status of exactly those bytes.
func writeState(t *testing.T, path string, st any, reload chan<- struct{}) Status {
	t.Helper()
	var raw []byte
	if b, ok := st.([]byte); ok {
		raw = b
	} else {
		raw, _ = json.Marshal(st)
	}
	if err := atomicfile.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if reload != nil {
		reload <- struct{}{}
	}
	sum := sha256.Sum256(raw)
	want := hex.EncodeToString(sum[:])
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var s Status
		if b, err := os.ReadFile(StatusPath(path)); err == nil && json.Unmarshal(b, &s) == nil && s.StateSHA256 == want {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no status for the state written")
	return Status{}
}

func echoServer(t *testing.T, ln net.Listener, greeting string) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, greeting)
			c.Close()
		}
	}()
}

func readGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// TestServe runs the per-network helper's loop on a state file: the
// sockets, records and ports of the state are served; a reload applies
// new records and ports and drops removed ones; a bad reload is reported
// in the status and keeps what was served; ctx's end closes everything.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	sock := filepath.Join(dir, "qemu.sock")
	p1 := Port{HostIP: "127.0.0.1", HostPort: freePort(t), GuestIP: guestA, GuestPort: 7001}
	st := State{Subnet: testSubnet.String(), Gateway: testGateway.String(), QemuSocket: sock,
		Records: map[string][]netip.Addr{"web": {guestA}}, Ports: []Port{p1}}
	raw, _ := json.Marshal(st)
	if err := atomicfile.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, reload, testLogger(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left: %v", err)
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p1.HostPort)); err != nil {
			t.Errorf("port held after Serve ended: %v", err)
		} else {
			l.Close()
		}
	}()
	if s := writeState(t, path, raw, nil); s.Error != "" || len(s.PortErrors) > 0 {
		t.Fatalf("first status: %+v", s)
	}

	g := newTestGuest(t, guestA, "02:be:0a:00:09:0f", testGateway)
	g.attachQemu(t, sock)
	echoServer(t, g.listen(t, 7001), "seven-oh-one")
	echoServer(t, g.listen(t, 7002), "seven-oh-two")
	retry(t, "published port of the state", func(ctx context.Context) error {
		line, err := readGreeting(fmt.Sprintf("127.0.0.1:%d", p1.HostPort))
		if err == nil && line != "seven-oh-one\n" {
			err = fmt.Errorf("got %q", line)
		}
		return err
	})
	retry(t, "record of the state", func(ctx context.Context) error {
		got, _, err := lookupA(ctx, g, "web")
		if err == nil && (len(got) != 1 || got[0] != guestA.String()) {
			err = fmt.Errorf("got %v", got)
		}
		return err
	})

	// Reload: p1 goes, p2 comes, the record changes; a busy port is
	// reported by name.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p2 := Port{HostIP: "127.0.0.1", HostPort: freePort(t), GuestIP: guestA, GuestPort: 7002}
	p3 := Port{HostIP: "127.0.0.1", HostPort: uint16(busy.Addr().(*net.TCPAddr).Port), GuestIP: guestA, GuestPort: 7002}
	st.Ports = []Port{p2, p3}
	st.Records = map[string][]netip.Addr{"db": {guestB}}
	s := writeState(t, path, st, reload)
	if s.Error != "" || len(s.PortErrors) != 1 || s.PortErrors[p3.String()] == "" {
		t.Fatalf("status after reload: %+v", s)
	}
	if line, err := readGreeting(fmt.Sprintf("127.0.0.1:%d", p2.HostPort)); err != nil || line != "seven-oh-two\n" {
		t.Fatalf("new port: %q %v", line, err)
	}
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p1.HostPort)); err != nil {
		t.Fatalf("removed port still held: %v", err)
	} else {
		l.Close()
	}
	retry(t, "records after reload", func(ctx context.Context) error {
		if _, rcode, err := lookupA(ctx, g, "web"); err != nil || rcode != mdns.RcodeNameError {
			return fmt.Errorf("web: rcode %d %v", rcode, err)
		}
		got, _, err := lookupA(ctx, g, "db")
		if err == nil && (len(got) != 1 || got[0] != guestB.String()) {
			err = fmt.Errorf("db: %v", got)
		}
		return err
	})

	// A bad state and a changed subnet are reported; p2 keeps working.
	if s := writeState(t, path, []byte("{not json"), reload); !strings.Contains(s.Error, "usernet state") {
		t.Fatalf("status of a bad state: %+v", s)
	}
	st.Subnet = "10.0.99.0/24"
	if s := writeState(t, path, st, reload); !strings.Contains(s.Error, "restart the helper") {
		t.Fatalf("status of a changed subnet: %+v", s)
	}
	if line, err := readGreeting(fmt.Sprintf("127.0.0.1:%d", p2.HostPort)); err != nil || line != "seven-oh-two\n" {
		t.Fatalf("port after bad reloads: %q %v", line, err)
	}
}

func TestServeBadState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	os.WriteFile(path, []byte(`{"subnet":"10.0.9.0/24","gateway":"10.1.0.1"}`), 0o644)
	err := Serve(context.Background(), path, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("Serve of a bad state: %v", err)
	}
	var s Status
	b, _ := os.ReadFile(StatusPath(path))
	if json.Unmarshal(b, &s) != nil || !strings.Contains(s.Error, "gateway") {
		t.Fatalf("status: %s", b)
	}
}

// TestRunReloadsOnSIGHUP: Run (the helper process's body) re-reads its
// state on SIGHUP.
func TestRunReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	st := State{Subnet: testSubnet.String(), Gateway: testGateway.String()}
	raw, _ := json.Marshal(st)
	if err := atomicfile.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, path, testLogger(t)) }()
	writeState(t, path, raw, nil) // the first load
	p := Port{HostIP: "127.0.0.1", HostPort: freePort(t), GuestIP: guestA, GuestPort: 80}
	st.Ports = []Port{p}
	raw, _ = json.Marshal(st)
	if err := atomicfile.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if s := writeState(t, path, raw, nil); s.Error != "" || len(s.PortErrors) > 0 {
		t.Fatalf("status after SIGHUP: %+v", s)
	}
	if _, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.HostPort)); err == nil {
		t.Fatal("the port of the reloaded state is not held")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestServeClosesVfkitSockets: a vfkit socket dropped from the state (its
// container detached) is closed and removed on reload; the others stay.
func TestServeClosesVfkitSockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	a, b := filepath.Join(dir, "a.vfkit.sock"), filepath.Join(dir, "b.vfkit.sock")
	st := State{Subnet: testSubnet.String(), Gateway: testGateway.String(), VfkitSockets: []string{a, b}}
	raw, _ := json.Marshal(st)
	if err := atomicfile.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, reload, testLogger(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, p := range []string{a, b} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s left after Serve ended", p)
			}
		}
	}()
	isSock := func(p string) bool { fi, err := os.Lstat(p); return err == nil && fi.Mode()&os.ModeSocket != 0 }
	for deadline := time.Now().Add(60 * time.Second); !isSock(a) || !isSock(b); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("vfkit sockets never bound")
		}
	}
	st.VfkitSockets = []string{b}
	if s := writeState(t, path, st, reload); s.Error != "" {
		t.Fatalf("status error: %s", s.Error)
	}
	if _, err := os.Lstat(a); err == nil {
		t.Errorf("%s still there after it left the state", a)
	}
	if !isSock(b) {
		t.Errorf("%s gone though still in the state", b)
	}
}
