package manager

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
)

// TestRestartPoliciesAtStart: when the plugin starts again (the daemon's
// start), a container with policy always that a user stopped runs again;
// one with unless-stopped, or no policy, stays stopped.
func TestRestartPoliciesAtStart(t *testing.T) {
	l := newFakeLayers()
	dir := t.TempDir()
	ctx := context.Background()
	m := NewWithLayers(hclog.NewNullLogger(), l)
	if err := m.Configure(ctx, plugin.ConfigureRequest{StateDir: dir}); err != nil {
		t.Fatal(err)
	}
	for name, policy := range map[string]string{"always": "always", "unless": "unless-stopped", "none": "no"} {
		if _, err := m.Create(ctx, name, lifecycle.Config{Image: "alpine", Restart: lifecycle.RestartPolicy{Name: policy}}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Stop(ctx, name, time.Second); err != nil {
			t.Fatal(err)
		}
		if c := stateOf(t, m, name); c.State != lifecycle.StateStopped || c.Restarting {
			t.Fatalf("%s after a manual stop: %s, restarting %v", name, c.State, c.Restarting)
		}
	}
	_ = m.Close()

	m = newTestManager(t, l, dir)
	eventually(t, "always runs again after the start", func() bool {
		return stateOf(t, m, "always").State == lifecycle.StateRunning
	})
	for _, name := range []string{"unless", "none"} {
		if c := stateOf(t, m, name); c.State != lifecycle.StateStopped {
			t.Errorf("%s after the start: %s, want stopped", name, c.State)
		}
	}
	// Stopped by hand again, it stays stopped for this process's life.
	if _, err := m.Stop(ctx, "always", time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if c := stateOf(t, m, "always"); c.State != lifecycle.StateStopped || c.Restarting {
		t.Errorf("always stopped by hand: %s, restarting %v", c.State, c.Restarting)
	}
}

// TestRestartingIsReported: a stopped container its policy will start
// again says so (logs -f follows it into the next run).
func TestRestartingIsReported(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	m.settings.RestartBackoff = time.Hour // the restart stays pending
	m.settings.MaxRestartBackoff = time.Hour
	ctx := context.Background()
	c, err := m.Create(ctx, "svc", lifecycle.Config{Image: "alpine", Restart: lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	l.iso.exit(c.ID, 1)
	eventually(t, "stopped", func() bool { return stateOf(t, m, "svc").State == lifecycle.StateStopped })
	if got := stateOf(t, m, "svc"); !got.Restarting {
		t.Fatalf("a container waiting for its restart: %+v", got)
	}
	list, err := m.List(ctx, lifecycle.Filter{All: true})
	if err != nil || len(list) != 1 || !list[0].Restarting {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := m.SetRestartPolicy(ctx, "svc", lifecycle.RestartPolicy{Name: "no"}); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, m, "svc"); got.Restarting {
		t.Fatal("still restarting after the policy was turned off")
	}
	m.mu.Lock()
	_, pending := m.timers[c.ID]
	m.mu.Unlock()
	if pending {
		t.Fatal("the pending restart was not cancelled")
	}
}
