package network

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/usernet"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	sdknet "github.com/berth-dev/berth/sdk/network"
)

// init lets the test binary be the real usernet helper (what `berth
// system usernet-helper` runs): usernet.Run on the state file given last.
func init() {
	if os.Getenv("BERTH_TEST_USERNET_HELPER") != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	log := hclog.New(&hclog.LoggerOptions{Name: "usernet-helper", Level: hclog.Info, Output: os.Stderr})
	err := usernet.Run(ctx, os.Args[len(os.Args)-1], log)
	stop()
	if err != nil {
		log.Error("usernet helper", "error", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func TestChooseDatapath(t *testing.T) {
	for _, c := range []struct {
		setting, goos string
		root          bool
		want          string
		errCode       func(error) bool
	}{
		{"", "linux", true, DatapathKernel, nil},
		{"auto", "linux", true, DatapathKernel, nil},
		{"auto", "linux", false, DatapathUser, nil},
		{"auto", "darwin", true, DatapathUser, nil},
		{"", "darwin", false, DatapathUser, nil},
		{"user", "linux", true, DatapathUser, nil},
		{"user", "darwin", false, DatapathUser, nil},
		{"kernel", "linux", true, DatapathKernel, nil},
		{"kernel", "linux", false, "", errdefs.IsInvalidArgument},
		{"kernel", "darwin", true, "", errdefs.IsInvalidArgument},
		{"slirp", "linux", true, "", errdefs.IsInvalidArgument},
	} {
		got, err := ChooseDatapath(c.setting, c.goos, c.root)
		if c.errCode != nil {
			if err == nil || !c.errCode(err) {
				t.Errorf("ChooseDatapath(%q, %s, root=%v) = %q, %v; want an invalid-argument error", c.setting, c.goos, c.root, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ChooseDatapath(%q, %s, root=%v) = %q, %v; want %q", c.setting, c.goos, c.root, got, err, c.want)
		}
	}
}

// TestUserMode runs the service in user mode with the real usernet helper
// (this test binary, see init): attachments name the helper's socket, the
// helper serves the records and binds published ports, the socket and the
// helper go with the network. No root, no VM (TestUserNetworkVM in
// core/cmd/berth boots one on it).
func TestUserMode(t *testing.T) {
	ctx := context.Background()
	t.Setenv("BERTH_TEST_USERNET_HELPER", "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	s := open(t, root, func(o *Options) {
		o.UserMode = true
		o.Datapath = &fakeDatapath{} // ignored in user mode
		o.HelperArgv = []string{exe, "usernet-helper"}
	})
	closed := false
	defer func() {
		if !closed {
			_ = s.Detach(ctx, "c1c1c1c1c1c1c1c1")
			_ = s.Detach(ctx, "c2c2c2c2c2c2c2c2")
			_ = s.Remove(ctx, "un")
			_ = s.Close()
		}
	}()

	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "in", Internal: true}); !errdefs.IsNotImplemented(err) {
		t.Fatalf("internal user-mode network: got %v, want NotImplemented", err)
	}
	n, err := s.Create(ctx, sdknet.CreateSpec{Name: "un", Subnet: "10.217.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "" {
		t.Errorf("user-mode network shows bridge %q", n.Bridge)
	}
	pid := s.helpers.pid(n.ID)
	if pid == 0 {
		t.Fatal("no usernet helper runs after Create")
	}
	a, err := s.Attach(ctx, sdknet.AttachRequest{
		ContainerID: "c1c1c1c1c1c1c1c1", Name: "web", Network: "un", Aliases: []string{"www"},
		Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(root, n.ID[:16]+".qemu.sock")
	if a.Mode != ModeUser || len(a.Interfaces) != 1 || a.Interfaces[0].Bridge != sock {
		t.Fatalf("attachment %+v: want mode user on socket %s", a, sock)
	}
	if in := a.Interfaces[0]; in.MAC != "02:be:0a:d9:00:02" || in.Addresses[0] != "10.217.0.2/24" || in.Gateway != "10.217.0.1" {
		t.Errorf("interface %+v", in)
	}
	if len(a.DNS.Servers) != 1 || a.DNS.Servers[0] != "10.217.0.1" {
		t.Errorf("DNS servers %v, want the gateway", a.DNS.Servers)
	}
	// Attach returned after the helper loaded the state: its socket
	// accepts, and it holds the published port.
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("helper socket %s: %v %v", sock, fi, err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	port := a.Ports[0].HostPort
	if port == 0 {
		t.Fatal("no host port picked")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	if l, err := net.Listen("tcp", addr); err == nil {
		_ = l.Close()
		t.Fatalf("published port %s is not held by the helper", addr)
	}
	var st usernet.State
	b, err := os.ReadFile(filepath.Join(root, n.ID, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.QemuSocket != sock || len(st.Records["web"]) != 1 || st.Records["www"][0].String() != "10.217.0.2" ||
		len(st.Ports) != 1 || st.Ports[0].GuestPort != 80 || st.Ports[0].HostPort != port {
		t.Errorf("helper state %+v", st)
	}

	if _, err := s.Connect(ctx, sdknet.AttachRequest{ContainerID: "c3c3c3c3c3c3c3c3", Network: "un"}); !errdefs.IsNotImplemented(err) {
		t.Errorf("connect to a user-mode network: %v, want NotImplemented", err)
	}

	// A port another process holds fails the Attach naming it, undone.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	hp := uint16(held.Addr().(*net.TCPAddr).Port)
	if _, err := s.Attach(ctx, sdknet.AttachRequest{ContainerID: "c2c2c2c2c2c2c2c2", Network: "un",
		Ports: []isolation.PortMapping{{HostIP: "127.0.0.1", HostPort: hp, ContainerPort: 80}}}); err == nil {
		t.Fatal("attach with a busy port succeeded")
	}

	// Detach frees the port (the helper closes it on reload).
	if err := s.Detach(ctx, "c1c1c1c1c1c1c1c1"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(root, n.ID, "helper.log"))
			st, _ := os.ReadFile(filepath.Join(root, n.ID, "state.json.status"))
			cur, _ := os.ReadFile(filepath.Join(root, n.ID, "state.json"))
			st = append(st, fmt.Sprintf("\nstate sha %x: ", sha256.Sum256(cur))...)
			st = append(st, cur...)
			t.Fatalf("published port %s still held after Detach: %v\nstatus: %s\nhelper log:\n%s", addr, err, st, log)
		}
	}
	eps, err := s.Endpoints(ctx, "")
	if err != nil || len(eps) != 0 {
		t.Fatalf("endpoints after detach: %v %v", eps, err)
	}

	// Remove: helper gone, socket and directory gone.
	if err := s.Remove(ctx, "un"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("helper %d still exists after network rm: %v", pid, err)
	}
	for _, p := range []string{sock, filepath.Join(root, n.ID)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after network rm: %v", p, err)
		}
	}
	closed = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
