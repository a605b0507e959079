// Package store persists lifecycle-local's container records in bbolt.
//
// One file, containers.db under the plugin's state dir, holds three
// buckets: containers (id → JSON record), names (name → id, so names are
// unique) and meta (the schema version). Every write is one bbolt
// transaction, synced to disk before the call returns, so a transition the
// manager acknowledges survives a crash of the plugin or the host.
//
// Records carry the schema version they were written with. Open migrates
// older records to SchemaVersion in one transaction (through Options.
// Migrations, one step per version) and refuses a store written by a newer
// lifecycle-local, so an upgrade never reads a record it misunderstands and
// a downgrade never damages one.
//
// bbolt takes an exclusive flock on the file and by default waits for it
// forever; Open waits at most Options.Timeout and then says which process
// holds the lock, so a leftover plugin process gives a clear error, never a
// hang.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// SchemaVersion is the version of the records this package writes.
const SchemaVersion = 1

// FileName is the store's file in the plugin's state dir.
const FileName = "containers.db"

// DefaultTimeout bounds the wait for the store's lock.
const DefaultTimeout = 5 * time.Second

var (
	bucketContainers = []byte("containers")
	bucketNames      = []byte("names")
	bucketMeta       = []byte("meta")
	keySchema        = []byte("schema")
)

// Record is one container as lifecycle-local keeps it: the public record
// plus what the manager needs to drive the layers again after a restart.
type Record struct {
	// Schema is the version the record was written with.
	Schema    int                 `json:"schema"`
	Container lifecycle.Container `json:"container"`
	// Creating marks a record whose Create has not finished: the manager
	// undoes what such a record holds when it finds one at startup.
	Creating bool `json:"creating,omitempty"`
	// Snapshotter is the snapshot plugin holding the rootfs (key
	// Container.SnapshotKey) and ImageChainID that snapshot's parent.
	Snapshotter  string `json:"snapshotter"`
	ImageChainID string `json:"image_chain_id,omitempty"`
	// Group is the resources group, "" when none was created.
	Group string `json:"group,omitempty"`
	// Task is the spec the isolation task was created from; the manager
	// creates the task again from it when a stopped container starts.
	Task *isolation.Spec `json:"task,omitempty"`
	// Run counts starts; exits are matched to the run they end, so a late
	// exit of an earlier run never stops a newer one.
	Run int `json:"run"`
	// ManualStop is set when a user stopped or killed the container; the
	// restart policy then leaves it stopped.
	ManualStop bool `json:"manual_stop,omitempty"`
	// LogPath is the file the task's output goes to.
	LogPath string `json:"log_path,omitempty"`
}

// Migration turns a record of version v (the map key) into one of version
// v+1; it receives and returns the record's JSON.
type Migration func(record []byte) ([]byte, error)

// Options tune Open.
type Options struct {
	// Timeout bounds the wait for the file lock; 0 means DefaultTimeout.
	Timeout time.Duration
	// Version is the schema version to migrate to and write; 0 means
	// SchemaVersion. Tests set it to exercise migrations.
	Version int
	// Migrations step records from version v to v+1.
	Migrations map[int]Migration
}

// Store is the container store. Its methods are safe for concurrent use;
// each is one transaction.
type Store struct {
	db      *bolt.DB
	path    string
	version int
}

// Open opens (creating it) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Version == 0 {
		opts.Version = SchemaVersion
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("container store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		holder := "another process"
		if pid := lockHolder(path); pid > 0 {
			holder = "process " + strconv.Itoa(pid) + describeProcess(pid)
		}
		return nil, errdefs.Unavailable("container store %s is locked by %s (waited %s); is an earlier lifecycle-local still running? stop it and try again", path, holder, opts.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open container store %s: %w", path, err)
	}
	s := &Store{db: db, path: path, version: opts.Version}
	if err := s.migrate(opts.Migrations); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the store, releasing its lock.
func (s *Store) Close() error { return s.db.Close() }

// migrate creates the buckets and brings every record to s.version.
func (s *Store) migrate(migrations map[int]Migration) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketContainers, bucketNames, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("container store %s: %w", s.path, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		have := s.version
		if raw := meta.Get(keySchema); raw != nil {
			v, err := strconv.Atoi(string(raw))
			if err != nil {
				return fmt.Errorf("container store %s: schema version %q is not a number", s.path, raw)
			}
			have = v
		}
		if have > s.version {
			return errdefs.InvalidState("container store %s has schema version %d, newer than this lifecycle-local understands (%d); run the newer version", s.path, have, s.version)
		}
		for v := have; v < s.version; v++ {
			step, ok := migrations[v]
			if !ok {
				return errdefs.InvalidState("container store %s: no migration from schema version %d to %d", s.path, v, v+1)
			}
			b := tx.Bucket(bucketContainers)
			var migrated [][2][]byte
			err := b.ForEach(func(k, raw []byte) error {
				out, err := step(bytes.Clone(raw))
				if err != nil {
					return fmt.Errorf("migrate container %s from schema %d: %w", k, v, err)
				}
				out, err = setSchema(out, v+1)
				if err != nil {
					return fmt.Errorf("migrate container %s from schema %d: %w", k, v, err)
				}
				migrated = append(migrated, [2][]byte{bytes.Clone(k), out})
				return nil
			})
			if err != nil {
				return err
			}
			for _, kv := range migrated {
				if err := b.Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
		}
		return meta.Put(keySchema, []byte(strconv.Itoa(s.version)))
	})
}

// setSchema sets the "schema" field of a JSON record.
func setSchema(raw []byte, v int) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	m["schema"] = json.RawMessage(strconv.Itoa(v))
	return json.Marshal(m)
}

func (s *Store) decode(id, raw []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return Record{}, fmt.Errorf("container store %s: record %s is unreadable: %w", s.path, id, err)
	}
	if r.Schema != s.version {
		return Record{}, errdefs.InvalidState("container store %s: record %s has schema %d, want %d", s.path, id, r.Schema, s.version)
	}
	return r, nil
}

func (s *Store) encode(r *Record) ([]byte, error) {
	r.Schema = s.version
	return json.Marshal(r)
}

// Create adds r. It fails with ErrAlreadyExists when its ID or name is
// taken, and ErrInvalidArgument when either is empty.
func (s *Store) Create(r Record) error {
	id, name := r.Container.ID, r.Container.Name
	if id == "" || name == "" {
		return errdefs.InvalidArgument("container record needs an id and a name (got id %q, name %q)", id, name)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		cs, ns := tx.Bucket(bucketContainers), tx.Bucket(bucketNames)
		if cs.Get([]byte(id)) != nil {
			return errdefs.AlreadyExists("container id %s exists already", id)
		}
		if other := ns.Get([]byte(name)); other != nil {
			return errdefs.AlreadyExists("the container name %q is already in use by container %s; remove or rename that container, or choose another name", name, other)
		}
		raw, err := s.encode(&r)
		if err != nil {
			return err
		}
		if err := cs.Put([]byte(id), raw); err != nil {
			return err
		}
		return ns.Put([]byte(name), []byte(id))
	})
}

// Update applies fn to the record of id and writes the result in the same
// transaction; fn's error aborts it. A changed name is checked for
// uniqueness. ErrNotFound when id has no record.
func (s *Store) Update(id string, fn func(*Record) error) (Record, error) {
	var out Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		cs, ns := tx.Bucket(bucketContainers), tx.Bucket(bucketNames)
		raw := cs.Get([]byte(id))
		if raw == nil {
			return errdefs.NotFound("no such container: %s", id)
		}
		r, err := s.decode([]byte(id), raw)
		if err != nil {
			return err
		}
		oldName := r.Container.Name
		if err := fn(&r); err != nil {
			return err
		}
		if r.Container.ID != id {
			return errdefs.InvalidArgument("container %s: the id of a record cannot change", id)
		}
		if newName := r.Container.Name; newName != oldName {
			if newName == "" {
				return errdefs.InvalidArgument("container %s: empty name", id)
			}
			if other := ns.Get([]byte(newName)); other != nil {
				return errdefs.AlreadyExists("the container name %q is already in use by container %s", newName, other)
			}
			if err := ns.Delete([]byte(oldName)); err != nil {
				return err
			}
			if err := ns.Put([]byte(newName), []byte(id)); err != nil {
				return err
			}
		}
		enc, err := s.encode(&r)
		if err != nil {
			return err
		}
		out = r
		return cs.Put([]byte(id), enc)
	})
	return out, err
}

// Get returns the record of exactly id.
func (s *Store) Get(id string) (Record, error) {
	var out Record
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketContainers).Get([]byte(id))
		if raw == nil {
			return errdefs.NotFound("no such container: %s", id)
		}
		var err error
		out, err = s.decode([]byte(id), raw)
		return err
	})
	return out, err
}

// Lookup finds the record ref names: a full ID, a name, or an unambiguous
// ID prefix, in that order (as Docker resolves them). ErrNotFound when
// nothing matches, ErrInvalidArgument when a prefix matches several.
func (s *Store) Lookup(ref string) (Record, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" {
		return Record{}, errdefs.InvalidArgument("empty container name or id")
	}
	var out Record
	err := s.db.View(func(tx *bolt.Tx) error {
		cs := tx.Bucket(bucketContainers)
		if raw := cs.Get([]byte(ref)); raw != nil {
			var err error
			out, err = s.decode([]byte(ref), raw)
			return err
		}
		if id := tx.Bucket(bucketNames).Get([]byte(ref)); id != nil {
			raw := cs.Get(id)
			if raw == nil {
				return fmt.Errorf("container store %s: name %q points at missing container %s", s.path, ref, id)
			}
			var err error
			out, err = s.decode(id, raw)
			return err
		}
		var matches [][]byte
		c := cs.Cursor()
		for k, _ := c.Seek([]byte(ref)); k != nil && bytes.HasPrefix(k, []byte(ref)); k, _ = c.Next() {
			matches = append(matches, bytes.Clone(k))
		}
		switch len(matches) {
		case 0:
			return errdefs.NotFound("no such container: %s", ref)
		case 1:
			var err error
			out, err = s.decode(matches[0], cs.Get(matches[0]))
			return err
		default:
			short := make([]string, len(matches))
			for i, m := range matches {
				short[i] = string(m[:min(len(m), 12)])
			}
			return errdefs.InvalidArgument("container id prefix %q is ambiguous: it matches %d containers (%s); give more of the id", ref, len(matches), strings.Join(short, ", "))
		}
	})
	return out, err
}

// List returns every record, ordered by ID.
func (s *Store) List() ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketContainers).ForEach(func(k, v []byte) error {
			r, err := s.decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Delete removes the record of id and frees its name. Deleting a missing
// record succeeds.
func (s *Store) Delete(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		cs, ns := tx.Bucket(bucketContainers), tx.Bucket(bucketNames)
		raw := cs.Get([]byte(id))
		if raw == nil {
			return nil
		}
		var r Record
		if err := json.Unmarshal(raw, &r); err == nil && r.Container.Name != "" {
			if cur := ns.Get([]byte(r.Container.Name)); string(cur) == id {
				if err := ns.Delete([]byte(r.Container.Name)); err != nil {
					return err
				}
			}
		}
		return cs.Delete([]byte(id))
	})
}

// Check verifies the file's page structure (bbolt's consistency check) and
// that every name points at a record and every record's name points back.
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		cs, ns := tx.Bucket(bucketContainers), tx.Bucket(bucketNames)
		_ = ns.ForEach(func(name, id []byte) error {
			if cs.Get(id) == nil {
				errs = append(errs, fmt.Errorf("name %q points at missing container %s", name, id))
			}
			return nil
		})
		_ = cs.ForEach(func(id, raw []byte) error {
			r, err := s.decode(id, raw)
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			if got := ns.Get([]byte(r.Container.Name)); string(got) != string(id) {
				errs = append(errs, fmt.Errorf("container %s: its name %q points at %q", id, r.Container.Name, got))
			}
			return nil
		})
		return errors.Join(errs...)
	})
}
