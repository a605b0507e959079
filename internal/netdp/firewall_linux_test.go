package netdp

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestFirewallSelected: the backend is the one FirewallEnv names (the
// child run of TestIptablesBackend sets it), else the automatic choice,
// which is nftables on this kernel.
func TestFirewallSelected(t *testing.T) {
	requireRoot(t)
	got, err := Firewall()
	if err != nil {
		t.Fatal(err)
	}
	want := os.Getenv(FirewallEnv)
	if want == "" || want == FirewallAuto {
		if !nftUsable() {
			t.Skip("nf_tables does not answer here: auto picks iptables")
		}
		want = FirewallNftables
	}
	if got != want {
		t.Errorf("Firewall() = %q, want %q", got, want)
	}
	if _, err := selectFirewall("ipchains"); err == nil || !strings.Contains(err.Error(), `"ipchains"`) {
		t.Errorf("a bad setting: %v, want an error naming it", err)
	}
}

// TestIptablesBackend runs this package's whole suite again with the
// iptables backend, through iptables-legacy so that its rules and the
// nftables backend's (of tests running meanwhile) do not see each other,
// and checks that no rule of its networks is left afterwards.
func TestIptablesBackend(t *testing.T) {
	requireRoot(t)
	if os.Getenv(FirewallEnv) != "" {
		t.Skip("already the child run of one backend")
	}
	bin, err := exec.LookPath(FirewallIptablesLegacy)
	if err != nil {
		t.Skipf("%s missing (scripts/install-deps.sh installs iptables): %v", FirewallIptablesLegacy, err)
	}
	if testing.Short() {
		t.Skip("-short")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^Test", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), FirewallEnv+"="+FirewallIptablesLegacy)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("suite with %s=%s: %v\n%s", FirewallEnv, FirewallIptablesLegacy, err, out)
	}
	passed := regexp.MustCompile(`(?m)^--- PASS: (\S+)`).FindAllStringSubmatch(string(out), -1)
	var names []string
	for _, m := range passed {
		names = append(names, m[1])
	}
	t.Logf("passed with %s: %v", FirewallIptablesLegacy, names)
	for _, must := range []string{"TestEnsureAndRemoveNetworkAreIdempotent", "TestBridgesAreIsolated", "TestMasqueradeAndInternal", "TestPublishPortsDNAT", "TestFirewallSelected"} {
		found := false
		for _, n := range names {
			found = found || n == must
		}
		if !found {
			t.Errorf("%s did not pass with %s:\n%s", must, FirewallIptablesLegacy, out)
		}
	}
	// Nothing of the suite's networks (all in 10.213.0.0/16) is left; a
	// test daemon on the iptables backend may hold rules of its own
	// meanwhile, so the base chains are not checked here.
	for _, table := range []string{"filter", "nat"} {
		rules, err := exec.Command(bin, "-w", "-t", table, "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("%s -t %s -S: %v\n%s", bin, table, err, rules)
		}
		for _, l := range strings.Split(string(rules), "\n") {
			if strings.Contains(l, "berth") && strings.Contains(l, "10.213.") {
				t.Errorf("%s table %s keeps a rule of the suite: %s", bin, table, l)
			}
		}
	}
}

// TestIptablesForwardBlockers: iptables' FORWARD policy DROP (Docker's) is
// named — set in a network namespace of the test's own, since on the host
// it would drop every forwarded packet of tests running meanwhile.
func TestIptablesForwardBlockers(t *testing.T) {
	requireRoot(t)
	bin, err := exec.LookPath(FirewallIptablesLegacy)
	if err != nil {
		t.Skipf("%s missing (scripts/install-deps.sh installs iptables): %v", FirewallIptablesLegacy, err)
	}
	ns, _ := testNS(t)
	var got []string
	// Commands started from a thread in ns run in ns.
	err = inNS(t, ns, func() error {
		fw, err := newIptables(FirewallIptablesLegacy)
		if err != nil {
			return err
		}
		if b, err := fw.forwardBlockers(); err != nil || len(b) != 0 {
			return fmt.Errorf("a fresh namespace: blockers %v, %v; want none", b, err)
		}
		if out, err := exec.Command(bin, "-w", "-P", "FORWARD", "DROP").CombinedOutput(); err != nil {
			return fmt.Errorf("%s -P FORWARD DROP: %v: %s", bin, err, out)
		}
		got, err = fw.forwardBlockers()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "iptables-legacy filter FORWARD" {
		t.Errorf("forwardBlockers = %v, want [iptables-legacy filter FORWARD]", got)
	}
}
