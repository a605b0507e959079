package conformance

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// testVolumes: a named volume is made on first use by a container, is
// listed with its users, cannot be removed while a container mounts it
// (the error names the container), and goes once the container does; an
// anonymous volume gets a 64-hex name and is pruned, a named one only by
// an all-prune. Mounts carry "nocopy" so the suite needs no image content.
func testVolumes(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	name := fmt.Sprintf("%svol%d", s.opts.NamePrefix, seq.Add(1))
	t.Cleanup(func() { _ = s.m.RemoveVolume(ctx, name, true) })
	cfg := s.opts.Sleeper
	cfg.Mounts = []lifecycle.Mount{
		{Type: "volume", Source: name, Destination: "/named", Options: []string{"nocopy"}},
		{Type: "volume", Destination: "/anon", Options: []string{"nocopy"}},
	}
	c := s.create(t, cfg)
	anon := c.Config.Mounts[1].Source
	if len(anon) != 64 || c.Config.Mounts[0].Source != name {
		t.Fatalf("created container's mounts %+v: want %s and a 64-hex anonymous volume", c.Config.Mounts, name)
	}
	t.Cleanup(func() { _ = s.m.RemoveVolume(ctx, anon, true) })
	v, err := s.m.InspectVolume(ctx, name)
	if err != nil || v.Name != name || v.Anonymous || !slices.Equal(v.UsedBy, []string{c.ID}) || v.Mountpoint == "" {
		t.Fatalf("InspectVolume(%s) = %+v, %v", name, v, err)
	}
	if v, err := s.m.InspectVolume(ctx, anon); err != nil || !v.Anonymous {
		t.Fatalf("InspectVolume(anonymous) = %+v, %v", v, err)
	}
	err = s.m.RemoveVolume(ctx, name, true)
	if !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), c.Name) {
		t.Fatalf("RemoveVolume of a volume in use = %v, want InvalidState naming %s", err, c.Name)
	}
	if rep, err := s.m.PruneVolumes(ctx, true); err != nil || slices.Contains(rep.Removed, name) || slices.Contains(rep.Removed, anon) {
		t.Fatalf("PruneVolumes(all) = %+v, %v; it removed a volume in use", rep, err)
	}
	if err := s.m.Delete(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	rep, err := s.m.PruneVolumes(ctx, false)
	if err != nil || !slices.Contains(rep.Removed, anon) || slices.Contains(rep.Removed, name) {
		t.Fatalf("PruneVolumes = %+v, %v; want the anonymous volume only", rep, err)
	}
	if err := s.m.RemoveVolume(ctx, name, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.InspectVolume(ctx, name); !errdefs.IsNotFound(err) {
		t.Fatalf("InspectVolume of a removed volume = %v, want NotFound", err)
	}
	if err := s.m.RemoveVolume(ctx, name, false); !errdefs.IsNotFound(err) {
		t.Fatalf("RemoveVolume of a missing volume = %v, want NotFound", err)
	}
	if _, err := s.m.CreateVolume(ctx, "bad/name", nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("CreateVolume(bad/name) = %v, want InvalidArgument", err)
	}
}

// testSetRestartPolicy: the policy is stored and shown; a bad one is
// refused.
func testSetRestartPolicy(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	c := s.create(t, s.opts.Sleeper)
	p := lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 3}
	if got, err := s.m.SetRestartPolicy(ctx, c.ID, p); err != nil || got.Config.Restart != p {
		t.Fatalf("SetRestartPolicy = %+v, %v", got.Config.Restart, err)
	}
	if got := s.get(t, c.ID); got.Config.Restart != p {
		t.Fatalf("Get after SetRestartPolicy: %+v", got.Config.Restart)
	}
	if _, err := s.m.SetRestartPolicy(ctx, c.ID, lifecycle.RestartPolicy{Name: "sometimes"}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("SetRestartPolicy(sometimes) = %v, want InvalidArgument", err)
	}
}
