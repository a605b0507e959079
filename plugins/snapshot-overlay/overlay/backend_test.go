package overlay

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
)

func TestMountKinds(t *testing.T) {
	requireRoot(t)
	sn := newConfigured(t)
	ctx := context.Background()
	check := func(what string, ms []mount.Mount, err error, typ string, ro bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(ms) != 1 || ms[0].Type != typ || (typ == "bind" && ms[0].ReadOnly() != ro) {
			t.Errorf("%s mounts = %+v, want one %s (ro %v)", what, ms, typ, ro)
		}
	}
	ms, err := sn.Prepare(ctx, "base-a", "")
	check("Prepare without parent", ms, err, "bind", false)
	if err := sn.Commit(ctx, "base", "base-a"); err != nil {
		t.Fatal(err)
	}
	ms, err = sn.View(ctx, "v1", "base")
	check("View of one layer", ms, err, "bind", true)
	ms, err = sn.Prepare(ctx, "top-a", "base")
	check("Prepare on one layer", ms, err, "overlay", false)
	if up, _ := ms[0].Option("upperdir"); !strings.HasSuffix(up, "/fs") {
		t.Errorf("overlay upperdir %q", up)
	}
	if err := sn.Commit(ctx, "top", "top-a"); err != nil {
		t.Fatal(err)
	}
	ms, err = sn.View(ctx, "v2", "top")
	check("View of two layers", ms, err, "overlay", true)
	if _, ok := ms[0].Option("upperdir"); ok {
		t.Errorf("a view has an upperdir: %+v", ms)
	}
	if low, _ := ms[0].Option("lowerdir"); len(strings.Split(low, ":")) != 2 {
		t.Errorf("view of two layers has lowerdir %q", low)
	}
}

func TestApplyWritesOverlayWhiteouts(t *testing.T) {
	requireRoot(t)
	sn := newConfigured(t)
	ctx := context.Background()
	layer := func(key, parent string, files ...string) []mount.Mount {
		ms, err := sn.Prepare(ctx, key, parent)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		writeTar(t, &buf, files...)
		if _, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: "application/vnd.oci.image.layer.v1.tar"}, &buf); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		return ms
	}
	layer("l1-a", "", "d/", "d/gone", "keep")
	if err := sn.Commit(ctx, "l1", "l1-a"); err != nil {
		t.Fatal(err)
	}
	ms := layer("l2-a", "l1", "d/.wh.gone")
	up, _ := ms[0].Option("upperdir")
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(up, "d/gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("d/gone in the upper dir: mode %o rdev %d, %v; want a 0:0 character device", st.Mode, st.Rdev, err)
	}
}

func TestRemoveLeavesNothingAndCleanupReclaims(t *testing.T) {
	requireRoot(t)
	state := t.TempDir()
	sn := New(nil)
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: state}); err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, "k", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(state, "snapshots"))
	if len(entries) != 0 {
		t.Errorf("snapshots/ holds %d entries after Remove", len(entries))
	}
	// A crash left a half-made snapshot and a half-removed one.
	for _, d := range []string{"rm-77/fs", "99/fs"} {
		if err := os.MkdirAll(filepath.Join(state, "snapshots", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	entries, _ = os.ReadDir(filepath.Join(state, "snapshots"))
	if len(entries) != 0 {
		t.Errorf("Cleanup left %v", entries)
	}
	// Configure again with the same dir keeps the snapshots.
	if _, err := sn.Prepare(ctx, "kept", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Configure(ctx, plugin.ConfigureRequest{StateDir: state}); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(ctx, "kept"); err != nil {
		t.Errorf("Stat after a second Configure: %v", err)
	}
}

func TestUnconfigured(t *testing.T) {
	sn := New(nil)
	if _, err := sn.Stat(context.Background(), "x"); !errdefs.IsUnavailable(err) {
		t.Errorf("Stat before Configure = %v, want ErrUnavailable", err)
	}
	if err := sn.Configure(context.Background(), plugin.ConfigureRequest{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Configure without a state dir = %v, want ErrInvalidArgument", err)
	}
}
