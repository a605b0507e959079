package netdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/isolation"
)

// Chain and set names in the berth table (see the package doc).
const (
	chainForward     = "forward"
	chainPostrouting = "postrouting"
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPublish     = "publish"
	setBridges       = "bridges"
)

// Comment tags: every rule of ours carries one, as an nft comment.
const (
	tagBase = "berth base"
	tagNet  = "berth net "
	tagCtr  = "berth ctr "
)

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

func chains() map[string]*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return map[string]*nftables.Chain{
		chainForward: {Name: chainForward, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept},
		chainPostrouting: {Name: chainPostrouting, Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept},
		chainPrerouting: {Name: chainPrerouting, Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept},
		chainOutput: {Name: chainOutput, Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept},
		chainPublish: {Name: chainPublish, Table: table},
	}
}

// Rule is one nft rule of ours, as Rules lists it.
type Rule struct {
	Chain   string
	Handle  uint64
	Comment string
}

func newConn() (*nftables.Conn, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w (is the kernel's nf_tables available?)", err)
	}
	return c, nil
}

// nftFirewall is the nftables backend: the `inet berth` table (package
// doc). Callers hold the datapath lock.
type nftFirewall struct{}

func (nftFirewall) Name() string { return FirewallNftables }

func (nftFirewall) rules() ([]Rule, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	rs, err := listRules(c)
	if err != nil {
		return nil, err
	}
	var out []Rule
	for _, r := range rs {
		out = append(out, Rule{Chain: r.Chain.Name, Handle: r.Handle, Comment: comment(r)})
	}
	return out, nil
}

func (nftFirewall) bridges() ([]string, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	return listBridges(c)
}

func (nftFirewall) ensureNetwork(n Network) error { return ensureNetworkRules(n) }
func (nftFirewall) removeNetwork(n Network) error { return removeNetworkRules(n) }

func tableExists(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func listRules(c *nftables.Conn) ([]*nftables.Rule, error) {
	ok, err := tableExists(c)
	if err != nil || !ok {
		return nil, err
	}
	var out []*nftables.Rule
	for _, name := range []string{chainForward, chainPostrouting, chainPrerouting, chainOutput, chainPublish} {
		rs, err := c.GetRules(table, &nftables.Chain{Name: name, Table: table})
		if err != nil {
			if errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file") {
				continue
			}
			return nil, fmt.Errorf("list chain %s: %w", name, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

func listBridges(c *nftables.Conn) ([]string, error) {
	ok, err := tableExists(c)
	if err != nil || !ok {
		return nil, err
	}
	s, err := c.GetSetByName(table, setBridges)
	if err != nil {
		return nil, nil
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("list set %s: %w", setBridges, err)
	}
	var out []string
	for _, e := range els {
		out = append(out, strings.TrimRight(string(e.Key), "\x00"))
	}
	slices.Sort(out)
	return out, nil
}

func comment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func tagged(c string) []byte { return userdata.AppendString(nil, userdata.TypeComment, c) }

// ensureBase adds the table, its chains, the bridges set and the base
// rules, as far as they are missing (in c's batch; the caller flushes).
func ensureBase(c *nftables.Conn, existing []*nftables.Rule) (*nftables.Set, error) {
	c.AddTable(table)
	ch := chains()
	for _, name := range []string{chainPublish, chainForward, chainPostrouting, chainPrerouting, chainOutput} {
		c.AddChain(ch[name])
	}
	set, err := c.GetSetByName(table, setBridges)
	if err != nil || set == nil {
		set = &nftables.Set{Table: table, Name: setBridges, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
		if err := c.AddSet(set, nil); err != nil {
			return nil, fmt.Errorf("add set %s: %w", setBridges, err)
		}
	}
	has := map[string]bool{}
	for _, r := range existing {
		if comment(r) == tagBase {
			has[r.Chain.Name] = true
		}
	}
	if !has[chainForward] {
		c.InsertRule(&nftables.Rule{Table: table, Chain: ch[chainForward], UserData: tagged(tagBase),
			Exprs: concat(ctMask(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))})
	}
	for _, name := range []string{chainPrerouting, chainOutput} {
		if has[name] {
			continue
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: ch[name], UserData: tagged(tagBase),
			Exprs: concat(ipv4(), fibLocalDaddr(), ipDaddrNot(netip.MustParsePrefix("127.0.0.0/8")),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainPublish}})})
	}
	return set, nil
}

func netTag(n Network) string {
	mode := "nat"
	if n.Internal {
		mode = "internal"
	}
	return fmt.Sprintf("%s%s %s %s %s", tagNet, n.ID, n.Bridge, n.Subnet, mode)
}

func isNetTag(comment, id string) bool { return strings.HasPrefix(comment, tagNet+id+" ") }

// networkRules are n's rules, in chain order.
func networkRules(n Network) []*nftables.Rule {
	ch := chains()
	ud := tagged(netTag(n))
	br := n.Bridge
	fwd := func(e ...[]expr.Any) *nftables.Rule {
		return &nftables.Rule{Table: table, Chain: ch[chainForward], UserData: ud, Exprs: concat(e...)}
	}
	rules := []*nftables.Rule{
		fwd(ifname(expr.MetaKeyIIFNAME, br, true), ifname(expr.MetaKeyOIFNAME, br, true), verdict(expr.VerdictAccept)),
		// Published ports (DNAT) stay reachable from other networks, as
		// from anywhere else.
		fwd(ifname(expr.MetaKeyIIFNAME, br, true), oifInBridges(), ctNotDNAT(), verdict(expr.VerdictDrop)),
	}
	if n.Internal {
		rules = append(rules,
			fwd(ifname(expr.MetaKeyIIFNAME, br, true), verdict(expr.VerdictDrop)),
			fwd(ifname(expr.MetaKeyOIFNAME, br, true), verdict(expr.VerdictDrop)))
		return rules
	}
	rules = append(rules,
		fwd(ifname(expr.MetaKeyIIFNAME, br, true), verdict(expr.VerdictAccept)),
		fwd(ifname(expr.MetaKeyOIFNAME, br, true), ctMask(expr.CtKeySTATUS, 0x20 /* IPS_DST_NAT */), verdict(expr.VerdictAccept)),
		fwd(ifname(expr.MetaKeyOIFNAME, br, true), verdict(expr.VerdictDrop)),
		&nftables.Rule{Table: table, Chain: ch[chainPostrouting], UserData: ud,
			Exprs: concat(ipv4(), ipSaddr(n.Subnet), ifname(expr.MetaKeyOIFNAME, br, false), []expr.Any{&expr.Masq{}})},
		// Hairpin: no interface match, since with br_netfilter a bridged
		// packet's postrouting devices are the bridge port, not B.
		&nftables.Rule{Table: table, Chain: ch[chainPostrouting], UserData: ud,
			Exprs: concat(ipv4(), ipSaddr(n.Subnet), ipPrefix(16, n.Subnet, expr.CmpOpEq),
				ctMask(expr.CtKeySTATUS, 0x20), []expr.Any{&expr.Masq{}})},
	)
	return rules
}

// ensureNetworkRules makes n's rules and set element exactly what
// networkRules says: they are kept when their tags match, else replaced in
// one atomic batch.
func ensureNetworkRules(n Network) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	existing, err := listRules(c)
	if err != nil {
		return err
	}
	set, err := ensureBase(c, existing)
	if err != nil {
		return err
	}
	want := networkRules(n)
	var mine []*nftables.Rule
	same := true
	for _, r := range existing {
		if isNetTag(comment(r), n.ID) {
			mine = append(mine, r)
			if comment(r) != netTag(n) {
				same = false
			}
		}
	}
	if len(mine) != len(want) {
		same = false
	}
	if !same {
		for _, r := range mine {
			if err := c.DelRule(r); err != nil {
				return err
			}
		}
		if n.Internal {
			// At the head of the chain, so no other network's accepts
			// (e.g. of DNATed flows) come first: nothing enters or
			// leaves an internal network but its own traffic.
			for _, r := range slices.Backward(want) {
				c.InsertRule(r)
			}
		} else {
			for _, r := range want {
				c.AddRule(r)
			}
		}
	}
	if err := c.SetAddElements(set, []nftables.SetElement{{Key: ifnameBytes(n.Bridge)}}); err != nil {
		return err
	}
	return c.Flush()
}

// removeNetworkRules deletes n's rules, its bridge from the set, and the
// publish rules whose target lies in n's subnet; then the table itself when
// no network and no publish rule is left.
func removeNetworkRules(n Network) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	ok, err := tableExists(c)
	if err != nil || !ok {
		return err
	}
	existing, err := listRules(c)
	if err != nil {
		return err
	}
	left := 0
	for _, r := range existing {
		cm := comment(r)
		mine := isNetTag(cm, n.ID)
		if id, target, ok := parseCtrTag(cm); ok && id != "" && n.Subnet.Contains(target) {
			mine = true
		}
		if mine {
			if err := c.DelRule(r); err != nil {
				return err
			}
		} else if cm != tagBase {
			left++
		}
	}
	bridges, err := listBridges(c)
	if err != nil {
		return err
	}
	if set, err := c.GetSetByName(table, setBridges); err == nil && set != nil && slices.Contains(bridges, n.Bridge) {
		if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: ifnameBytes(n.Bridge)}}); err != nil {
			return err
		}
	}
	bridges = slices.DeleteFunc(bridges, func(b string) bool { return b == n.Bridge })
	if left == 0 && len(bridges) == 0 {
		c.DelTable(table)
	}
	return c.Flush()
}

func ctrTag(containerID string, target netip.Addr) string {
	return fmt.Sprintf("%s%s %s", tagCtr, containerID, target)
}

func parseCtrTag(c string) (string, netip.Addr, bool) {
	rest, ok := strings.CutPrefix(c, tagCtr)
	if !ok {
		return "", netip.Addr{}, false
	}
	id, t, ok := strings.Cut(rest, " ")
	if !ok {
		return "", netip.Addr{}, false
	}
	a, err := netip.ParseAddr(t)
	return id, a, err == nil
}

func (nftFirewall) publish(containerID string, target netip.Addr, ports []isolation.PortMapping) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	existing, err := listRules(c)
	if err != nil {
		return err
	}
	if _, err := ensureBase(c, existing); err != nil {
		return err
	}
	for _, r := range existing {
		if id, _, ok := parseCtrTag(comment(r)); ok && id == containerID {
			if err := c.DelRule(r); err != nil {
				return err
			}
		}
	}
	ch := chains()[chainPublish]
	ud := tagged(ctrTag(containerID, target))
	for _, p := range ports {
		var match []expr.Any
		if p.HostIP != "" {
			h, _ := netip.ParseAddr(p.HostIP)
			h = h.Unmap()
			switch {
			case h.IsLoopback():
				continue
			case h.IsUnspecified():
			case h.Is4():
				match = ipDaddr(h)
			default:
				continue
			}
		}
		proto := byte(unix.IPPROTO_TCP)
		if p.Protocol == "udp" {
			proto = unix.IPPROTO_UDP
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, UserData: ud, Exprs: concat(ipv4(), match,
			[]expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.HostPort)},
				&expr.Immediate{Register: 1, Data: target.AsSlice()},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.ContainerPort)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			})})
	}
	return c.Flush()
}

func (nftFirewall) unpublish(containerID string) ([]netip.Addr, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	existing, err := listRules(c)
	if err != nil {
		return nil, err
	}
	var targets []netip.Addr
	for _, r := range existing {
		if id, target, ok := parseCtrTag(comment(r)); ok && id == containerID {
			if err := c.DelRule(r); err != nil {
				return nil, err
			}
			if !slices.Contains(targets, target) {
				targets = append(targets, target)
			}
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("container %s: unpublish ports: %w", containerID, err)
	}
	return targets, nil
}

// Expression helpers.

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func ifnameBytes(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

func ifname(key expr.MetaKey, name string, eq bool) []expr.Any {
	op := expr.CmpOpEq
	if !eq {
		op = expr.CmpOpNeq
	}
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: ifnameBytes(name)}}
}

func oifInBridges() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: setBridges}}
}

func ipv4() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
}

func ipPrefix(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

func ipSaddr(p netip.Prefix) []expr.Any    { return ipPrefix(12, p, expr.CmpOpEq) }
func ipDaddrNot(p netip.Prefix) []expr.Any { return ipPrefix(16, p, expr.CmpOpNeq) }
func ipDaddr(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

func fibLocalDaddr() []expr.Any {
	return []expr.Any{&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)}}
}

// ctNotDNAT matches flows that were not destination-NATed.
func ctNotDNAT() []expr.Any {
	e := ctMask(expr.CtKeySTATUS, 0x20)
	e[2].(*expr.Cmp).Op = expr.CmpOpEq
	return e
}

func ctMask(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// forwardBlockers names the other tables' base chains on the forward hook
// whose policy is drop ("ip filter FORWARD", as Docker leaves
// iptables-nft). Legacy (x_tables) iptables rules are not visible here.
func (nftFirewall) forwardBlockers() ([]string, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	return forwardBlockers(c)
}

func forwardBlockers(c *nftables.Conn) ([]string, error) {
	chs, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	var out []string
	for _, ch := range chs {
		if ch.Table == nil || (ch.Table.Name == TableName && ch.Table.Family == nftables.TableFamilyINet) {
			continue
		}
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		if ch.Table.Family != nftables.TableFamilyINet && ch.Table.Family != nftables.TableFamilyIPv4 {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s", familyName(ch.Table.Family), ch.Table.Name, ch.Name))
	}
	slices.Sort(out)
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	}
	return fmt.Sprint(uint8(f))
}
