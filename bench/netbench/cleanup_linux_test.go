package main

import (
	"net/netip"
	"testing"
)

func TestRuleTags(t *testing.T) {
	sub := netip.MustParsePrefix("10.87.2.0/24")
	id, internal, ok := netRuleOf("berth net abc bbnet0 10.87.2.0/24 nat", "bbnet0", sub)
	if !ok || id != "abc" || internal {
		t.Errorf("netRuleOf of our network: %q %v %v", id, internal, ok)
	}
	if _, _, ok := netRuleOf("berth net abc berth0 10.88.0.0/16 nat", "bbnet0", sub); ok {
		t.Error("netRuleOf matched another network's rule")
	}
	if !ctrRuleIn("berth ctr 13a5 10.87.2.2", sub) || ctrRuleIn("berth ctr 13a5 10.88.0.2", sub) || ctrRuleIn("berth base", sub) {
		t.Error("ctrRuleIn: wrong subnet membership")
	}
}
