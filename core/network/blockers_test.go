package network

import (
	"context"
	"strings"
	"testing"

	sdknet "github.com/berth-dev/berth/sdk/network"
)

// blockingDatapath builds nothing and reports a forward-drop chain (the
// real lister, Kernel, is tested in TestForwardBlockersWarning).
type blockingDatapath struct{}

func (blockingDatapath) EnsureNetwork(context.Context, DatapathNetwork) error { return nil }
func (blockingDatapath) RemoveNetwork(context.Context, DatapathNetwork) error { return nil }
func (blockingDatapath) ForwardBlockers(context.Context) ([]string, error) {
	return []string{"ip filter FORWARD"}, nil
}

// TestForwardBlockersShown: the chains found at start are in every
// network's Warnings (network inspect and ls show them).
func TestForwardBlockersShown(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), func(o *Options) { o.Datapath = blockingDatapath{} })
	defer s.Close()
	if _, err := s.Create(ctx, sdknet.CreateSpec{Name: "app", Subnet: "10.207.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Inspect(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Warnings) != 1 || !strings.Contains(n.Warnings[0], `"ip filter FORWARD"`) || !strings.Contains(n.Warnings[0], "ACCEPT") {
		t.Errorf("Warnings = %q, want the chain and what to do", n.Warnings)
	}
	ns, err := s.List(ctx)
	if err != nil || len(ns) != 2 || len(ns[0].Warnings) != 1 || len(ns[1].Warnings) != 1 {
		t.Errorf("List = %+v, %v; want both networks with the warning", ns, err)
	}
	plain := open(t, t.TempDir())
	defer plain.Close()
	if n, _ := plain.Inspect(ctx, sdknet.DefaultNetwork); len(n.Warnings) != 0 {
		t.Errorf("no datapath, yet warnings %q", n.Warnings)
	}
}
