// Package storage keeps the metadata of a directory-based snapshotter in a
// bbolt file, as containerd's core/snapshots/storage does: which snapshots
// exist under which key, their kind, parent, labels and times, and the
// numeric ID that names each one's directory. It enforces the contract's
// rules that are about metadata alone (unique keys, parents must be
// committed, a parent with children cannot be removed, views cannot be
// committed), so every backend gets them right the same way.
//
// A backend does its filesystem work inside Update: if the work fails, it
// returns the error and the metadata change is rolled back with it.
//
//	err := ms.Update(func(tx *storage.Tx) error {
//		s, err := tx.Create(key, parent, snapshot.KindActive, opts)
//		if err != nil {
//			return err
//		}
//		return os.Mkdir(dirOf(s.ID), 0o755) // rolls back the record on failure
//	})
package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/snapshot"
)

var (
	bucketSnapshots = []byte("snapshots") // key -> record (JSON)
	bucketChildren  = []byte("children")  // parent + "\x00" + child -> ""
	bucketIDs       = []byte("ids")       // sequence source
)

// record is what the store keeps per snapshot key.
type record struct {
	ID      string            `json:"id"`
	Kind    snapshot.Kind     `json:"kind"`
	Parent  string            `json:"parent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	Size    int64             `json:"size,omitempty"`
	Inodes  int64             `json:"inodes,omitempty"`
}

// Snapshot is a snapshot as a backend needs it: its own ID and the IDs of
// its ancestors, nearest first.
type Snapshot struct {
	ID        string
	Kind      snapshot.Kind
	ParentIDs []string
}

// MetaStore is an open metadata file.
type MetaStore struct {
	db *bolt.DB
}

// Open opens (creating it) the metadata file at path, waiting at most
// timeout for another process to release it.
func Open(path string, timeout time.Duration) (*MetaStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, errdefs.Unavailable("snapshot metadata %s is locked by another process (waited %s)", path, timeout)
		}
		return nil, fmt.Errorf("open snapshot metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSnapshots, bucketChildren, bucketIDs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise snapshot metadata %s: %w", path, err)
	}
	return &MetaStore{db: db}, nil
}

// Close closes the file.
func (s *MetaStore) Close() error { return s.db.Close() }

// Update runs fn in a read-write transaction; an error from fn rolls back
// every change fn made through tx.
func (s *MetaStore) Update(fn func(tx *Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx}) })
}

// View runs fn in a read-only transaction.
func (s *MetaStore) View(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx}) })
}

// Tx is one transaction on the metadata.
type Tx struct {
	tx *bolt.Tx
}

func (t *Tx) get(key string) (record, bool, error) {
	v := t.tx.Bucket(bucketSnapshots).Get([]byte(key))
	if v == nil {
		return record{}, false, nil
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, false, fmt.Errorf("snapshot %q: corrupt metadata: %w", key, err)
	}
	return r, true, nil
}

func (t *Tx) put(key string, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketSnapshots).Put([]byte(key), v)
}

func childKey(parent, child string) []byte { return []byte(parent + "\x00" + child) }

func validKey(key string) error {
	if key == "" {
		return errdefs.InvalidArgument("snapshot key is empty")
	}
	if strings.IndexByte(key, 0) >= 0 {
		return errdefs.InvalidArgument("snapshot key %q contains a NUL byte", key)
	}
	return nil
}

// Create records a new active snapshot or view key on committed parent
// ("" for none) and returns it with a fresh ID.
func (t *Tx) Create(key, parent string, kind snapshot.Kind, opts []snapshot.Opt) (Snapshot, error) {
	if err := validKey(key); err != nil {
		return Snapshot{}, err
	}
	if kind != snapshot.KindActive && kind != snapshot.KindView {
		return Snapshot{}, errdefs.InvalidArgument("snapshot %q: cannot create a snapshot of kind %q", key, kind)
	}
	if _, ok, err := t.get(key); err != nil {
		return Snapshot{}, err
	} else if ok {
		return Snapshot{}, errdefs.AlreadyExists("snapshot %q already exists", key)
	}
	info, err := snapshot.ApplyOptions(opts)
	if err != nil {
		return Snapshot{}, err
	}
	var parentIDs []string
	if parent != "" {
		p, ok, err := t.get(parent)
		if err != nil {
			return Snapshot{}, err
		}
		if !ok {
			return Snapshot{}, errdefs.NotFound("parent snapshot %q of %q not found", parent, key)
		}
		if p.Kind != snapshot.KindCommitted {
			return Snapshot{}, errdefs.InvalidArgument("parent %q of %q is %s; only committed snapshots can be parents", parent, key, p.Kind)
		}
		if parentIDs, err = t.ancestors(parent); err != nil {
			return Snapshot{}, err
		}
		if err := t.tx.Bucket(bucketChildren).Put(childKey(parent, key), nil); err != nil {
			return Snapshot{}, err
		}
	}
	seq, err := t.tx.Bucket(bucketIDs).NextSequence()
	if err != nil {
		return Snapshot{}, err
	}
	now := time.Now().UTC()
	r := record{ID: strconv.FormatUint(seq, 10), Kind: kind, Parent: parent, Labels: info.Labels, Created: now, Updated: now}
	if err := t.put(key, r); err != nil {
		return Snapshot{}, err
	}
	return Snapshot{ID: r.ID, Kind: kind, ParentIDs: parentIDs}, nil
}

// ancestors returns the IDs of key and its parents, key's first.
func (t *Tx) ancestors(key string) ([]string, error) {
	var ids []string
	for k := key; k != ""; {
		r, ok, err := t.get(k)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("snapshot %q: ancestor %q is missing from the metadata", key, k)
		}
		ids = append(ids, r.ID)
		k = r.Parent
	}
	return ids, nil
}

// Get returns snapshot key with the IDs of its ancestors.
func (t *Tx) Get(key string) (Snapshot, error) {
	r, ok, err := t.get(key)
	if err != nil {
		return Snapshot{}, err
	}
	if !ok {
		return Snapshot{}, errdefs.NotFound("snapshot %q not found", key)
	}
	var parents []string
	if r.Parent != "" {
		if parents, err = t.ancestors(r.Parent); err != nil {
			return Snapshot{}, err
		}
	}
	return Snapshot{ID: r.ID, Kind: r.Kind, ParentIDs: parents}, nil
}

// Info returns the ID, Info and recorded Usage (committed snapshots only)
// of key.
func (t *Tx) Info(key string) (string, snapshot.Info, snapshot.Usage, error) {
	r, ok, err := t.get(key)
	if err != nil {
		return "", snapshot.Info{}, snapshot.Usage{}, err
	}
	if !ok {
		return "", snapshot.Info{}, snapshot.Usage{}, errdefs.NotFound("snapshot %q not found", key)
	}
	return r.ID, r.info(key), snapshot.Usage{Size: r.Size, Inodes: r.Inodes}, nil
}

func (r record) info(key string) snapshot.Info {
	return snapshot.Info{Kind: r.Kind, Name: key, Parent: r.Parent, Labels: maps.Clone(r.Labels), Created: r.Created, Updated: r.Updated}
}

// Commit turns active snapshot key into committed snapshot name, keeping
// its ID and recording usage (a committed snapshot no longer changes).
func (t *Tx) Commit(name, key string, usage snapshot.Usage, opts []snapshot.Opt) (string, error) {
	if err := validKey(name); err != nil {
		return "", err
	}
	r, ok, err := t.get(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errdefs.NotFound("snapshot %q not found", key)
	}
	if r.Kind != snapshot.KindActive {
		return "", errdefs.InvalidState("snapshot %q is %s; only active snapshots can be committed", key, r.Kind)
	}
	if _, exists, err := t.get(name); err != nil {
		return "", err
	} else if exists {
		return "", errdefs.AlreadyExists("snapshot %q already exists", name)
	}
	info, err := snapshot.ApplyOptions(opts)
	if err != nil {
		return "", err
	}
	if len(info.Labels) > 0 {
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		maps.Copy(r.Labels, info.Labels)
	}
	if err := t.tx.Bucket(bucketSnapshots).Delete([]byte(key)); err != nil {
		return "", err
	}
	if r.Parent != "" {
		children := t.tx.Bucket(bucketChildren)
		if err := children.Delete(childKey(r.Parent, key)); err != nil {
			return "", err
		}
		if err := children.Put(childKey(r.Parent, name), nil); err != nil {
			return "", err
		}
	}
	r.Kind = snapshot.KindCommitted
	r.Updated = time.Now().UTC()
	r.Size, r.Inodes = usage.Size, usage.Inodes
	return r.ID, t.put(name, r)
}

// Remove deletes key's record and returns its ID and kind; a snapshot with
// children is refused.
func (t *Tx) Remove(key string) (string, snapshot.Kind, error) {
	r, ok, err := t.get(key)
	if err != nil {
		return "", "", err
	}
	if !ok {
		return "", "", errdefs.NotFound("snapshot %q not found", key)
	}
	if n := t.children(key); n > 0 {
		return "", "", errdefs.InvalidState("snapshot %q has %d children; remove them first", key, n)
	}
	if err := t.tx.Bucket(bucketSnapshots).Delete([]byte(key)); err != nil {
		return "", "", err
	}
	if r.Parent != "" {
		if err := t.tx.Bucket(bucketChildren).Delete(childKey(r.Parent, key)); err != nil {
			return "", "", err
		}
	}
	return r.ID, r.Kind, nil
}

func (t *Tx) children(key string) int {
	prefix := []byte(key + "\x00")
	n := 0
	c := t.tx.Bucket(bucketChildren).Cursor()
	for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Next() {
		n++
	}
	return n
}

// UpdateInfo changes the labels of info.Name: fieldpaths "labels" replaces them
// all, "labels.<k>" sets or (when absent from info) removes one; none means
// all mutable fields (the labels).
func (t *Tx) UpdateInfo(info snapshot.Info, fieldpaths ...string) (snapshot.Info, error) {
	r, ok, err := t.get(info.Name)
	if err != nil {
		return snapshot.Info{}, err
	}
	if !ok {
		return snapshot.Info{}, errdefs.NotFound("snapshot %q not found", info.Name)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	for _, fp := range fieldpaths {
		switch {
		case fp == "labels":
			r.Labels = maps.Clone(info.Labels)
		case strings.HasPrefix(fp, "labels."):
			k := strings.TrimPrefix(fp, "labels.")
			if v, ok := info.Labels[k]; ok {
				if r.Labels == nil {
					r.Labels = map[string]string{}
				}
				r.Labels[k] = v
			} else {
				delete(r.Labels, k)
			}
		default:
			return snapshot.Info{}, errdefs.InvalidArgument("snapshot %q: field %q cannot be updated (only labels and labels.<key>)", info.Name, fp)
		}
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	r.Updated = time.Now().UTC()
	if err := t.put(info.Name, r); err != nil {
		return snapshot.Info{}, err
	}
	return r.info(info.Name), nil
}

// Filter is one parsed Walk filter.
type Filter struct {
	field, value string
}

// ParseFilters parses "name==x", "parent==y", "kind==committed",
// "labels.k==v" (all must match).
func ParseFilters(filters []string) ([]Filter, error) {
	var out []Filter
	for _, f := range filters {
		field, value, ok := strings.Cut(f, "==")
		field = strings.TrimSpace(field)
		if !ok || field == "" {
			return nil, errdefs.InvalidArgument("walk filter %q is not <field>==<value>", f)
		}
		switch {
		case field == "name", field == "parent", field == "kind", strings.HasPrefix(field, "labels.") && len(field) > len("labels."):
		default:
			return nil, errdefs.InvalidArgument("walk filter %q: unknown field %q (name, parent, kind, labels.<key>)", f, field)
		}
		out = append(out, Filter{field: field, value: strings.TrimSpace(value)})
	}
	return out, nil
}

// Match reports whether info matches every filter.
func Match(info snapshot.Info, filters []Filter) bool {
	for _, f := range filters {
		var got string
		var ok = true
		switch f.field {
		case "name":
			got = info.Name
		case "parent":
			got = info.Parent
		case "kind":
			got = string(info.Kind)
		default:
			got, ok = info.Labels[strings.TrimPrefix(f.field, "labels.")]
		}
		if !ok || got != f.value {
			return false
		}
	}
	return true
}

// Walk calls fn for every snapshot matching filters, in key order.
func (t *Tx) Walk(fn func(id string, info snapshot.Info) error, filters []Filter) error {
	return t.tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("snapshot %q: corrupt metadata: %w", k, err)
		}
		info := r.info(string(k))
		if !Match(info, filters) {
			return nil
		}
		return fn(r.ID, info)
	})
}

// IDs returns the ID of every snapshot, for a backend's Cleanup.
func (t *Tx) IDs() (map[string]string, error) {
	ids := map[string]string{}
	err := t.Walk(func(id string, info snapshot.Info) error { ids[id] = info.Name; return nil }, nil)
	return ids, err
}
