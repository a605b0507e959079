package store

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

func TestVolumes(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	if vs, err := s.ListVolumes(); err != nil || len(vs) != 0 {
		t.Fatalf("ListVolumes of a new store = %v, %v", vs, err)
	}
	if _, err := s.GetVolume("data"); !errdefs.IsNotFound(err) {
		t.Fatalf("GetVolume of a missing volume: %v, want NotFound", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	data := Volume{Name: "data", Labels: map[string]string{"k": "v"}, CreatedAt: now}
	if err := s.CreateVolume(data); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVolume(Volume{Name: "data"}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("CreateVolume of a taken name: %v, want AlreadyExists", err)
	}
	if err := s.CreateVolume(Volume{Name: "anon", Anonymous: true, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}

	// A container mounting "data" keeps it.
	r := newRecord("web")
	r.Container.Config.Mounts = []lifecycle.Mount{{Type: "volume", Source: "data", Destination: "/d"}, {Type: "bind", Source: "/anon", Destination: "/b"}}
	if err := s.Create(r); err != nil {
		t.Fatal(err)
	}
	err := s.DeleteVolume("data", "")
	if !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "web ("+r.Container.ID[:12]+")") {
		t.Fatalf("DeleteVolume of a volume in use: %v, want InvalidState naming web", err)
	}
	if err := s.DeleteVolume("data", r.Container.ID); err != nil {
		t.Fatalf("DeleteVolume of a volume only the ignored container mounts: %v", err)
	}
	if err := s.CreateVolume(data); err != nil {
		t.Fatal(err)
	}
	users, err := s.VolumeUsers()
	if err != nil || !reflect.DeepEqual(users, map[string][]string{"data": {r.Container.ID}}) {
		t.Fatalf("VolumeUsers = %v, %v", users, err)
	}

	// It survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	got, err := s.GetVolume("data")
	want := data
	want.Schema = SchemaVersion
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetVolume after reopen = %+v, %v; want %+v", got, err, want)
	}
	vs, err := s.ListVolumes()
	if err != nil || len(vs) != 2 || vs[0].Name != "anon" || !vs[0].Anonymous || vs[1].Name != "data" {
		t.Fatalf("ListVolumes = %+v, %v", vs, err)
	}

	// Once the container is gone the volume can go.
	if err := s.Delete(r.Container.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVolume("data", ""); err != nil {
		t.Fatalf("DeleteVolume of an unused volume: %v", err)
	}
	if err := s.DeleteVolume("data", ""); !errdefs.IsNotFound(err) {
		t.Fatalf("DeleteVolume again: %v, want NotFound", err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}
