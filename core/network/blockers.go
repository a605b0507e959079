package network

import (
	"context"
	"strings"
)

// ForwardBlockerLister is implemented by a Datapath that can name other
// firewall chains whose drop of forwarded traffic overrides its accepts
// (Kernel: netdp.ForwardBlockers).
type ForwardBlockerLister interface {
	ForwardBlockers(ctx context.Context) ([]string, error)
}

// ForwardBlockersHint says what to do about a forward-drop chain.
const ForwardBlockersHint = "another firewall table drops forwarded traffic (e.g. iptables FORWARD policy DROP, as Docker sets it): " +
	"container traffic to other networks and the outside is dropped there whatever berth accepts; accept berth's bridges in that chain " +
	"(e.g. iptables -I FORWARD -i berth0 -j ACCEPT; iptables -I FORWARD -o berth0 -j ACCEPT; the same for br-+ of user networks, or Docker's DOCKER-USER chain) or set its policy to accept"

// warnForwardBlockers logs, once, the datapath's forward blockers. It
// returns the chains found (nil when the datapath cannot tell).
func (s *Service) warnForwardBlockers(ctx context.Context) []string {
	if f, ok := s.opts.Datapath.(interface{ Firewall() (string, error) }); ok {
		if name, err := f.Firewall(); err != nil {
			s.log.Error("no usable firewall backend: networks cannot be wired", "error", err)
		} else {
			s.log.Info("network firewall backend", "firewall", name)
		}
	}
	l, ok := s.opts.Datapath.(ForwardBlockerLister)
	if !ok {
		return nil
	}
	chains, err := l.ForwardBlockers(ctx)
	if err != nil {
		s.log.Debug("cannot check other firewall tables for forward drops", "error", err)
		return nil
	}
	if len(chains) > 0 {
		s.log.Warn("forwarded container traffic will be dropped by another firewall chain",
			"chains", strings.Join(chains, ", "), "hint", ForwardBlockersHint)
	}
	s.blockers = chains
	return chains
}

// ForwardBlockers are the chains found at start that drop forwarded
// traffic (see ForwardBlockerLister); nil when none or unknown.
func (s *Service) ForwardBlockers() []string { return s.blockers }
