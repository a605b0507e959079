package manager

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
)

func TestVolumesLifecycle(t *testing.T) {
	l := newFakeLayers()
	dir := t.TempDir()
	m := newTestManager(t, l, dir)
	ctx := context.Background()

	v, err := m.CreateVolume(ctx, "data", map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "data" || v.Driver != "local" || v.Mountpoint != filepath.Join(dir, "volumes/data/_data") || v.Labels["k"] != "v" || v.Anonymous {
		t.Fatalf("created %+v", v)
	}
	if st, err := os.Stat(v.Mountpoint); err != nil || !st.IsDir() {
		t.Fatalf("volume directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "kept"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := m.CreateVolume(ctx, "data", nil)
	if err != nil || again.Labels["k"] != "v" {
		t.Fatalf("creating an existing volume = %+v, %v; want it unchanged", again, err)
	}
	if _, err := m.CreateVolume(ctx, "a/b", nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad name: %v", err)
	}
	rnd, err := m.CreateVolume(ctx, "", nil)
	if err != nil || !IsContainerID(rnd.Name) && len(rnd.Name) != 64 {
		t.Fatalf("unnamed volume = %+v, %v; want a 64-hex name", rnd, err)
	}

	// A container mounts "data" (nocopy: the fake rootfs cannot be
	// mounted), "fresh" (made on first use) and an anonymous volume.
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine", Mounts: []lifecycle.Mount{
		{Type: "volume", Source: "data", Destination: "/data", Options: []string{"nocopy"}},
		{Type: "volume", Source: "fresh", Destination: "/fresh", ReadOnly: true, Options: []string{"nocopy", "nosuid"}},
		{Type: "volume", Destination: "/anon", Options: []string{"volume-nocopy"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	anon := c.Config.Mounts[2].Source
	if len(anon) != 64 || c.Config.Mounts[0].Source != "data" || c.Config.Mounts[1].Source != "fresh" {
		t.Fatalf("record's mounts %+v: want the volume names, the anonymous one filled in", c.Config.Mounts)
	}
	// The task binds the volumes' directories.
	task := l.iso.tasks[c.ID].info.Spec
	for _, want := range []struct {
		dst, src string
		ro       bool
	}{{"/data", "data", false}, {"/fresh", "fresh", true}, {"/anon", anon, false}} {
		i := slices.IndexFunc(task.OCI.Mounts, func(mt specs.Mount) bool { return mt.Destination == want.dst })
		if i < 0 {
			t.Fatalf("no mount at %s in %+v", want.dst, task.OCI.Mounts)
		}
		mt := task.OCI.Mounts[i]
		if mt.Type != "bind" || mt.Source != VolumeData(dir, want.src) || slices.Contains(mt.Options, "ro") != want.ro || slices.Contains(mt.Options, "nocopy") {
			t.Errorf("mount at %s = %+v", want.dst, mt)
		}
	}
	vs, err := m.ListVolumes(ctx)
	if err != nil || len(vs) != 4 {
		t.Fatalf("ListVolumes = %+v, %v", vs, err)
	}
	for _, v := range vs {
		used := v.Name == "data" || v.Name == "fresh" || v.Name == anon
		if used != slices.Equal(v.UsedBy, []string{c.ID}) || (v.Name == anon) != v.Anonymous {
			t.Errorf("volume %+v", v)
		}
	}

	// In use: refused, naming the container, with or without force.
	for _, force := range []bool{false, true} {
		err := m.RemoveVolume(ctx, "data", force)
		if !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "web") {
			t.Fatalf("RemoveVolume(force=%v) of a volume in use: %v", force, err)
		}
	}
	if rep, err := m.PruneVolumes(ctx, true); err != nil || !slices.Equal(rep.Removed, []string{rnd.Name}) {
		t.Fatalf("PruneVolumes(all) = %+v, %v; want only the unused one", rep, err)
	}

	// Once the container is gone: anonymous volumes go by prune, named
	// ones by prune --all, and data survives until then.
	if err := m.Delete(ctx, "web", true); err != nil {
		t.Fatal(err)
	}
	rep, err := m.PruneVolumes(ctx, false)
	if err != nil || !slices.Equal(rep.Removed, []string{anon}) {
		t.Fatalf("PruneVolumes = %+v, %v; want the anonymous volume", rep, err)
	}
	if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "kept")); err != nil || string(b) != "x" {
		t.Fatalf("data of a volume after its container went: %q, %v", b, err)
	}
	if err := m.RemoveVolume(ctx, "data", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "volumes/data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed volume's directory: %v", err)
	}
	if err := m.RemoveVolume(ctx, "data", false); !errdefs.IsNotFound(err) {
		t.Fatalf("removing a missing volume: %v", err)
	}
	if err := m.RemoveVolume(ctx, "data", true); err != nil {
		t.Fatalf("force-removing a missing volume: %v", err)
	}
	if _, err := m.InspectVolume(ctx, "fresh"); err != nil {
		t.Fatal(err)
	}
}

func TestFailedCreateRemovesTheVolumesItMade(t *testing.T) {
	l := newFakeLayers()
	dir := t.TempDir()
	m := newTestManager(t, l, dir)
	ctx := context.Background()
	if _, err := m.CreateVolume(ctx, "old", nil); err != nil {
		t.Fatal(err)
	}
	l.j.failOn("isolation.Create", errors.New("boom"))
	_, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine", Mounts: []lifecycle.Mount{
		{Type: "volume", Source: "old", Destination: "/a", Options: []string{"nocopy"}},
		{Type: "volume", Source: "new", Destination: "/b", Options: []string{"nocopy"}},
		{Type: "volume", Destination: "/c", Options: []string{"nocopy"}},
	}})
	if err == nil {
		t.Fatal("create succeeded")
	}
	vs, err := m.ListVolumes(ctx)
	if err != nil || len(vs) != 1 || vs[0].Name != "old" || len(vs[0].UsedBy) != 0 {
		t.Fatalf("volumes after a failed create = %+v, %v; want only the one that was there", vs, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "volumes"))
	if len(ents) != 1 {
		t.Fatalf("volume directories after a failed create: %v", ents)
	}
}

func TestCopyUp(t *testing.T) {
	root, data := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "srv/www/sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "srv/www/sub/index.html"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "srv/esc")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := copyUp(ctx, root, "/srv/www", data); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "sub/index.html")); err != nil || string(b) != "hi" {
		t.Fatalf("copied file = %q, %v", b, err)
	}
	if st, _ := os.Stat(data); st.Mode().Perm() != 0o750 {
		t.Errorf("volume root mode = %v, want the image directory's 0750", st.Mode().Perm())
	}
	// Nothing to copy: a missing path, a file, a symlink out of the root.
	for _, p := range []string{"/nope", "/srv/www/sub/index.html", "/srv/esc"} {
		empty := t.TempDir()
		if err := copyUp(ctx, root, p, empty); err != nil {
			t.Errorf("copyUp of %s: %v", p, err)
		}
		if ents, _ := os.ReadDir(empty); len(ents) != 0 {
			t.Errorf("copyUp of %s copied %v", p, ents)
		}
	}
}

// TestImageVolumes: each VOLUME of the image gets an anonymous volume,
// filled from the image (a real bind-mounted rootfs here), unless the user
// mounts something at that path.
func TestImageVolumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root only: mounts the image's rootfs to fill the volume")
	}
	l := newFakeLayers()
	dir := t.TempDir()
	m := newTestManager(t, l, dir)
	image := t.TempDir()
	if err := os.MkdirAll(filepath.Join(image, "var/lib/db"), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(image, "var/lib/db/seed"), []byte("seed"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, _, err := m.env()
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	cfg := lifecycle.Config{Image: "alpine", Mounts: []lifecycle.Mount{{Type: "bind", Source: "/srv", Destination: "/etc/conf/"}}}
	if err := st.Create(store.Record{Container: lifecycle.Container{ID: id, Name: "db", Config: cfg}}); err != nil {
		t.Fatal(err)
	}
	var undo undoStack
	built, err := m.prepareVolumes(context.Background(), st, id, cfg, []string{"/var/lib/db", "/etc/conf"},
		[]mount.Mount{{Type: "bind", Source: image, Options: []string{"rbind"}}}, &undo)
	if err != nil {
		t.Fatal(err)
	}
	if len(built.Mounts) != 2 || built.Mounts[0].Type != "bind" || built.Mounts[1].Destination != "/var/lib/db" || built.Mounts[1].Type != "bind" {
		t.Fatalf("built mounts %+v: want the user's bind and one volume at /var/lib/db", built.Mounts)
	}
	rec, _ := st.Get(id)
	name := rec.Container.Config.Mounts[1].Source
	if len(rec.Container.Config.Mounts) != 2 || len(name) != 64 || rec.Container.Config.Mounts[1].Type != "volume" {
		t.Fatalf("recorded mounts %+v", rec.Container.Config.Mounts)
	}
	if b, err := os.ReadFile(filepath.Join(VolumeData(dir, name), "seed")); err != nil || string(b) != "seed" {
		t.Fatalf("image volume content: %q, %v", b, err)
	}
	if st, _ := os.Stat(VolumeData(dir, name)); st.Mode().Perm() != 0o711 {
		t.Errorf("image volume mode %v, want 0711", st.Mode().Perm())
	}
	if v, err := m.InspectVolume(context.Background(), name); err != nil || !v.Anonymous {
		t.Fatalf("image volume %+v, %v", v, err)
	}
	if err := undo.run(); err != nil {
		t.Fatal(err)
	}
	if vs, _ := m.ListVolumes(context.Background()); len(vs) != 0 {
		t.Fatalf("undo left volumes %+v", vs)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "mnt")); len(ents) != 0 {
		t.Fatalf("rootfs mounts left: %v", ents)
	}
}
