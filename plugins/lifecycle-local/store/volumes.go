package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// bucketVolumes holds named volumes: name → JSON Volume. It is made on
// first write, so a store written before volumes existed needs no
// migration.
var bucketVolumes = []byte("volumes")

// Volume is a named volume's metadata; its data is a directory the
// manager keeps beside the store.
type Volume struct {
	Schema    int               `json:"schema"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	// Anonymous marks a volume a container made for itself (-v /path).
	Anonymous bool `json:"anonymous,omitempty"`
}

// MountsVolume reports whether the container of r mounts volume name.
func MountsVolume(r Record, name string) bool {
	for _, m := range r.Container.Config.Mounts {
		if m.Type == "volume" && m.Source == name {
			return true
		}
	}
	return false
}

// CreateVolume adds v; ErrAlreadyExists when its name is taken.
func (s *Store) CreateVolume(v Volume) error {
	if v.Name == "" {
		return errdefs.InvalidArgument("volume record needs a name")
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketVolumes)
		if err != nil {
			return err
		}
		if b.Get([]byte(v.Name)) != nil {
			return errdefs.AlreadyExists("volume %s exists already", v.Name)
		}
		v.Schema = s.version
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return b.Put([]byte(v.Name), raw)
	})
}

// GetVolume returns the volume name; ErrNotFound when there is none.
func (s *Store) GetVolume(name string) (Volume, error) {
	var out Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVolumes)
		var raw []byte
		if b != nil {
			raw = b.Get([]byte(name))
		}
		if raw == nil {
			return errdefs.NotFound("no such volume: %s", name)
		}
		var err error
		out, err = s.decodeVolume(name, raw)
		return err
	})
	return out, err
}

// ListVolumes returns every volume, ordered by name.
func (s *Store) ListVolumes() ([]Volume, error) {
	var out []Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVolumes)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, raw []byte) error {
			v, err := s.decodeVolume(string(k), raw)
			if err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// VolumeUsers returns the IDs of the containers that mount each volume.
func (s *Store) VolumeUsers() (map[string][]string, error) {
	recs, err := s.List()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, r := range recs {
		for _, m := range r.Container.Config.Mounts {
			if m.Type == "volume" && m.Source != "" && !slices.Contains(out[m.Source], r.Container.ID) {
				out[m.Source] = append(out[m.Source], r.Container.ID)
			}
		}
	}
	return out, nil
}

// DeleteVolume removes the record of volume name unless a container
// record other than ignore's mounts it, checked in the same transaction
// (so a container created meanwhile either sees the volume or is seen
// here). A volume in use is ErrInvalidState naming the containers; a
// missing one ErrNotFound. ignore lets a failed Create remove the volume
// it made while its own record still names it.
func (s *Store) DeleteVolume(name, ignore string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVolumes)
		if b == nil || b.Get([]byte(name)) == nil {
			return errdefs.NotFound("no such volume: %s", name)
		}
		var users []string
		err := tx.Bucket(bucketContainers).ForEach(func(k, raw []byte) error {
			r, err := s.decode(k, raw)
			if err != nil {
				return err
			}
			if MountsVolume(r, name) && r.Container.ID != ignore {
				users = append(users, fmt.Sprintf("%s (%s)", r.Container.Name, r.Container.ID[:min(12, len(r.Container.ID))]))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return errdefs.InvalidState("volume %s is in use by container %s; remove the container first", name, strings.Join(users, ", "))
		}
		return b.Delete([]byte(name))
	})
}

func (s *Store) decodeVolume(name string, raw []byte) (Volume, error) {
	var v Volume
	if err := json.Unmarshal(raw, &v); err != nil {
		return Volume{}, fmt.Errorf("container store %s: volume %s is unreadable: %w", s.path, name, err)
	}
	if v.Schema != s.version {
		return Volume{}, errdefs.InvalidState("container store %s: volume %s has schema %d, want %d", s.path, name, v.Schema, s.version)
	}
	return v, nil
}
