//go:build !linux

package netdp

import (
	"context"
	"net/netip"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The kernel datapath exists on Linux only; elsewhere every call says so.

func unsupported(what string) error {
	return errdefs.NotImplemented("netdp %s: the kernel network datapath is Linux only", what)
}

// Rule is one nft rule of ours, as Rules lists it.
type Rule struct {
	Chain   string
	Handle  uint64
	Comment string
}

func EnsureNetwork(context.Context, Network) error { return unsupported("EnsureNetwork") }
func RemoveNetwork(context.Context, Network) error { return unsupported("RemoveNetwork") }
func AttachNetns(context.Context, string, Interface) (string, error) {
	return "", unsupported("AttachNetns")
}
func DetachNetns(context.Context, string) error               { return unsupported("DetachNetns") }
func CreateTAP(context.Context, string, string, string) error { return unsupported("CreateTAP") }
func DeleteTAP(context.Context, string) error                 { return unsupported("DeleteTAP") }
func Rules(context.Context) ([]Rule, error)                   { return nil, unsupported("Rules") }
func BridgesInTable(context.Context) ([]string, error)        { return nil, unsupported("BridgesInTable") }
func UnpublishPorts(context.Context, string) error            { return unsupported("UnpublishPorts") }
func PublishPorts(context.Context, string, netip.Addr, []isolation.PortMapping) error {
	return unsupported("PublishPorts")
}

func ForwardBlockers(context.Context) ([]string, error) { return nil, unsupported("ForwardBlockers") }
func Firewall() (string, error)                         { return "", unsupported("Firewall") }
func ConnectNetns(context.Context, string, Interface) (string, error) {
	return "", unsupported("ConnectNetns")
}
func DisconnectNetns(context.Context, string, string) error { return unsupported("DisconnectNetns") }
