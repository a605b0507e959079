package cgroupctl

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/resources"
)

// cgroupFile reads a v1 control file of group id.
func cgroupFile(t *testing.T, c *Controller, ctl, id, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctl, c.be.placement(id).CgroupPath, file))
	if err != nil {
		t.Fatalf("read %s of %s: %v", file, id, err)
	}
	return strings.TrimSpace(string(data))
}

// TestUpdateReplacesLimits checks that Update replaces the limits: what the
// new ones leave out goes back to the kernel default, so nothing of the old
// ones lingers in cgroupfs.
func TestUpdateReplacesLimits(t *testing.T) {
	c, _ := newTestController(t, "")
	if c.be.mode() != modeV1 {
		t.Skip("reads v1 control files")
	}
	ctx := context.Background()
	const id = "berth-update"
	full := resources.Limits{
		CPUShares: 256, CPUs: 0.5, CPUSetCPUs: "0", MemoryBytes: 64 << 20, MemorySoftBytes: 32 << 20,
		IOWriteBPS: 1 << 20, Pids: 10, Devices: resources.DefaultDeviceRules(),
	}
	if _, err := c.CreateGroup(ctx, id, full); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ ctl, file, limited, cleared string }{
		{"cpu", "cpu.shares", "256", "1024"},
		{"cpu", "cpu.cfs_quota_us", "50000", "-1"},
		{"cpuset", "cpuset.cpus", "0", c.be.(*v1Backend).parentCpuset("cpuset.cpus")},
		{"memory", "memory.limit_in_bytes", "67108864", "9223372036854771712"},
		{"memory", "memory.soft_limit_in_bytes", "33554432", "9223372036854771712"},
		{"pids", "pids.max", "10", "max"},
		{"devices", "devices.list", "c 1:3 rwm", "a *:* rwm"},
	}
	for _, ck := range checks {
		if got := cgroupFile(t, c, ck.ctl, id, ck.file); !strings.Contains(got, ck.limited) {
			t.Errorf("after create %s = %q, want %q", ck.file, got, ck.limited)
		}
	}
	if got := cgroupFile(t, c, "blkio", id, "blkio.throttle.write_bps_device"); !strings.HasSuffix(got, " 1048576") {
		t.Errorf("after create blkio.throttle.write_bps_device = %q, want a 1 MiB/s rule", got)
	}
	if err := c.Update(ctx, id, resources.Limits{}); err != nil {
		t.Fatalf("Update to no limits: %v", err)
	}
	for _, ck := range checks {
		if got := cgroupFile(t, c, ck.ctl, id, ck.file); got != ck.cleared {
			t.Errorf("after Update to no limits %s = %q, want %q", ck.file, got, ck.cleared)
		}
	}
	if got := cgroupFile(t, c, "blkio", id, "blkio.throttle.write_bps_device"); got != "" {
		t.Errorf("after Update to no limits blkio.throttle.write_bps_device = %q, want empty", got)
	}
	// And back: the record follows.
	if err := c.Update(ctx, id, full); err != nil {
		t.Fatalf("Update back to full limits: %v", err)
	}
	groups, _ := c.List(ctx)
	if len(groups) != 1 || groups[0].Limits.CPUs != 0.5 || groups[0].Limits.Pids != 10 {
		t.Errorf("List after Update = %+v", groups)
	}
}

// TestRestartReconciles checks that a new controller over the same state
// dir and parent keeps recorded groups (limits, paused mark), recreates a
// recorded cgroup that vanished (a reboot), and adopts a cgroup under the
// parent that has no record, so Delete can clean it.
func TestRestartReconciles(t *testing.T) {
	c, req := newTestController(t, "")
	if c.be.mode() != modeV1 {
		t.Skip("manipulates v1 directories")
	}
	ctx := context.Background()
	if _, err := c.CreateGroup(ctx, "berth-kept", resources.Limits{Pids: 20}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPaused(ctx, "berth-kept", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, "berth-vanished", resources.Limits{Pids: 30}); err != nil {
		t.Fatal(err)
	}
	b := c.be.(*v1Backend)
	b.removeDirs("berth-vanished")
	stray := filepath.Join(b.root, "pids", b.parent, "berth-stray")
	if err := os.Mkdir(stray, 0o755); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c2 := New(c.log)
	t.Cleanup(c2.Close)
	if err := c2.Configure(ctx, req); err != nil {
		t.Fatalf("Configure after restart: %v", err)
	}
	groups, err := c2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]resources.Group{}
	for _, g := range groups {
		byID[g.ID] = g
	}
	if g := byID["berth-kept"]; !g.Paused || g.Limits.Pids != 20 {
		t.Errorf("after restart berth-kept = %+v, want paused with Pids 20", g)
	}
	if got := cgroupFile(t, c2, "pids", "berth-vanished", "pids.max"); got != "30" {
		t.Errorf("recreated berth-vanished has pids.max %q, want 30", got)
	}
	if _, ok := byID["berth-stray"]; !ok {
		t.Errorf("stray cgroup was not adopted: List = %+v", groups)
	}
	for id := range byID {
		if err := c2.Delete(ctx, id); err != nil {
			t.Errorf("Delete(%s): %v", id, err)
		}
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("adopted stray cgroup still there after Delete: %v", err)
	}
}
