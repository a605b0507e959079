package usernet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sirupsen/logrus"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// State is what a per-network helper process serves (Run): written by the
// daemon atomically (atomicfile), then SIGHUP. The network-level fields
// (Subnet, Gateway, MTU, Upstreams) are read once; a reload that changes
// them is reported in the status and needs a new helper. Records, Ports
// and the sockets are applied on every reload.
type State struct {
	Subnet    string   `json:"subnet"`
	Gateway   string   `json:"gateway"`
	MTU       int      `json:"mtu,omitempty"`
	Upstreams []string `json:"upstreams,omitempty"`
	// QemuSocket is the stream socket every qemu VM of the network connects
	// to (hypervisor.NIC.Socket).
	QemuSocket string `json:"qemuSocket,omitempty"`
	// VfkitSockets are datagram sockets, one per vz VM.
	VfkitSockets []string                `json:"vfkitSockets,omitempty"`
	Records      map[string][]netip.Addr `json:"records,omitempty"`
	Ports        []Port                  `json:"ports,omitempty"`
}

// Status is written to StatusPath(state) after each load.
type Status struct {
	// Pid is the helper's: a status of another pid is a former helper's
	// (core/network signals a helper only once it has reported).
	Pid int `json:"pid"`
	// StateSHA256 is the hex SHA-256 of the state bytes this status
	// reflects: a writer polls for the hash of what it wrote.
	StateSHA256 string `json:"stateSHA256"`
	Error       string `json:"error,omitempty"`
	// PortErrors: a published port that could not be bound, by Port.String().
	PortErrors map[string]string `json:"portErrors,omitempty"`
}

// StatusPath is where Run writes the status of the state file at path.
func StatusPath(path string) string { return path + ".status" }

// Run serves the user-mode network described by the state file at path
// until ctx ends, reloading it on SIGHUP: the body of a per-network helper
// process, started by the daemon and surviving its restarts (as netd's).
//
// gvisor-tap-vsock's own messages (logrus, process-wide) go to log at
// debug level: most are a guest or client going away.
func Run(ctx context.Context, path string, log hclog.Logger) error {
	if log != nil {
		logrus.SetOutput(log.Named("gvisor-tap-vsock").StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}))
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return Serve(ctx, path, reload, log)
}

// Serve is Run with the reload trigger given: each value on reload
// re-reads the state file. The first load must succeed (its error is
// returned); later errors go to the status and keep what was served.
func Serve(ctx context.Context, path string, reload <-chan struct{}, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	raw, st, err := readState(path)
	if err != nil {
		writeStatus(path, raw, err, nil, log)
		return err
	}
	cfg, err := st.config()
	if err != nil {
		writeStatus(path, raw, err, nil, log)
		return err
	}
	n, err := New(cfg, log)
	if err != nil {
		writeStatus(path, raw, err, nil, log)
		return err
	}
	defer n.Close()
	h := &helper{n: n, first: st, vfkit: map[string]bool{}, log: log}
	h.apply(path, raw, st)
	loaded := raw
	// The file is also polled: a writer does not signal a helper that has
	// not reported yet (SIGHUP before signal.Notify would kill it), so a
	// change made while it started is picked up here.
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
		case <-poll.C:
			if b, err := os.ReadFile(path); err != nil || bytes.Equal(b, loaded) {
				continue
			}
		}
		raw, st, err := readState(path)
		loaded = raw
		if err == nil {
			h.apply(path, raw, st)
		} else {
			writeStatus(path, raw, err, nil, log)
		}
	}
}

// pollInterval is how often Serve checks its state file for changes it
// was not signalled about.
const pollInterval = time.Second

type helper struct {
	n     *Network
	first State
	qemu  string
	vfkit map[string]bool
	log   hclog.Logger
}

func readState(path string) ([]byte, State, error) {
	var st State
	raw, err := os.ReadFile(path)
	if err != nil {
		return raw, st, fmt.Errorf("usernet state: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return raw, st, fmt.Errorf("usernet state %s: %w", path, err)
	}
	return raw, st, nil
}

func (s State) config() (Config, error) {
	sub, err := netip.ParsePrefix(s.Subnet)
	if err != nil {
		return Config{}, fmt.Errorf("usernet state: subnet %q: %w", s.Subnet, err)
	}
	gw, err := netip.ParseAddr(s.Gateway)
	if err != nil {
		return Config{}, fmt.Errorf("usernet state: gateway %q: %w", s.Gateway, err)
	}
	return Config{Subnet: sub, Gateway: gw, MTU: s.MTU, Upstreams: s.Upstreams}, nil
}

// apply makes the network serve st (records, sockets, ports) and writes
// the status.
func (h *helper) apply(path string, raw []byte, st State) {
	var errs []string
	if st.Subnet != h.first.Subnet || st.Gateway != h.first.Gateway || st.MTU != h.first.MTU || !slices.Equal(st.Upstreams, h.first.Upstreams) {
		errs = append(errs, "subnet, gateway, mtu or upstreams changed: restart the helper to apply them")
	}
	h.n.SetRecords(st.Records)
	if st.QemuSocket != "" && h.qemu == "" {
		if err := h.n.ListenQemu(st.QemuSocket); err != nil {
			errs = append(errs, err.Error())
		} else {
			h.qemu = st.QemuSocket
		}
	} else if st.QemuSocket != h.qemu {
		errs = append(errs, fmt.Sprintf("qemu socket %q: the helper serves %q until restarted", st.QemuSocket, h.qemu))
	}
	for p := range h.vfkit {
		if !slices.Contains(st.VfkitSockets, p) {
			if err := h.n.CloseVfkit(p); err != nil {
				h.log.Warn("usernet: close vfkit socket", "path", p, "error", err)
			}
			delete(h.vfkit, p)
		}
	}
	for _, p := range st.VfkitSockets {
		if !h.vfkit[p] {
			if err := h.n.ListenVfkit(p); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			h.vfkit[p] = true
		}
	}
	want := map[string]bool{}
	for _, p := range st.Ports {
		want[p.String()] = true
	}
	for _, p := range h.n.Ports() {
		if !want[p.String()] {
			if err := h.n.Unpublish(p); err != nil {
				h.log.Warn("usernet: unpublish", "port", p.String(), "error", err)
			}
		}
	}
	portErrs := map[string]string{}
	for _, p := range st.Ports {
		if err := h.n.Publish(p); err != nil {
			portErrs[p.String()] = err.Error()
		}
	}
	var err error
	if len(errs) > 0 {
		err = errors.New(strings.Join(errs, "; "))
	}
	writeStatus(path, raw, err, portErrs, h.log)
}

func writeStatus(path string, raw []byte, err error, portErrs map[string]string, log hclog.Logger) {
	sum := sha256.Sum256(raw)
	st := Status{Pid: os.Getpid(), StateSHA256: hex.EncodeToString(sum[:]), PortErrors: portErrs}
	if len(st.PortErrors) == 0 {
		st.PortErrors = nil
	}
	if err != nil {
		st.Error = err.Error()
		log.Error("usernet: state", "path", path, "error", err)
	}
	b, _ := json.Marshal(st)
	if werr := atomicfile.WriteFile(StatusPath(path), b, 0o644); werr != nil {
		log.Error("usernet: status", "error", werr)
	}
}
