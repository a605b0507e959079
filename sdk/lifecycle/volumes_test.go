package lifecycle

import (
	"context"
	"slices"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// volumeMap is a VolumeManager over a map, for RemoveAnonymousVolumes.
type volumeMap struct {
	VolumeManager
	vols    map[string]Volume
	removed []string
}

func (m *volumeMap) InspectVolume(_ context.Context, name string) (Volume, error) {
	v, ok := m.vols[name]
	if !ok {
		return Volume{}, errdefs.NotFound("no such volume: %s", name)
	}
	return v, nil
}

func (m *volumeMap) RemoveVolume(_ context.Context, name string, _ bool) error {
	delete(m.vols, name)
	m.removed = append(m.removed, name)
	return nil
}

func TestRemoveAnonymousVolumes(t *testing.T) {
	m := &volumeMap{vols: map[string]Volume{
		"anon":   {Name: "anon", Anonymous: true},
		"shared": {Name: "shared", Anonymous: true, UsedBy: []string{"other"}},
		"named":  {Name: "named"},
	}}
	c := Container{Config: Config{Mounts: []Mount{
		{Type: "volume", Source: "anon", Destination: "/a"},
		{Type: "volume", Source: "shared", Destination: "/s"},
		{Type: "volume", Source: "named", Destination: "/n"},
		{Type: "volume", Source: "gone", Destination: "/g"},
		{Type: "bind", Source: "/anon", Destination: "/b"},
	}}}
	if err := RemoveAnonymousVolumes(context.Background(), m, c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.removed, []string{"anon"}) {
		t.Fatalf("removed %v, want only the unused anonymous volume", m.removed)
	}
}
