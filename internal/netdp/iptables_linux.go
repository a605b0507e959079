package netdp

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/sdk/isolation"
)

// The iptables backend, for hosts whose kernel has no usable nf_tables
// (or by `berth { firewall = "iptables" }`). Same tags and semantics as
// the nftables layout (package doc), in chains of our own:
//
//	filter FORWARD      -j BERTH-FORWARD                       (tag berth base, inserted first)
//	filter BERTH-FORWARD
//	  -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT      (base)
//	  per network B, as the nftables forward chain, with the
//	  bridges set replaced by a device group every berth bridge
//	  is put in (-m devgroup --dst-group 0xbe27)
//	nat POSTROUTING     -j BERTH-POSTROUTING                   (base)
//	nat BERTH-POSTROUTING  per network: masquerade, hairpin
//	nat PREROUTING, OUTPUT  -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j BERTH-PUBLISH  (base)
//	nat BERTH-PUBLISH   per container and port: DNAT (tag berth ctr <id> <target>)
//
// Rules carry their tag as an iptables comment. Changes are not atomic
// (one iptables call per rule; the datapath lock serialises ours), and the
// base goes when no network or publish rule is left.

// bridgeGroup is the network device group of every berth bridge under the
// iptables backend (nftables keeps a set of names instead).
const bridgeGroup = 0xbe27

const (
	iptForward     = "BERTH-FORWARD"
	iptPostrouting = "BERTH-POSTROUTING"
	iptPublish     = "BERTH-PUBLISH"
)

// iptChains maps our chains and the built-in chains holding our jumps to
// the nftables layout's chain names that Rules reports.
var iptChains = []struct{ table, chain, name string }{
	{"filter", "FORWARD", chainForward},
	{"filter", iptForward, chainForward},
	{"nat", "POSTROUTING", chainPostrouting},
	{"nat", iptPostrouting, chainPostrouting},
	{"nat", "PREROUTING", chainPrerouting},
	{"nat", "OUTPUT", chainOutput},
	{"nat", iptPublish, chainPublish},
}

type iptFirewall struct {
	name string
	ipt  *iptables.IPTables
}

// newIptables uses the iptables binary named (empty: "iptables" on PATH).
func newIptables(binary string) (*iptFirewall, error) {
	var ipt *iptables.IPTables
	var err error
	name := FirewallIptables
	if binary == "" {
		ipt, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(30))
	} else {
		name = binary
		ipt, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(30), iptables.Path("/usr/sbin/"+binary))
	}
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return &iptFirewall{name: name, ipt: ipt}, nil
}

func (f *iptFirewall) Name() string { return f.name }

func withComment(tag string, spec ...string) []string {
	// The comment goes before the target so listings keep it in place.
	i := slices.Index(spec, "-j")
	out := slices.Clone(spec[:i])
	out = append(out, "-m", "comment", "--comment", tag)
	return append(out, spec[i:]...)
}

// baseJumps are the rules in built-in chains leading to ours.
func baseJumps() []struct {
	table, chain string
	spec         []string
} {
	local := []string{"-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", "127.0.0.0/8", "-j", iptPublish}
	return []struct {
		table, chain string
		spec         []string
	}{
		{"filter", "FORWARD", withComment(tagBase, "-j", iptForward)},
		{"nat", "POSTROUTING", withComment(tagBase, "-j", iptPostrouting)},
		{"nat", "PREROUTING", withComment(tagBase, local...)},
		{"nat", "OUTPUT", withComment(tagBase, local...)},
	}
}

var establishedSpec = withComment(tagBase, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

func (f *iptFirewall) ensureBase() error {
	for _, c := range []struct{ table, chain string }{{"filter", iptForward}, {"nat", iptPostrouting}, {"nat", iptPublish}} {
		ok, err := f.ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return err
		}
		if !ok {
			if err := f.ipt.NewChain(c.table, c.chain); err != nil {
				return err
			}
		}
	}
	if ok, err := f.ipt.Exists("filter", iptForward, establishedSpec...); err != nil {
		return err
	} else if !ok {
		if err := f.ipt.Insert("filter", iptForward, 1, establishedSpec...); err != nil {
			return err
		}
	}
	for _, j := range baseJumps() {
		if err := f.ipt.InsertUnique(j.table, j.chain, 1, j.spec...); err != nil {
			return err
		}
	}
	return nil
}

// removeBase deletes our chains and the jumps to them.
func (f *iptFirewall) removeBase() error {
	for _, j := range baseJumps() {
		// A jump to a missing chain cannot even be looked for.
		target := j.spec[len(j.spec)-1]
		if ok, err := f.ipt.ChainExists(j.table, target); err != nil {
			return err
		} else if !ok {
			continue
		}
		if err := f.ipt.DeleteIfExists(j.table, j.chain, j.spec...); err != nil {
			return err
		}
	}
	for _, c := range []struct{ table, chain string }{{"filter", iptForward}, {"nat", iptPostrouting}, {"nat", iptPublish}} {
		ok, err := f.ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return err
		}
		if ok {
			if err := f.ipt.ClearAndDeleteChain(c.table, c.chain); err != nil {
				return err
			}
		}
	}
	return nil
}

// iptRule is one listed rule: its chain's table and name, its position
// (1-based) and its comment.
type iptRule struct {
	table, chain string
	pos          int
	comment      string
}

var commentRE = regexp.MustCompile(`-m comment --comment (?:"((?:[^"\\]|\\.)*)"|(\S+))`)

// list returns our rules (those with a berth tag) of table/chain; a
// missing chain has none.
func (f *iptFirewall) list(table, chain string) ([]iptRule, error) {
	ok, err := f.ipt.ChainExists(table, chain)
	if err != nil || !ok {
		return nil, err
	}
	lines, err := f.ipt.List(table, chain)
	if err != nil {
		return nil, err
	}
	var out []iptRule
	pos := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		pos++
		m := commentRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		c := m[1] + m[2]
		if c == tagBase || strings.HasPrefix(c, tagNet) || strings.HasPrefix(c, tagCtr) {
			out = append(out, iptRule{table: table, chain: chain, pos: pos, comment: strings.ReplaceAll(c, `\"`, `"`)})
		}
	}
	return out, nil
}

func (f *iptFirewall) listAll() ([]iptRule, error) {
	var out []iptRule
	for _, c := range iptChains {
		rs, err := f.list(c.table, c.chain)
		if err != nil {
			return nil, fmt.Errorf("list %s %s: %w", c.table, c.chain, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// deleteRules deletes rs (of one listing) by position, last first so the
// earlier positions stay valid.
func (f *iptFirewall) deleteRules(rs []iptRule) error {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b iptRule) int { return b.pos - a.pos })
	for _, r := range rs {
		if err := f.ipt.DeleteById(r.table, r.chain, r.pos); err != nil {
			return fmt.Errorf("delete %s %s rule %d (%s): %w", r.table, r.chain, r.pos, r.comment, err)
		}
	}
	return nil
}

func (f *iptFirewall) rules() ([]Rule, error) {
	rs, err := f.listAll()
	if err != nil {
		return nil, err
	}
	var out []Rule
	for _, r := range rs {
		name := r.chain
		for _, c := range iptChains {
			if c.table == r.table && c.chain == r.chain {
				name = c.name
			}
		}
		out = append(out, Rule{Chain: name, Handle: uint64(r.pos), Comment: r.comment})
	}
	return out, nil
}

func (f *iptFirewall) bridges() ([]string, error) {
	rs, err := f.list("filter", iptForward)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rs {
		if rest, ok := strings.CutPrefix(r.comment, tagNet); ok {
			if fs := strings.Fields(rest); len(fs) >= 2 && !slices.Contains(out, fs[1]) {
				out = append(out, fs[1])
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// iptNetworkRules are n's rules: forward ones, then postrouting ones.
func iptNetworkRules(n Network) (forward, post [][]string) {
	tag := netTag(n)
	br := n.Bridge
	group := "0x" + strconv.FormatUint(bridgeGroup, 16)
	forward = [][]string{
		withComment(tag, "-i", br, "-o", br, "-j", "ACCEPT"),
		// Other berth networks (published ports stay reachable).
		withComment(tag, "-i", br, "-m", "devgroup", "--dst-group", group, "-m", "conntrack", "!", "--ctstate", "DNAT", "-j", "DROP"),
	}
	if n.Internal {
		forward = append(forward,
			withComment(tag, "-i", br, "-j", "DROP"),
			withComment(tag, "-o", br, "-j", "DROP"))
		return forward, nil
	}
	sub := n.Subnet.Masked().String()
	forward = append(forward,
		withComment(tag, "-i", br, "-j", "ACCEPT"),
		withComment(tag, "-o", br, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"),
		withComment(tag, "-o", br, "-j", "DROP"))
	post = [][]string{
		withComment(tag, "-s", sub, "!", "-o", br, "-j", "MASQUERADE"),
		withComment(tag, "-s", sub, "-d", sub, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE"),
	}
	return forward, post
}

func (f *iptFirewall) ensureNetwork(n Network) error {
	if err := f.ensureBase(); err != nil {
		return err
	}
	l, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if l.Attrs().Group != bridgeGroup {
		if err := netlink.LinkSetGroup(l, bridgeGroup); err != nil {
			return fmt.Errorf("bridge %s: set device group: %w", n.Bridge, err)
		}
	}
	forward, post := iptNetworkRules(n)
	all, err := f.listAll()
	if err != nil {
		return err
	}
	var mine []iptRule
	same := true
	for _, r := range all {
		if isNetTag(r.comment, n.ID) {
			mine = append(mine, r)
			if r.comment != netTag(n) {
				same = false
			}
		}
	}
	if same && len(mine) == len(forward)+len(post) {
		return nil
	}
	if err := f.deleteRules(mine); err != nil {
		return err
	}
	if n.Internal {
		// At the head, before the base and every other network's accepts.
		for _, spec := range slices.Backward(forward) {
			if err := f.ipt.Insert("filter", iptForward, 1, spec...); err != nil {
				return err
			}
		}
	} else {
		for _, spec := range forward {
			if err := f.ipt.Append("filter", iptForward, spec...); err != nil {
				return err
			}
		}
	}
	for _, spec := range post {
		if err := f.ipt.Append("nat", iptPostrouting, spec...); err != nil {
			return err
		}
	}
	return nil
}

func (f *iptFirewall) removeNetwork(n Network) error {
	all, err := f.listAll()
	if err != nil {
		return err
	}
	byChain := map[string][]iptRule{}
	left := 0
	for _, r := range all {
		mine := isNetTag(r.comment, n.ID)
		if id, target, ok := parseCtrTag(r.comment); ok && id != "" && n.Subnet.Contains(target) {
			mine = true
		}
		switch {
		case mine:
			byChain[r.table+"/"+r.chain] = append(byChain[r.table+"/"+r.chain], r)
		case r.comment != tagBase:
			left++
		}
	}
	for _, rs := range byChain {
		if err := f.deleteRules(rs); err != nil {
			return err
		}
	}
	if left == 0 {
		return f.removeBase()
	}
	return nil
}

func (f *iptFirewall) publish(containerID string, target netip.Addr, ports []isolation.PortMapping) error {
	if err := f.ensureBase(); err != nil {
		return err
	}
	rs, err := f.list("nat", iptPublish)
	if err != nil {
		return err
	}
	var old []iptRule
	for _, r := range rs {
		if id, _, ok := parseCtrTag(r.comment); ok && id == containerID {
			old = append(old, r)
		}
	}
	if err := f.deleteRules(old); err != nil {
		return err
	}
	tag := ctrTag(containerID, target)
	for _, p := range ports {
		var match []string
		if p.HostIP != "" {
			h, _ := netip.ParseAddr(p.HostIP)
			h = h.Unmap()
			switch {
			case h.IsLoopback():
				continue
			case h.IsUnspecified():
			case h.Is4():
				match = []string{"-d", h.String() + "/32"}
			default:
				continue
			}
		}
		proto := "tcp"
		if p.Protocol == "udp" {
			proto = "udp"
		}
		spec := append(match, "-p", proto, "--dport", strconv.Itoa(int(p.HostPort)),
			"-j", "DNAT", "--to-destination", netip.AddrPortFrom(target, p.ContainerPort).String())
		if err := f.ipt.Append("nat", iptPublish, withComment(tag, spec...)...); err != nil {
			return err
		}
	}
	return nil
}

func (f *iptFirewall) unpublish(containerID string) ([]netip.Addr, error) {
	rs, err := f.list("nat", iptPublish)
	if err != nil {
		return nil, err
	}
	var old []iptRule
	var targets []netip.Addr
	for _, r := range rs {
		if id, target, ok := parseCtrTag(r.comment); ok && id == containerID {
			old = append(old, r)
			if !slices.Contains(targets, target) {
				targets = append(targets, target)
			}
		}
	}
	return targets, f.deleteRules(old)
}

func (f *iptFirewall) forwardBlockers() ([]string, error) {
	lines, err := f.ipt.List("filter", "FORWARD")
	if err != nil {
		return nil, fmt.Errorf("%s: list FORWARD: %w", f.name, err)
	}
	for _, l := range lines {
		if l == "-P FORWARD DROP" {
			return []string{f.name + " filter FORWARD"}, nil
		}
	}
	return nil, nil
}
