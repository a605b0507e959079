package netd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// pollInterval is how often Run looks for a changed state file besides
// SIGHUP.
var pollInterval = time.Second

// Run serves the network described by the state file at statePath until
// ctx ends: DNS on the gateway (or State.DNSAddr) and a proxy per port. It
// reloads on SIGHUP and when the file changes (size, mtime or inode),
// keeping listeners whose mapping is unchanged, closing removed ones and
// opening new ones. After every load it writes StatusPath(statePath). A
// state file that cannot be read at start is an error; later, a bad file
// is reported in the status and the old state kept.
func Run(ctx context.Context, statePath string, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	// SIGHUP is handled before the first status is written: a writer
	// signals only helpers whose status names them (core/network), and
	// SIGHUP's default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	h := &helper{statePath: statePath, log: log, res: newResolver(log.Named("dns")), proxies: map[string]proxy{}, portErr: map[string]string{}}
	defer h.shutdown()
	if err := h.reload(true); err != nil {
		return err
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "network", h.cur.Network)
			return nil
		case <-hup:
			_ = h.reload(false)
		case <-tick.C:
			if h.changed() {
				_ = h.reload(false)
			} else if h.dns == nil && h.dnsWant != "-" {
				// The gateway address may appear after the helper
				// started (the bridge is made later): try again.
				if srv, err := startDNS(h.dnsWant, h.res); err == nil {
					h.dns, h.dnsErr = srv, ""
					h.log.Info("dns listening", "address", srv.addr, "network", h.cur.Network)
					h.writeStatus(h.raw, nil)
				}
			}
		}
	}
}

type helper struct {
	statePath string
	log       hclog.Logger
	res       *resolver

	cur     State
	raw     []byte
	stamp   fileStamp
	dns     *dnsServer
	dnsWant string
	dnsErr  string
	proxies map[string]proxy
	portErr map[string]string
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(s.Ino)
	}
	return st
}

func (h *helper) changed() bool { return stampOf(h.statePath) != h.stamp }

// reload reads the state and applies it; first says this is the start (an
// unreadable file is then an error rather than a status).
func (h *helper) reload(first bool) error {
	stamp := stampOf(h.statePath)
	s, raw, err := ReadState(h.statePath)
	h.stamp = stamp
	if err != nil {
		if first {
			return fmt.Errorf("network helper: %w", err)
		}
		h.log.Error("reload failed; serving the previous state", "error", err)
		h.writeStatus(raw, err)
		return err
	}
	h.raw = raw
	h.apply(s)
	h.writeStatus(raw, nil)
	return nil
}

func (h *helper) apply(s State) {
	h.cur = s
	h.res.z.Store(newZone(s))

	want := s.DNSAddr
	if want == "" {
		want = s.Gateway + ":53"
	}
	if want != h.dnsWant || (h.dns == nil && want != "-") {
		if h.dns != nil {
			h.dns.close()
			h.dns = nil
		}
		h.dnsWant, h.dnsErr = want, ""
		if want != "-" {
			srv, err := startDNS(want, h.res)
			if err != nil {
				h.dnsErr = err.Error()
				h.log.Error("dns listen failed", "address", want, "error", err)
			} else {
				h.dns = srv
				h.log.Info("dns listening", "address", srv.addr, "network", s.Network)
			}
		}
	}

	keep := map[string]bool{}
	for _, p := range s.Ports {
		keep[p.Key()] = true
	}
	for k, p := range h.proxies {
		if !keep[k] {
			p.close()
			delete(h.proxies, k)
			h.log.Info("port closed", "port", k)
		}
	}
	for k := range h.portErr {
		if !keep[k] {
			delete(h.portErr, k)
		}
	}
	for _, p := range s.Ports {
		k := p.Key()
		if _, ok := h.proxies[k]; ok {
			continue
		}
		px, err := startProxy(p, h.log.Named("proxy").With("port", k))
		if err != nil {
			h.portErr[k] = err.Error()
			h.log.Error("port not served", "port", k, "error", err)
			continue
		}
		delete(h.portErr, k)
		h.proxies[k] = px
		h.log.Info("port open", "port", k)
	}
}

func (h *helper) writeStatus(raw []byte, loadErr error) {
	st := Status{Pid: os.Getpid(), UpdatedAt: time.Now().UTC(), StateSHA256: HashState(raw)}
	if loadErr != nil {
		st.Error = loadErr.Error()
	}
	if h.dns != nil {
		st.DNS.Address = h.dns.addr
	}
	st.DNS.Error = h.dnsErr
	for _, p := range h.cur.Ports {
		st.Ports = append(st.Ports, PortStatus{Port: p, Error: h.portErr[p.Key()]})
	}
	slices.SortFunc(st.Ports, func(a, b PortStatus) int { return int(a.HostPort) - int(b.HostPort) })
	if _, err := WriteJSON(StatusPath(h.statePath), st); err != nil && !errors.Is(err, os.ErrNotExist) {
		h.log.Error("write status", "error", err)
	}
}

func (h *helper) shutdown() {
	if h.dns != nil {
		h.dns.close()
	}
	for _, p := range h.proxies {
		p.close()
	}
}
