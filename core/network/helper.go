package network

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/netd"
)

// HelperState is a network helper's input, the JSON of
// <root>/<id>/state.json: internal/netd's State.
type HelperState = netd.State

// stateOf computes network n's helper state from the store.
func stateOf(tx *bolt.Tx, n netRecord, upstreams []string) (HelperState, error) {
	eps, err := endpointsIn(tx)
	if err != nil {
		return HelperState{}, err
	}
	st := HelperState{Network: n.Name, Gateway: n.Gateway.String(), Upstreams: upstreams, Records: []netd.Record{}, Ports: []netd.Port{}}
	if st.Upstreams == nil {
		st.Upstreams = []string{}
	}
	names := map[string][]string{}
	add := func(name string, ip netip.Addr) {
		if name == "" {
			return
		}
		key := strings.ToLower(name)
		if !slices.Contains(names[key], ip.String()) {
			names[key] = append(names[key], ip.String())
		}
	}
	for _, e := range eps {
		if e.NetworkID != n.ID {
			continue
		}
		if len(e.DNS) > 0 {
			st.Clients = append(st.Clients, netd.Client{IP: e.IP.String(), Upstreams: e.DNS})
		}
		add(e.Name, e.IP)
		add(e.Hostname, e.IP)
		for _, a := range e.Aliases {
			add(a, e.IP)
		}
		if len(e.ContainerID) >= 12 {
			add(e.ContainerID[:12], e.IP)
		}
		for _, p := range e.Ports {
			host := p.HostIP
			if host == "" {
				host = "0.0.0.0"
			}
			st.Ports = append(st.Ports, netd.Port{
				HostIP: host, HostPort: p.HostPort, Protocol: p.Protocol, TargetIP: e.IP.String(), TargetPort: p.ContainerPort,
			})
		}
	}
	for name, ips := range names {
		slices.Sort(ips)
		st.Records = append(st.Records, netd.Record{Name: name, IPs: ips})
	}
	slices.SortFunc(st.Records, func(a, b netd.Record) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Clients, func(a, b netd.Client) int { return strings.Compare(a.IP, b.IP) })
	slices.SortFunc(st.Ports, func(a, b netd.Port) int {
		return strings.Compare(fmt.Sprintf("%s/%s/%05d", a.Protocol, a.HostIP, a.HostPort), fmt.Sprintf("%s/%s/%05d", b.Protocol, b.HostIP, b.HostPort))
	})
	return st, nil
}

// writeState rewrites n's state file from the store, atomically, and
// returns the bytes written.
func (s *Service) writeState(n netRecord) ([]byte, error) {
	var st HelperState
	if err := s.store.db.View(func(tx *bolt.Tx) (err error) { st, err = stateOf(tx, n, s.opts.DNSUpstreams); return }); err != nil {
		return nil, err
	}
	path := s.statePath(n.ID)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return netd.WriteJSON(path, st)
}

// awaitStatus waits until network id's helper reports having loaded the
// state file bytes raw, and returns its status; ok is false when it did
// not within timeout.
func (h *helpers) awaitStatus(statePath string, raw []byte, timeout time.Duration) (netd.Status, bool) {
	want := netd.HashState(raw)
	deadline := time.Now().Add(timeout)
	for {
		st, err := netd.ReadStatus(statePath)
		if err == nil && st.StateSHA256 == want {
			return st, true
		}
		if time.Now().After(deadline) {
			return netd.Status{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// helpers runs one helper process per network: `<argv> --state FILE`,
// in its own session, output to helper.log, pid in helper.pid. A helper
// is ours to reap when this process started it; one found running at
// start (pid file, and /proc/<pid>/cmdline naming its state file) is
// adopted.
type helpers struct {
	root string
	argv []string
	log  hclog.Logger

	mu      sync.Mutex
	exited  map[string]chan struct{} // helpers we started: closed when reaped
	started map[string]time.Time     // when we started them
}

func newHelpers(root string, argv []string, log hclog.Logger) *helpers {
	return &helpers{root: root, argv: argv, log: log, exited: map[string]chan struct{}{}, started: map[string]time.Time{}}
}

func (h *helpers) pidPath(id string) string { return filepath.Join(h.root, id, "helper.pid") }

// pid returns the pid of network id's helper when it runs, else 0.
func (h *helpers) pid(id string) int {
	b, err := os.ReadFile(h.pidPath(id))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !signalAlive(pid) {
		return 0
	}
	h.mu.Lock()
	ch := h.exited[id]
	h.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
			return 0 // ours, exited and reaped: the pid may be reused
		default:
		}
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	state := filepath.Join(h.root, id, "state.json")
	args := bytes.Split(bytes.TrimRight(cmd, "\x00"), []byte{0})
	for i, a := range args {
		if string(a) == "--state" && i+1 < len(args) && string(args[i+1]) == state {
			return pid
		}
		if string(a) == "--state="+state {
			return pid
		}
	}
	return 0
}

func (h *helpers) alive(id string) bool { return h.pid(id) != 0 }

// ensure adopts network id's running helper or starts one.
func (h *helpers) ensure(id, statePath string) error {
	if pid := h.pid(id); pid != 0 {
		h.log.Debug("network helper running", "network_id", id, "pid", pid)
		return nil
	}
	dir := filepath.Join(h.root, id)
	logf, err := os.OpenFile(filepath.Join(dir, "helper.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append(slices.Clone(h.argv[1:]), "--state", statePath)
	cmd := exec.Command(h.argv[0], args...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	startedAt := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", h.argv[0], err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	h.mu.Lock()
	h.exited[id] = exited
	h.started[id] = startedAt
	h.mu.Unlock()
	if err := atomicfile.WriteFile(h.pidPath(id), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	h.log.Info("network helper started", "network_id", id, "pid", cmd.Process.Pid)
	return nil
}

// reload tells network id's helper to re-read its state. A helper that
// has not reported a status yet is not signalled: SIGHUP would kill it
// before it handles the signal (its default action), and it reads the
// state file when it starts anyway (and notices changes by polling).
func (h *helpers) reload(id string) error {
	pid := h.pid(id)
	if pid == 0 {
		return errors.New("not running")
	}
	if h.starting(id, pid) {
		h.log.Debug("network helper still starting; it reads the state itself", "network_id", id, "pid", pid)
		return nil
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}

// starting says whether helper pid of network id has not reported a
// status yet: its status names another pid, or (a helper whose status
// has no pid, as usernet's) the status is older than the helper we
// started. A helper we adopted has long been running.
func (h *helpers) starting(id string, pid int) bool {
	path := netd.StatusPath(filepath.Join(h.root, id, "state.json"))
	st, err := netd.ReadStatus(filepath.Join(h.root, id, "state.json"))
	if err != nil {
		return true
	}
	if st.Pid != 0 {
		return st.Pid != pid
	}
	h.mu.Lock()
	startedAt, ours := h.started[id]
	h.mu.Unlock()
	if !ours {
		return false
	}
	fi, err := os.Stat(path)
	return err != nil || fi.ModTime().Before(startedAt)
}

// stopHelper stops network id's helper: SIGTERM, then SIGKILL after 5 s.
func (h *helpers) stopHelper(id string) {
	pid := h.pid(id)
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for h.pid(id) != 0 {
		if time.Now().After(deadline) {
			h.log.Warn("network helper ignored SIGTERM; killing it", "network_id", id, "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// An adopted helper is reaped by init; ours by the Wait goroutine.
	h.mu.Lock()
	ch := h.exited[id]
	delete(h.exited, id)
	delete(h.started, id)
	h.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
		}
	}
	_ = os.Remove(h.pidPath(id))
	h.log.Info("network helper stopped", "network_id", id, "pid", pid)
}
