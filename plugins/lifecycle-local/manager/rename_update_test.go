package manager

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
)

func TestRename(t *testing.T) {
	l := newFakeLayers()
	dir := t.TempDir()
	m := newTestManager(t, l, dir)
	ctx := context.Background()
	web, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "db", lifecycle.Config{Image: "alpine"}); err != nil {
		t.Fatal(err)
	}

	if err := m.Rename(ctx, "web", "api"); err != nil {
		t.Fatalf("Rename(web, api) = %v", err)
	}
	if c, err := m.Get(ctx, "api"); err != nil || c.ID != web.ID || c.Name != "api" {
		t.Fatalf("Get(api) after rename = %+v, %v", c, err)
	}
	if _, err := m.Get(ctx, "web"); !errdefs.IsNotFound(err) {
		t.Fatalf("Get(web) after rename = %v, want ErrNotFound", err)
	}
	// The freed name can be used again.
	if _, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine"}); err != nil {
		t.Fatalf("Create(web) after its rename = %v", err)
	}

	// Refusals change nothing.
	if err := m.Rename(ctx, "api", "db"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Rename onto a taken name = %v, want ErrAlreadyExists", err)
	}
	if err := m.Rename(ctx, "api", "bad name"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Rename to an invalid name = %v, want ErrInvalidArgument", err)
	}
	if err := m.Rename(ctx, "nosuch", "x"); !errdefs.IsNotFound(err) {
		t.Fatalf("Rename of a missing container = %v, want ErrNotFound", err)
	}
	if c, err := m.Get(ctx, "api"); err != nil || c.ID != web.ID {
		t.Fatalf("Get(api) after refused renames = %+v, %v", c, err)
	}
	// Renaming to its own name is a no-op.
	if err := m.Rename(ctx, "api", "api"); err != nil {
		t.Fatalf("Rename to the same name = %v", err)
	}

	// The new name is persisted: a manager reopening the store sees it.
	_ = m.Close()
	m2 := newTestManager(t, l, dir)
	if c, err := m2.Get(ctx, "api"); err != nil || c.ID != web.ID {
		t.Fatalf("Get(api) after reopening = %+v, %v", c, err)
	}
}

func TestUpdateLimits(t *testing.T) {
	l := newFakeLayers()
	dir := t.TempDir()
	m := newTestManager(t, l, dir)
	ctx := context.Background()
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine", Limits: resources.Limits{MemoryBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	groupLimits := func() resources.Limits {
		l.res.mu.Lock()
		defer l.res.mu.Unlock()
		return l.res.groups[c.ID].Limits
	}

	want := resources.Limits{MemoryBytes: 128 << 20, CPUs: 0.5, Pids: 50}
	got, err := m.Update(ctx, "web", want)
	if err != nil || !reflect.DeepEqual(got.Config.Limits, want) {
		t.Fatalf("Update = %+v, %v", got.Config.Limits, err)
	}
	if g := groupLimits(); !reflect.DeepEqual(g, want) {
		t.Fatalf("group limits after Update = %+v, want %+v", g, want)
	}
	if c := stateOf(t, m, "web"); !reflect.DeepEqual(c.Config.Limits, want) || c.State != lifecycle.StateRunning {
		t.Fatalf("record after Update: %+v", c)
	}

	// Limits the resources plugin refuses change neither the group nor
	// the record.
	l.j.failOn("resources.Update", errdefs.InvalidArgument("memory below usage"))
	if _, err := m.Update(ctx, "web", resources.Limits{MemoryBytes: 1}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "update web: ") {
		t.Fatalf("refused Update = %v", err)
	}
	l.j.failOn("resources.Update", nil)
	if g, c := groupLimits(), stateOf(t, m, "web"); !reflect.DeepEqual(g, want) || !reflect.DeepEqual(c.Config.Limits, want) {
		t.Fatalf("a refused update changed group %+v / record %+v", g, c.Config.Limits)
	}
	if _, err := m.Update(ctx, "nosuch", want); !errdefs.IsNotFound(err) {
		t.Fatalf("Update of a missing container = %v", err)
	}

	// The limits outlive the manager.
	_ = m.Close()
	m2 := newTestManager(t, l, dir)
	if c, err := m2.Get(ctx, "web"); err != nil || !reflect.DeepEqual(c.Config.Limits, want) {
		t.Fatalf("limits after reopening = %+v, %v", c.Config.Limits, err)
	}
}
