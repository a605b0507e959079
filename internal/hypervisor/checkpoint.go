package hypervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// CheckpointFile is the description Machine.Save writes next to the state.
const CheckpointFile = "machine.json"

// CheckpointVersion is bumped when the checkpoint layout changes.
const CheckpointVersion = 1

// Checkpoint describes a saved machine: what Restore needs to rebuild the
// same device model. Paths are not part of it (a restore may use clones).
type Checkpoint struct {
	Version   int    `json:"version"`
	Platform  string `json:"platform"` // Platform.Name
	Arch      string `json:"arch"`
	Accel     string `json:"accel"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib"`
	Disks     int    `json:"disks"`
	Shares    int    `json:"shares"`
	NICs      int    `json:"nics"`
	Balloon   bool   `json:"balloon"`
	SharedRAM bool   `json:"shared_ram"` // saved with Config.MemoryFile mapped shared
	// RAMBackend: the machine had a memory file (shared or private), so its
	// RAM block is the file backend's; a restore needs one again (qemu
	// names RAM blocks by backend).
	RAMBackend bool      `json:"ram_backend,omitempty"`
	State      string    `json:"state"` // state file name inside the dir
	Saved      time.Time `json:"saved"`
	// Hypervisor is the hypervisor's version string, for error messages.
	Hypervisor string `json:"hypervisor,omitempty"`
}

// NewCheckpoint describes cfg on platform p.
func NewCheckpoint(p Platform, cfg Config, state, hvVersion string) Checkpoint {
	return Checkpoint{
		Version: CheckpointVersion, Platform: p.Name, Arch: p.Arch, Accel: p.Accel,
		CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryBytes >> 20,
		Disks: len(cfg.Disks), Shares: len(cfg.Shares), NICs: len(cfg.NICs),
		Balloon: cfg.Balloon, SharedRAM: cfg.MemoryFile != "" && !cfg.MemoryPrivate, RAMBackend: cfg.MemoryFile != "",
		State: state, Saved: time.Now().UTC(), Hypervisor: hvVersion,
	}
}

// Matches reports, as an errdefs.ErrInvalidArgument naming the first
// difference, whether cfg on platform p rebuilds the machine ck describes.
func (ck Checkpoint) Matches(p Platform, cfg Config) error {
	want := NewCheckpoint(p, cfg, ck.State, ck.Hypervisor)
	if ck.SharedRAM && cfg.MemoryFile != "" && cfg.MemoryPrivate {
		want.SharedRAM = true // a private mapping of the saved RAM file
	}
	type field struct {
		name      string
		saved, is any
	}
	for _, f := range []field{
		{"platform", ck.Platform, want.Platform}, {"arch", ck.Arch, want.Arch},
		{"accelerator", ck.Accel, want.Accel}, {"cpus", ck.CPUs, want.CPUs},
		{"memory MiB", ck.MemoryMiB, want.MemoryMiB}, {"disk count", ck.Disks, want.Disks},
		{"share count", ck.Shares, want.Shares}, {"nic count", ck.NICs, want.NICs},
		{"balloon", ck.Balloon, want.Balloon}, {"memory file in use", ck.SharedRAM, want.SharedRAM},
	} {
		if f.saved != f.is {
			return errdefs.InvalidArgument("checkpoint does not match the machine: %s is %v, saved with %v", f.name, f.is, f.saved)
		}
	}
	return nil
}

// WriteCheckpoint stores ck as dir/CheckpointFile atomically (temp file,
// fsync, rename, fsync of dir).
func WriteCheckpoint(dir string, ck Checkpoint) error {
	b, err := json.MarshalIndent(ck, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, CheckpointFile), b)
}

// ReadCheckpoint loads dir/CheckpointFile; a missing, unreadable or
// malformed file is an errdefs.ErrInvalidArgument naming the path.
func ReadCheckpoint(dir string) (Checkpoint, error) {
	var ck Checkpoint
	p := filepath.Join(dir, CheckpointFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return ck, errdefs.InvalidArgument("checkpoint %s: %v", dir, err)
	}
	if err := json.Unmarshal(b, &ck); err != nil {
		return ck, errdefs.InvalidArgument("checkpoint %s: malformed: %v", p, err)
	}
	if ck.Version != CheckpointVersion {
		return ck, errdefs.InvalidArgument("checkpoint %s: version %d, this build reads %d", p, ck.Version, CheckpointVersion)
	}
	if ck.State == "" || filepath.Base(ck.State) != ck.State {
		return ck, errdefs.InvalidArgument("checkpoint %s: bad state file name %q", p, ck.State)
	}
	if fi, err := os.Stat(filepath.Join(dir, ck.State)); err != nil || !fi.Mode().IsRegular() {
		return ck, errdefs.InvalidArgument("checkpoint %s: state file %s missing", dir, ck.State)
	}
	return ck, nil
}

// WriteFileAtomic writes b to path through a temporary file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory.
func WriteFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so renames in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// DialRetry calls dial until it succeeds, ctx ends, or dial returns an error
// marked permanent by stop (nil stop: retry every error). The delay between
// attempts grows from 5 ms to 200 ms. On ctx's end the last dial error is
// wrapped with ctx's.
func DialRetry(ctx context.Context, dial func(context.Context) (net.Conn, error), stop func(error) bool) (net.Conn, error) {
	delay := 5 * time.Millisecond
	for {
		c, err := dial(ctx)
		if err == nil {
			return c, nil
		}
		if stop != nil && stop(err) {
			return nil, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dial agent: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// ErrExited is returned by Machine methods once the VM has ended; it is an
// errdefs.ErrInvalidState.
var ErrExited = errdefs.InvalidState("vm has exited")
