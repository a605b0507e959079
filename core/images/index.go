package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/berth-dev/berth/core/images/content"
)

// indexFile is the reference index under the image store's root. It is
// small (one entry per name and per lease) and rewritten whole on every
// change: temp file, fsync, rename, so a reader or a crash sees either the
// old index or the new one.
const indexFile = "index.json"

// refEntry is what a name points at.
type refEntry struct {
	// Digest is the platform manifest's digest.
	Digest    content.Digest `json:"digest"`
	MediaType string         `json:"mediaType"`
	// RepoDigest is the digest the registry served (an index for
	// multi-arch images); empty for images that were never pulled.
	RepoDigest content.Digest `json:"repoDigest,omitempty"`
	// Updated is when the name was last pointed at Digest.
	Updated time.Time `json:"updated"`
}

// index is the persisted reference index: names and leases. Values are
// copied on every change, never mutated in place, so a snapshot handed out
// stays valid.
type index struct {
	Version int                         `json:"version"`
	Refs    map[string]refEntry         `json:"refs"`
	Leases  map[string][]content.Digest `json:"leases"`
}

func loadIndex(root string) (*index, error) {
	b, err := os.ReadFile(filepath.Join(root, indexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &index{Version: 1, Refs: map[string]refEntry{}, Leases: map[string][]content.Digest{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("image index %s is corrupt: %w", filepath.Join(root, indexFile), err)
	}
	if ix.Refs == nil {
		ix.Refs = map[string]refEntry{}
	}
	if ix.Leases == nil {
		ix.Leases = map[string][]content.Digest{}
	}
	return &ix, nil
}

func (ix *index) clone() *index {
	c := &index{Version: ix.Version, Refs: maps.Clone(ix.Refs), Leases: map[string][]content.Digest{}}
	for k, v := range ix.Leases {
		c.Leases[k] = slices.Clone(v)
	}
	return c
}

// save writes ix atomically.
func (ix *index) save(root string) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(root, indexFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("image index: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("image index: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(root, indexFile)); err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	return nil
}

// roots returns every manifest digest a name or a lease holds.
func (ix *index) roots() map[content.Digest]bool {
	out := map[content.Digest]bool{}
	for _, e := range ix.Refs {
		out[e.Digest] = true
	}
	for _, ds := range ix.Leases {
		for _, d := range ds {
			out[d] = true
		}
	}
	return out
}

// namesOf lists the names pointing at manifest d, sorted.
func (ix *index) namesOf(d content.Digest) []string {
	var out []string
	for n, e := range ix.Refs {
		if e.Digest == d {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// leasesOf lists the leases holding manifest d, sorted.
func (ix *index) leasesOf(d content.Digest) []string {
	var out []string
	for id, ds := range ix.Leases {
		if slices.Contains(ds, d) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
