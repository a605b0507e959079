package spec

import (
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultSeccomp is Docker's default profile (moby/profiles) specialised for
// s's capabilities and this host's architecture and kernel.
func defaultSeccomp(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	return seccomp.GetDefaultProfile(s)
}

// loadSeccomp is the moby-format profile body specialised as the default
// one is.
func loadSeccomp(body string, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	return seccomp.LoadProfile(body, s)
}
