//go:build !linux

package spec

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultSeccomp leaves seccomp unset off Linux: moby/profiles builds the
// profile for the host's kernel and architecture, which only Linux has. An
// isolation plugin running Linux containers elsewhere (a VM's guest agent)
// fills it with the profile of the kernel it runs on.
func defaultSeccomp(*specs.Spec) (*specs.LinuxSeccomp, error) { return nil, nil }

// loadSeccomp fails off Linux, for the same reason.
func loadSeccomp(string, *specs.Spec) (*specs.LinuxSeccomp, error) {
	return nil, errors.New("a custom seccomp profile is specialised for the host kernel and needs a Linux host")
}
