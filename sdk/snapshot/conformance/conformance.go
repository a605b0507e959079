// Package conformance is the conformance suite of the snapshot layer: it
// checks that a snapshot.Snapshotter keeps the contract written in
// sdk/snapshot — containerd's snapshotter semantics — whoever wrote it and
// however it is reached (in process, over gRPC with RunOverGRPC, or as the
// client of a plugin process).
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) snapshot.Snapshotter {
//			sn := mine.New(hclog.NewNullLogger())
//			if err := sn.Configure(ctx, plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
//				t.Fatal(err)
//			}
//			return sn
//		}, conformance.Options{})
//	}
//
// It covers the ground of containerd's snapshots testsuite: layering,
// Stat of active and committed snapshots, transitivity, duplicate keys,
// Remove semantics (a parent with children is refused), Walk filters,
// read-only views, a 128-layer chain, Apply (whiteouts, a diff ID mismatch
// leaving nothing behind), Usage, and file semantics after commit (a file
// updated in a layer, a directory removed from a lower layer, chown,
// directory permissions, deleted files, a file moved from a lower layer),
// and concurrent Prepare/Apply/Commit on one parent.
//
// Checks that read or write snapshot content mount the descriptors the
// snapshotter returns, with Options.Mount (by default for real, through
// sdk/snapshot/mountutil, or MountBlock for a block image descriptor such
// as snapshot-ext4's — both need root on Linux: without it those checks
// skip and say so). Keys are unique per run, so the suite can share
// a live snapshotter with other tests; it removes what it creates.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/mountutil"
)

// Options tune the suite to the snapshotter under test.
type Options struct {
	// Mount presents mounts (from Prepare, View or Mounts) at a fresh
	// directory and returns it with a function undoing it. nil means
	// mounting for real with mountutil (Linux, root), or with MountBlock
	// when the mounts are one block image (IsBlockMount).
	Mount func(t *testing.T, mounts []mount.Mount) (dir string, unmount func())
	// Capabilities the snapshotter must declare, besides at least one
	// mount kind.
	Capabilities []string
	// ChainDepth is the length of the deep-chain check; 128 when zero.
	ChainDepth int
}

// KnownCapabilities are the capabilities defined by sdk/snapshot.
var KnownCapabilities = []string{
	snapshot.CapMountOverlay, snapshot.CapMountBind, snapshot.CapMountBlock, snapshot.CapMountShare,
	snapshot.CapApplyGzip, snapshot.CapApplyZstd, snapshot.CapRebase, snapshot.CapCleanup,
}

var runID atomic.Uint64

type suite struct {
	newSnapshotter func(t *testing.T) snapshot.Snapshotter
	opts           Options
	prefix         string
}

// Run runs the suite; newSnapshotter is called once per subtest and may
// return the same live snapshotter every time.
func Run(t *testing.T, newSnapshotter func(t *testing.T) snapshot.Snapshotter, opts Options) {
	t.Helper()
	if opts.ChainDepth == 0 {
		opts.ChainDepth = 128
	}
	s := &suite{newSnapshotter: newSnapshotter, opts: opts, prefix: fmt.Sprintf("conf%d-%d", os.Getpid(), runID.Add(1))}
	tests := []struct {
		name string
		fn   func(t *testing.T, sn snapshot.Snapshotter)
	}{
		{"Info", s.testInfo},
		{"StatActive", s.testStatActive},
		{"StatCommitted", s.testStatCommitted},
		{"Transitivity", s.testTransitivity},
		{"DuplicateKeys", s.testDuplicateKeys},
		{"Parents", s.testParents},
		{"CommitRules", s.testCommitRules},
		{"Remove", s.testRemove},
		{"Update", s.testUpdate},
		{"Walk", s.testWalk},
		{"Layering", s.testLayering},
		{"ViewReadOnly", s.testViewReadOnly},
		{"Apply", s.testApply},
		{"ApplyFailureLeavesNothing", s.testApplyFailure},
		{"Usage", s.testUsage},
		{"DeepChain", s.testDeepChain},
		{"FileSemantics", s.testFileSemantics},
		{"Concurrent", s.testConcurrent},
		{"Cleanup", s.testCleanup},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s.newSnapshotter(t)) })
	}
}

// key returns a key unique to this run and subtest.
func (s *suite) key(t *testing.T, name string) string {
	return fmt.Sprintf("%s/%s/%s", s.prefix, t.Name(), name)
}

// remove removes keys in order when the subtest ends, ignoring NotFound.
func remove(t *testing.T, sn snapshot.Snapshotter, keys ...string) {
	t.Cleanup(func() {
		for _, k := range keys {
			if err := sn.Remove(context.Background(), k); err != nil && !errdefs.IsNotFound(err) {
				t.Errorf("cleanup: Remove(%q): %v", k, err)
			}
		}
	})
}

// mount mounts mounts with Options.Mount or for real.
func (s *suite) mount(t *testing.T, mounts []mount.Mount) (string, func()) {
	t.Helper()
	if s.opts.Mount != nil {
		return s.opts.Mount(t, mounts)
	}
	if IsBlockMount(mounts) {
		return MountBlock(t, mounts)
	}
	if runtime.GOOS != "linux" {
		t.Skipf("mounting snapshot descriptors needs Linux (this is %s); give Options.Mount", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting snapshot descriptors needs root (CI runs as root); this check reads and writes snapshot content")
	}
	dir := t.TempDir()
	undo, err := mountutil.MountAll(mounts, dir)
	if err != nil {
		t.Fatalf("mount %+v: %v", mounts, err)
	}
	done := false
	unmount := func() {
		if done {
			return
		}
		done = true
		if err := undo(); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	}
	t.Cleanup(unmount)
	return dir, unmount
}

// mountable reports, without failing, whether content checks can run.
func (s *suite) canMount() string {
	if s.opts.Mount != nil {
		return ""
	}
	if runtime.GOOS != "linux" {
		return "mounting snapshot descriptors needs Linux; give Options.Mount"
	}
	if os.Geteuid() != 0 {
		return "mounting snapshot descriptors needs root (CI runs as root)"
	}
	return ""
}

// layer prepares key on parent, lets write change the mounted content,
// and commits it as name.
func (s *suite) layer(t *testing.T, sn snapshot.Snapshotter, name, parent string, write func(dir string) error) {
	t.Helper()
	ctx := context.Background()
	key := name + "-active"
	mounts, err := sn.Prepare(ctx, key, parent)
	if err != nil {
		t.Fatalf("Prepare(%q, %q): %v", key, parent, err)
	}
	dir, unmount := s.mount(t, mounts)
	if err := write(dir); err != nil {
		unmount()
		_ = sn.Remove(ctx, key)
		t.Fatalf("write layer %s: %v", name, err)
	}
	unmount()
	if err := sn.Commit(ctx, name, key); err != nil {
		t.Fatalf("Commit(%q, %q): %v", name, key, err)
	}
}

// view mounts a read-only view of parent and returns its directory.
func (s *suite) view(t *testing.T, sn snapshot.Snapshotter, parent string) string {
	t.Helper()
	key := parent + "-view"
	mounts, err := sn.View(context.Background(), key, parent)
	if err != nil {
		t.Fatalf("View(%q, %q): %v", key, parent, err)
	}
	remove(t, sn, key)
	dir, _ := s.mount(t, mounts)
	return dir
}

func (s *suite) testInfo(t *testing.T, sn snapshot.Snapshotter) {
	info, err := sn.Info(context.Background())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Layer != "snapshot" {
		t.Errorf("Info.Layer = %q, want snapshot", info.Layer)
	}
	kinds := 0
	for _, c := range info.Capabilities {
		if !slices.Contains(KnownCapabilities, c) {
			t.Errorf("unknown capability %q (known: %v)", c, KnownCapabilities)
		}
		switch c {
		case snapshot.CapMountOverlay, snapshot.CapMountBind, snapshot.CapMountBlock, snapshot.CapMountShare:
			kinds++
		}
	}
	if kinds == 0 {
		t.Errorf("capabilities %v declare no mount kind: the core cannot bind the snapshotter to any isolation mode", info.Capabilities)
	}
	for _, c := range s.opts.Capabilities {
		if !info.HasCapability(c) {
			t.Errorf("capability %q missing from %v", c, info.Capabilities)
		}
	}
}

func (s *suite) testStatActive(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	base, key := s.key(t, "base"), s.key(t, "active")
	remove(t, sn, key, base)
	if _, err := sn.Prepare(ctx, base+"-a", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, base, base+"-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, key, base, snapshot.WithLabels(map[string]string{"purpose": "stat"})); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	info, err := sn.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info.Kind != snapshot.KindActive || info.Name != key || info.Parent != base || info.Labels["purpose"] != "stat" {
		t.Errorf("Stat = %+v; want active %q on %q with label purpose=stat", info, key, base)
	}
	if info.Created.IsZero() || info.Updated.IsZero() {
		t.Errorf("Stat times are zero: %+v", info)
	}
	if _, err := sn.Stat(ctx, s.key(t, "missing")); !errdefs.IsNotFound(err) {
		t.Errorf("Stat of a missing key = %v, want ErrNotFound", err)
	}
}

func (s *suite) testStatCommitted(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	key, name := s.key(t, "a"), s.key(t, "c")
	remove(t, sn, name)
	if _, err := sn.Prepare(ctx, key, ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, name, key, snapshot.WithLabels(map[string]string{"c": "1"})); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	info, err := sn.Stat(ctx, name)
	if err != nil {
		t.Fatalf("Stat(%q): %v", name, err)
	}
	if info.Kind != snapshot.KindCommitted || info.Name != name || info.Parent != "" || info.Labels["c"] != "1" {
		t.Errorf("Stat = %+v; want committed %q, no parent, label c=1", info, name)
	}
	if _, err := sn.Stat(ctx, key); !errdefs.IsNotFound(err) {
		t.Errorf("Stat of the committed active key = %v, want ErrNotFound (Commit consumes it)", err)
	}
	if _, err := sn.Mounts(ctx, name); err == nil {
		t.Error("Mounts of a committed snapshot succeeded; only active snapshots and views have mounts")
	}
}

func (s *suite) testTransitivity(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	var names []string
	parent := ""
	for i := range 3 {
		name := s.key(t, fmt.Sprint("l", i))
		if _, err := sn.Prepare(ctx, name+"-a", parent); err != nil {
			t.Fatal(err)
		}
		if err := sn.Commit(ctx, name, name+"-a"); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		parent = name
	}
	remove(t, sn, names[2], names[1], names[0])
	for i, n := range names {
		info, err := sn.Stat(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if i > 0 {
			want = names[i-1]
		}
		if info.Parent != want {
			t.Errorf("Stat(%q).Parent = %q, want %q", n, info.Parent, want)
		}
	}
}

func (s *suite) testDuplicateKeys(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	base, key := s.key(t, "base"), s.key(t, "k")
	remove(t, sn, key, base)
	if _, err := sn.Prepare(ctx, base+"-a", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, base, base+"-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, key, base); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, key, base); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Prepare(%q) = %v, want ErrAlreadyExists", key, err)
	}
	if _, err := sn.View(ctx, key, base); !errdefs.IsAlreadyExists(err) {
		t.Errorf("View with an active key = %v, want ErrAlreadyExists", err)
	}
	if _, err := sn.Prepare(ctx, base, ""); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Prepare with a committed name = %v, want ErrAlreadyExists (one key space)", err)
	}
	info, err := sn.Stat(ctx, key)
	if err != nil || info.Kind != snapshot.KindActive || info.Parent != base {
		t.Errorf("after the refused duplicates Stat = %+v, %v; the first snapshot must be intact", info, err)
	}
}

func (s *suite) testParents(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	active := s.key(t, "active")
	remove(t, sn, active)
	if _, err := sn.Prepare(ctx, active, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, s.key(t, "child"), active); err == nil {
		t.Error("Prepare on an active parent succeeded; only committed snapshots may be parents")
		remove(t, sn, s.key(t, "child"))
	}
	if _, err := sn.Prepare(ctx, s.key(t, "orphan"), s.key(t, "nothing")); !errdefs.IsNotFound(err) {
		t.Errorf("Prepare on a missing parent = %v, want ErrNotFound", err)
	}
	if _, err := sn.View(ctx, s.key(t, "orphan-view"), s.key(t, "nothing")); !errdefs.IsNotFound(err) {
		t.Errorf("View of a missing parent = %v, want ErrNotFound", err)
	}
	if _, err := sn.Stat(ctx, s.key(t, "orphan")); !errdefs.IsNotFound(err) {
		t.Errorf("a refused Prepare left snapshot behind: Stat = %v", err)
	}
}

func (s *suite) testCommitRules(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	base, view, a, b := s.key(t, "base"), s.key(t, "view"), s.key(t, "a"), s.key(t, "b")
	remove(t, sn, view, a, b, base)
	if _, err := sn.Prepare(ctx, base+"-a", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, base, base+"-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, view, base); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, s.key(t, "from-view"), view); err == nil {
		t.Error("Commit of a view succeeded; views can never be committed")
	}
	if err := sn.Commit(ctx, s.key(t, "again"), base); err == nil {
		t.Error("Commit of a committed snapshot succeeded")
	}
	if err := sn.Commit(ctx, s.key(t, "x"), s.key(t, "missing")); !errdefs.IsNotFound(err) {
		t.Errorf("Commit of a missing key = %v, want ErrNotFound", err)
	}
	for _, k := range []string{a, b} {
		if _, err := sn.Prepare(ctx, k, base); err != nil {
			t.Fatal(err)
		}
	}
	if err := sn.Commit(ctx, b, a); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Commit onto an existing key = %v, want ErrAlreadyExists", err)
	}
	if info, err := sn.Stat(ctx, a); err != nil || info.Kind != snapshot.KindActive {
		t.Errorf("a refused Commit changed %q: %+v, %v", a, info, err)
	}
}

func (s *suite) testRemove(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	parent, child, view := s.key(t, "parent"), s.key(t, "child"), s.key(t, "view")
	remove(t, sn, view, child, parent)
	if _, err := sn.Prepare(ctx, parent+"-a", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, parent, parent+"-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, child, parent); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, view, parent); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, parent); !errdefs.IsInvalidState(err) {
		t.Errorf("Remove of a parent with children = %v, want ErrInvalidState", err)
	}
	if err := sn.Remove(ctx, child); err != nil {
		t.Fatalf("Remove(%q): %v", child, err)
	}
	if err := sn.Remove(ctx, parent); !errdefs.IsInvalidState(err) {
		t.Errorf("Remove of a parent with a view = %v, want ErrInvalidState", err)
	}
	if err := sn.Remove(ctx, view); err != nil {
		t.Fatalf("Remove(%q): %v", view, err)
	}
	if err := sn.Remove(ctx, parent); err != nil {
		t.Fatalf("Remove of the childless parent: %v", err)
	}
	for _, k := range []string{parent, child, view} {
		if _, err := sn.Stat(ctx, k); !errdefs.IsNotFound(err) {
			t.Errorf("Stat(%q) after Remove = %v, want ErrNotFound", k, err)
		}
		if err := sn.Remove(ctx, k); !errdefs.IsNotFound(err) {
			t.Errorf("second Remove(%q) = %v, want ErrNotFound", k, err)
		}
	}
	// A removed key can be used again.
	if _, err := sn.Prepare(ctx, child, ""); err != nil {
		t.Errorf("Prepare of a removed key: %v", err)
	}
}

func (s *suite) testUpdate(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	key := s.key(t, "k")
	remove(t, sn, key)
	if _, err := sn.Prepare(ctx, key, "", snapshot.WithLabels(map[string]string{"a": "1", "b": "2"})); err != nil {
		t.Fatal(err)
	}
	before, _ := sn.Stat(ctx, key)
	info, err := sn.Update(ctx, snapshot.Info{Name: key, Labels: map[string]string{"a": "10", "c": "3"}}, "labels.a", "labels.b")
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if want := map[string]string{"a": "10"}; !mapsEqual(info.Labels, want) {
		t.Errorf("labels after Update(labels.a, labels.b) = %v, want %v (b removed, c not in the field paths)", info.Labels, want)
	}
	if info.Updated.Before(before.Updated) || info.Kind != snapshot.KindActive {
		t.Errorf("Update returned %+v", info)
	}
	info, err = sn.Update(ctx, snapshot.Info{Name: key, Labels: map[string]string{"z": "26"}})
	if err != nil || !mapsEqual(info.Labels, map[string]string{"z": "26"}) {
		t.Errorf("Update with no field paths = %+v, %v; want labels replaced by z=26", info, err)
	}
	if got, _ := sn.Stat(ctx, key); !mapsEqual(got.Labels, map[string]string{"z": "26"}) {
		t.Errorf("Stat after Update has labels %v", got.Labels)
	}
	if _, err := sn.Update(ctx, snapshot.Info{Name: key, Parent: "x"}, "parent"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Update of parent = %v, want ErrInvalidArgument", err)
	}
	if _, err := sn.Update(ctx, snapshot.Info{Name: s.key(t, "missing")}); !errdefs.IsNotFound(err) {
		t.Errorf("Update of a missing key = %v, want ErrNotFound", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (s *suite) testWalk(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	base, active, view := s.key(t, "base"), s.key(t, "active"), s.key(t, "view")
	remove(t, sn, active, view, base)
	if _, err := sn.Prepare(ctx, base+"-a", "", snapshot.WithLabels(map[string]string{"run": s.prefix})); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, base, base+"-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, active, base, snapshot.WithLabels(map[string]string{"run": s.prefix, "tier": "top"})); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, view, base, snapshot.WithLabels(map[string]string{"run": s.prefix})); err != nil {
		t.Fatal(err)
	}
	walk := func(filters ...string) []string {
		t.Helper()
		var got []string
		err := sn.Walk(ctx, func(_ context.Context, i snapshot.Info) error {
			if i.Labels["run"] == s.prefix {
				got = append(got, i.Name)
			}
			return nil
		}, filters...)
		if err != nil {
			t.Fatalf("Walk(%q): %v", filters, err)
		}
		slices.Sort(got)
		return got
	}
	all := []string{active, base, view}
	slices.Sort(all)
	cases := []struct {
		filters []string
		want    []string
	}{
		{nil, all},
		{[]string{"kind==committed"}, []string{base}},
		{[]string{"kind==active"}, []string{active}},
		{[]string{"kind==view"}, []string{view}},
		{[]string{"parent==" + base}, sorted(active, view)},
		{[]string{"name==" + active}, []string{active}},
		{[]string{"labels.tier==top"}, []string{active}},
		{[]string{"labels.run==" + s.prefix, "kind==view"}, []string{view}},
		{[]string{"labels.tier==bottom"}, nil},
	}
	for _, c := range cases {
		if got := walk(c.filters...); !slices.Equal(got, c.want) {
			t.Errorf("Walk(%q) visited %v, want %v", c.filters, got, c.want)
		}
	}
	if err := sn.Walk(ctx, func(context.Context, snapshot.Info) error { return nil }, "colour==blue"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Walk with an unknown filter field = %v, want ErrInvalidArgument", err)
	}
	stop := errors.New("enough")
	n := 0
	err := sn.Walk(ctx, func(context.Context, snapshot.Info) error { n++; return stop }, "labels.run=="+s.prefix)
	if !errors.Is(err, stop) && (err == nil || err.Error() != stop.Error()) {
		t.Errorf("Walk whose fn fails = %v, want the fn's error", err)
	}
	if n != 1 {
		t.Errorf("fn ran %d times after returning an error, want 1", n)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }

func writeFile(dir, name, content string, perm os.FileMode) error {
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), perm)
}

func (s *suite) testLayering(t *testing.T, sn snapshot.Snapshotter) {
	if why := s.canMount(); why != "" {
		t.Skip(why)
	}
	l1, l2 := s.key(t, "l1"), s.key(t, "l2")
	remove(t, sn, l2, l1)
	s.layer(t, sn, l1, "", func(dir string) error {
		return errors.Join(writeFile(dir, "a", "from l1", 0o644), writeFile(dir, "dir/b", "b1", 0o600))
	})
	s.layer(t, sn, l2, l1, func(dir string) error {
		if b, err := os.ReadFile(filepath.Join(dir, "a")); err != nil || string(b) != "from l1" {
			return fmt.Errorf("l1's file a is not visible on top of l1: %q, %v", b, err)
		}
		return writeFile(dir, "c", "from l2", 0o644)
	})
	dir := s.view(t, sn, l2)
	expectFiles(t, dir, map[string]string{"a": "from l1", "dir/b": "b1", "c": "from l2"})
	dir1 := s.view(t, sn, l1)
	expectFiles(t, dir1, map[string]string{"a": "from l1", "dir/b": "b1"})
	expectAbsent(t, dir1, "c")
}

func expectFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, want := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
}

func expectAbsent(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v); it should not", n, err)
		}
	}
}

func (s *suite) testViewReadOnly(t *testing.T, sn snapshot.Snapshotter) {
	if why := s.canMount(); why != "" {
		t.Skip(why)
	}
	l1, l2 := s.key(t, "l1"), s.key(t, "l2")
	remove(t, sn, l2, l1)
	s.layer(t, sn, l1, "", func(dir string) error { return writeFile(dir, "f", "1", 0o644) })
	s.layer(t, sn, l2, l1, func(dir string) error { return writeFile(dir, "g", "2", 0o644) })
	for _, parent := range []string{l1, l2} { // one layer (often a bind) and two
		dir := s.view(t, sn, parent)
		if err := os.WriteFile(filepath.Join(dir, "new"), []byte("x"), 0o644); err == nil {
			t.Errorf("wrote a file into a view of %s", parent)
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("changed"), 0o644); err == nil {
			t.Errorf("changed a file in a view of %s", parent)
		}
		expectFiles(t, dir, map[string]string{"f": "1"})
		ms, err := sn.Mounts(context.Background(), parent+"-view")
		if err != nil {
			t.Fatalf("Mounts of the view: %v", err)
		}
		for _, m := range ms {
			if m.Type == "bind" && !m.ReadOnly() {
				t.Errorf("view mount %+v is a read-write bind", m)
			}
		}
	}
}

func (s *suite) testUsage(t *testing.T, sn snapshot.Snapshotter) {
	if why := s.canMount(); why != "" {
		t.Skip(why)
	}
	ctx := context.Background()
	key, name := s.key(t, "a"), s.key(t, "c")
	remove(t, sn, name)
	empty, err := sn.Usage(ctx, s.key(t, "missing"))
	if !errdefs.IsNotFound(err) {
		t.Errorf("Usage of a missing key = %+v, %v; want ErrNotFound", empty, err)
	}
	mounts, err := sn.Prepare(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	u0, err := sn.Usage(ctx, key)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	dir, unmount := s.mount(t, mounts)
	const size = 4 << 20
	if err := writeFile(dir, "big", string(make([]byte, size)), 0o644); err != nil {
		t.Fatal(err)
	}
	unmount()
	u1, err := sn.Usage(ctx, key)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if u1.Size-u0.Size < size || u1.Inodes <= u0.Inodes {
		t.Errorf("Usage grew from %+v to %+v after writing %d bytes in a new file", u0, u1, size)
	}
	if err := sn.Commit(ctx, name, key); err != nil {
		t.Fatal(err)
	}
	u2, err := sn.Usage(ctx, name)
	if err != nil || u2.Size < size {
		t.Errorf("Usage of the committed snapshot = %+v, %v; want at least %d bytes", u2, err, size)
	}
}

// testConcurrent prepares, applies and commits on one parent from several
// goroutines at once: every operation must succeed and none may see
// another's snapshot half-made.
func (s *suite) testConcurrent(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	base := s.key(t, "base")
	applyLayer(t, sn, base, "", false, reg("shared", "base"))
	const n = 8
	names := make([]string, n)
	for i := range names {
		names[i] = s.key(t, fmt.Sprint("c", i))
	}
	remove(t, sn, append(names, base)...)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			key := names[i] + "-extract"
			if _, err := sn.Prepare(ctx, key, base); err != nil {
				errs <- fmt.Errorf("Prepare(%q): %w", key, err)
				return
			}
			raw, diffID := buildLayer(reg(fmt.Sprint("own-", i), fmt.Sprint(i)))
			if _, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err != nil {
				errs <- fmt.Errorf("Apply(%q): %w", key, err)
				return
			}
			if err := sn.Commit(ctx, names[i], key); err != nil {
				errs <- fmt.Errorf("Commit(%q): %w", names[i], err)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	var children []string
	err := sn.Walk(ctx, func(_ context.Context, i snapshot.Info) error {
		children = append(children, i.Name)
		return nil
	}, "parent=="+base)
	if err != nil || len(children) != n {
		t.Errorf("Walk(parent==base) = %v, %v; want the %d committed children", children, err, n)
	}
}

func (s *suite) testCleanup(t *testing.T, sn snapshot.Snapshotter) {
	ctx := context.Background()
	key := s.key(t, "k")
	remove(t, sn, key)
	if _, err := sn.Prepare(ctx, key, ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Cleanup(ctx); err != nil && !errdefs.IsNotImplemented(err) {
		t.Errorf("Cleanup: %v", err)
	}
	if _, err := sn.Stat(ctx, key); err != nil {
		t.Errorf("Cleanup lost a live snapshot: %v", err)
	}
}
