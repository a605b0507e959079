package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// stateFile is the file under the plugin's state dir that holds its groups.
const stateFile = "groups.json"

// stateVersion is the format of stateFile; a file of another version is
// refused rather than misread.
const stateVersion = 1

// state is the persisted form of the controller's groups.
type state struct {
	Version int               `json:"version"`
	Groups  map[string]*group `json:"groups"`
}

// group is one group as the plugin records it.
type group struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Paused  bool      `json:"paused"`
	// Procs are the attached processes not yet seen to exit.
	Procs []*proc `json:"procs"`
	// ExitedCPUTicks is the CPU time of processes that left the group
	// (exited, or attached elsewhere), so the counter stays cumulative.
	ExitedCPUTicks uint64 `json:"exited_cpu_ticks"`
	// PeakRSS is the largest total RSS a sample saw.
	PeakRSS uint64 `json:"peak_rss"`
}

// proc is one attached process.
type proc struct {
	Pid int `json:"pid"`
	// StartTicks tells this process from a later one given the same pid.
	StartTicks uint64 `json:"start_ticks"`
	// BaseTicks is the process's CPU time when it was attached: only what
	// it uses in the group counts.
	BaseTicks uint64 `json:"base_ticks"`
	// CPUTicks is its CPU time at the last sample.
	CPUTicks uint64 `json:"cpu_ticks"`
	// RSS is its resident memory at the last sample (not persisted).
	RSS uint64 `json:"-"`
}

// used is the CPU time p used in its group so far.
func (p *proc) used() uint64 {
	if p.CPUTicks < p.BaseTicks {
		return 0
	}
	return p.CPUTicks - p.BaseTicks
}

func (g *group) clone() *group {
	c := *g
	c.Procs = make([]*proc, len(g.Procs))
	for i, p := range g.Procs {
		cp := *p
		c.Procs[i] = &cp
	}
	return &c
}

// loadState reads the groups saved at path; a missing file is no groups.
func loadState(path string) (map[string]*group, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*group{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errdefs.InvalidState("state file %s is corrupt (%v); move it away to start with no groups", path, err)
	}
	if s.Version != stateVersion {
		return nil, errdefs.InvalidState("state file %s has format version %d, this plugin reads version %d", path, s.Version, stateVersion)
	}
	if s.Groups == nil {
		s.Groups = map[string]*group{}
	}
	return s.Groups, nil
}

// saveState writes groups to path atomically: a temporary file in the same
// directory, synced, then renamed over path, then the directory synced. A
// crash leaves either the old file or the new one, never a torn one.
func saveState(path string, groups map[string]*group) error {
	b, err := json.MarshalIndent(state{Version: stateVersion, Groups: groups}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+stateFile+".*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save state %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save state %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
