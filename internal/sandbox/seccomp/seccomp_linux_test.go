package seccomp

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/spec"
)

func TestRulesGroupConditionsLikeRunc(t *testing.T) {
	enosys := uint(38)
	p := &specs.LinuxSeccomp{Syscalls: []specs.LinuxSyscall{
		{Names: []string{"read", "write"}, Action: specs.ActAllow},
		// Distinct arguments: one rule, conditions ANDed.
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 1, Value: 2, Op: specs.OpEqualTo}}},
		// The same argument twice: one rule per condition, ORed.
		{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 0, Op: specs.OpEqualTo}, {Index: 0, Value: 8, Op: specs.OpEqualTo}}},
		{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
	}}
	rules := Rules(p)
	count := map[string]int{}
	for _, r := range rules {
		count[r.Syscall]++
	}
	if count["read"] != 1 || count["write"] != 1 || count["socket"] != 1 || count["personality"] != 2 {
		t.Fatalf("rules per syscall %v, want read 1 write 1 socket 1 personality 2", count)
	}
	for _, r := range rules {
		switch r.Syscall {
		case "socket":
			if len(r.Conditions) != 2 {
				t.Errorf("socket rule has %d conditions, want both ANDed", len(r.Conditions))
			}
		case "personality":
			if len(r.Conditions) != 1 {
				t.Errorf("personality rule has %d conditions, want one each", len(r.Conditions))
			}
		case "clone3":
			if r.ErrnoRet != 38 {
				t.Errorf("clone3 errno %d, want ENOSYS (38)", r.ErrnoRet)
			}
		case "read":
			if r.ErrnoRet != 1 {
				t.Errorf("default errno %d, want EPERM (1)", r.ErrnoRet)
			}
		}
	}
}

// TestDockerDefaultProfileCompiles compiles the profile sdk/spec puts in
// every spec with libseccomp (loading is tested in real containers by
// internal/sandbox).
func TestDockerDefaultProfileCompiles(t *testing.T) {
	s, err := spec.Build(spec.ImageConfig{Cmd: []string{"sh"}}, lifecycle.Config{}, spec.Extra{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Filter(s.Linux.Seccomp)
	if err != nil {
		t.Fatalf("compile the default profile: %v", err)
	}
	defer f.Release()
	if !slices.ContainsFunc(Rules(s.Linux.Seccomp), func(r Rule) bool { return r.Syscall == "clone3" && r.ErrnoRet == 38 }) {
		t.Error("default profile has no clone3 → ENOSYS rule")
	}
}

func TestUnknownActionIsAnError(t *testing.T) {
	_, err := Filter(&specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_FLY"})
	if err == nil {
		t.Fatal("unknown default action accepted")
	}
}
