package rpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/sdk/resources"
)

// Record is what a resources plugin remembers of a group across restarts:
// the limits it was given and the paused mark lifecycle set.
type Record struct {
	ID      string           `json:"id"`
	Limits  resources.Limits `json:"limits"`
	Paused  bool             `json:"paused"`
	Created time.Time        `json:"created"`
	// Roots are the processes attached to the group, for controllers that
	// track membership themselves (the sampling engine).
	Roots []Root `json:"roots,omitempty"`
}

// Root is an attached process, told apart from a later one with the same
// pid by its start value (Proc.Start).
type Root struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Store keeps one JSON file per group in a directory, each written
// atomically (temp file, fsync, rename), so a crash leaves either the old or
// the new record. A Store with an empty Dir keeps nothing (in-process tests
// without a state dir). It does no locking: its owner serialises calls.
type Store struct {
	Dir string
}

func (s Store) path(id string) string { return filepath.Join(s.Dir, id+".json") }

// Put writes r.
func (s Store) Put(r Record) error {
	if s.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("save group %s: %w", r.ID, err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("save group %s: %w", r.ID, err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".tmp-"+r.ID+"-*")
	if err != nil {
		return fmt.Errorf("save group %s: %w", r.ID, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(r.ID))
	}
	if err != nil {
		return fmt.Errorf("save group %s in %s: %w", r.ID, s.Dir, err)
	}
	return nil
}

// Remove forgets group id; forgetting a missing group succeeds.
func (s Store) Remove(id string) error {
	if s.Dir == "" {
		return nil
	}
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget group %s: %w", id, err)
	}
	return nil
}

// Load returns every record in the directory. A record that cannot be read
// is an error naming its file: state is never dropped silently.
func (s Store) Load() (map[string]Record, error) {
	out := map[string]Record{}
	if s.Dir == "" {
		return out, nil
	}
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load groups from %s: %w", s.Dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(s.Dir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("load group record %s: %w", p, err)
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("load group record %s: %w (fix or remove the file)", p, err)
		}
		if r.ID+".json" != name {
			return nil, fmt.Errorf("load group record %s: it names group %q", p, r.ID)
		}
		out[r.ID] = r
	}
	return out, nil
}
