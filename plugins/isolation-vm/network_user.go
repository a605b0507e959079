//go:build linux || darwin

package main

import (
	"net/netip"
	"path/filepath"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// checkUserAttachment checks a user-mode attachment before anything is
// made: one interface whose Bridge is the absolute path of the helper's
// socket, with an IPv4 address in CIDR form.
func checkUserAttachment(spec isolation.Spec) error {
	n := spec.Network
	if len(n.Interfaces) != 1 {
		return errdefs.InvalidArgument("task %s: a user-mode network attachment needs exactly one interface, got %d", spec.ID, len(n.Interfaces))
	}
	in := n.Interfaces[0]
	if in.Bridge == "" || !filepath.IsAbs(in.Bridge) {
		return errdefs.InvalidArgument("task %s: user-mode interface %q: socket %q is not an absolute path", spec.ID, in.Name, in.Bridge)
	}
	if len(in.Addresses) == 0 {
		return errdefs.InvalidArgument("task %s: user-mode interface %q has no address", spec.ID, in.Name)
	}
	for _, a := range in.Addresses {
		if p, err := netip.ParsePrefix(a); err != nil || !p.Addr().Is4() {
			return errdefs.InvalidArgument("task %s: user-mode interface %q: address %q is not IPv4 CIDR", spec.ID, in.Name, a)
		}
	}
	if in.Gateway != "" {
		if _, err := netip.ParseAddr(in.Gateway); err != nil {
			return errdefs.InvalidArgument("task %s: user-mode interface %q: gateway %q is not an IP address", spec.ID, in.Name, in.Gateway)
		}
	}
	return nil
}

// hasNIC says whether spec's VM gets a NIC (and so the initramfs with its
// driver): a bridge or a user-mode attachment.
func hasNIC(spec isolation.Spec) bool {
	return isBridge(spec) || isUser(spec)
}
