package main

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// TestUserModeRefused: a user-mode attachment (core/network's user
// datapath: a switch only VMs join) is refused with the reason and the
// way out, before anything is made.
func TestUserModeRefused(t *testing.T) {
	spec := isolation.Spec{ID: "u1", Network: &isolation.NetworkAttachment{Mode: "user", Interfaces: []isolation.Interface{{
		Name: "eth0", Bridge: "/run/x.sock", Addresses: []string{"10.1.2.3/24"}, Gateway: "10.1.2.1"}}}}
	err := platformSpec(spec, &specs.Spec{Linux: &specs.Linux{}})
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "kernel datapath") || !strings.Contains(err.Error(), "--network none") {
		t.Fatalf("user-mode attachment: %v; want NotImplemented naming the kernel datapath and --network none", err)
	}
}
