// Package dirsnap is a snapshot.Snapshotter engine for backends that keep
// one directory per snapshot, as both of Berth's sandbox snapshotters do:
// snapshot-overlay (each snapshot is an overlayfs upper directory over its
// ancestors) and snapshot-apfs (each snapshot is a full copy-on-write clone
// of its parent). The engine owns the metadata (sdk/snapshot/storage), the
// directory lifecycle, Apply through the hardened applier (sdk/archive) and
// Usage; a Backend says how a new snapshot's directory is filled, which
// mounts present it and how whiteouts are written.
//
// Layout under the state directory:
//
//	metadata.db              bbolt, opened with a timeout
//	snapshots/<id>/fs        the snapshot's content (upper dir, or full tree)
//	snapshots/<id>/work      overlayfs work dir (backends that need one)
//	snapshots/new-*, rm-*    in-flight creations and removals; Cleanup
//	                         (and Configure) delete what a crash left
//
// Every change to metadata and directories happens in one bbolt
// transaction: the directory is made under a temporary name and renamed into
// place last, and a failure rolls back the record. Apply stages the layer in
// a clone of the snapshot's fs and exchanges it in on success, so on error
// nothing of the layer is visible.
package dirsnap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/clonetree"
	"github.com/berth-dev/berth/sdk/archive"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/storage"
)

// MetadataTimeout bounds the wait for the metadata file's lock (another
// process holding it means two plugins share a state dir).
const MetadataTimeout = 10 * time.Second

// Snap is what a Backend is told about a snapshot.
type Snap struct {
	Kind snapshot.Kind
	// Dir is snapshots/<id>; FS and Work are Dir/fs and Dir/work.
	Dir, FS, Work string
	// ParentFS are the fs directories of the ancestors, nearest first.
	ParentFS []string
}

// Backend is what differs between directory snapshotters.
type Backend interface {
	// Info describes the plugin (name, version, capabilities).
	Info() plugin.Info
	// Populate fills a new snapshot's directories (s.FS exists and is
	// empty; s.Dir may take more): nothing for an overlay upper, a clone
	// of s.ParentFS[0] for a cloning backend. Views are populated too.
	Populate(ctx context.Context, s Snap) error
	// Mounts returns the mounts presenting s (active: read-write; view:
	// read-only).
	Mounts(s Snap) []mount.Mount
	// Whiteouts says how Apply writes deletions into s.FS.
	Whiteouts() archive.WhiteoutMode
	// Check is called by Configure with the state dir; it reports why the
	// backend cannot serve on this host (errdefs.ErrNotImplemented).
	Check(stateDir string) error
}

// Snapshotter implements snapshot.Snapshotter over a Backend.
type Snapshotter struct {
	backend Backend
	log     hclog.Logger

	mu   sync.RWMutex
	root string
	ms   *storage.MetaStore

	keysMu sync.Mutex
	keys   map[string]*sync.Mutex
}

var _ snapshot.Snapshotter = (*Snapshotter)(nil)

// New returns an unconfigured Snapshotter; Configure gives it its state
// dir.
func New(b Backend, log hclog.Logger) *Snapshotter {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Snapshotter{backend: b, log: log, keys: map[string]*sync.Mutex{}}
}

// Info implements plugin.Base.
func (s *Snapshotter) Info(context.Context) (plugin.Info, error) { return s.backend.Info(), nil }

// ConfigSchema implements plugin.Base: directory snapshotters take no
// settings; they keep everything in the state dir the core gives them.
func (s *Snapshotter) ConfigSchema(context.Context) (*schema.Spec, error) { return schema.Empty(), nil }

// Configure implements plugin.Base. Calling it again with the same state
// dir keeps everything; with another, it switches to that one.
func (s *Snapshotter) Configure(ctx context.Context, req plugin.ConfigureRequest) error {
	name := s.backend.Info().Name
	if req.StateDir == "" {
		return errdefs.InvalidArgument("snapshot-%s: no state dir: the snapshots live there", name)
	}
	if err := s.backend.Check(req.StateDir); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ms != nil && s.root == req.StateDir {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(req.StateDir, "snapshots"), 0o700); err != nil {
		return fmt.Errorf("snapshot-%s: %w", name, err)
	}
	ms, err := storage.Open(filepath.Join(req.StateDir, "metadata.db"), MetadataTimeout)
	if err != nil {
		return err
	}
	if s.ms != nil {
		_ = s.ms.Close()
	}
	s.root, s.ms = req.StateDir, ms
	if err := s.cleanupLocked(ctx); err != nil {
		s.log.Warn("cleanup of leftovers failed", "error", err)
	}
	s.log.Info("configured", "state_dir", req.StateDir)
	return nil
}

// Close closes the metadata file.
func (s *Snapshotter) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ms == nil {
		return nil
	}
	err := s.ms.Close()
	s.ms = nil
	return err
}

// store returns the metadata and root, or an error before Configure.
func (s *Snapshotter) store() (*storage.MetaStore, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ms == nil {
		return nil, "", errdefs.Unavailable("snapshot-%s is not configured yet", s.backend.Info().Name)
	}
	return s.ms, s.root, nil
}

func (s *Snapshotter) lockKey(key string) func() {
	s.keysMu.Lock()
	m, ok := s.keys[key]
	if !ok {
		m = &sync.Mutex{}
		s.keys[key] = m
	}
	s.keysMu.Unlock()
	m.Lock()
	return m.Unlock
}

func snapOf(root string, st storage.Snapshot) Snap {
	dir := filepath.Join(root, "snapshots", st.ID)
	sn := Snap{Kind: st.Kind, Dir: dir, FS: filepath.Join(dir, "fs"), Work: filepath.Join(dir, "work")}
	for _, id := range st.ParentIDs {
		sn.ParentFS = append(sn.ParentFS, filepath.Join(root, "snapshots", id, "fs"))
	}
	return sn
}

// Stat implements snapshot.Snapshotter.
func (s *Snapshotter) Stat(_ context.Context, key string) (snapshot.Info, error) {
	ms, _, err := s.store()
	if err != nil {
		return snapshot.Info{}, err
	}
	var info snapshot.Info
	err = ms.View(func(tx *storage.Tx) error {
		_, info, _, err = tx.Info(key)
		return err
	})
	return info, err
}

// Update implements snapshot.Snapshotter.
func (s *Snapshotter) Update(_ context.Context, info snapshot.Info, fieldpaths ...string) (snapshot.Info, error) {
	ms, _, err := s.store()
	if err != nil {
		return snapshot.Info{}, err
	}
	var out snapshot.Info
	err = ms.Update(func(tx *storage.Tx) error {
		out, err = tx.UpdateInfo(info, fieldpaths...)
		return err
	})
	return out, err
}

// Usage implements snapshot.Snapshotter: what key's own directory holds
// (hardlinked files counted once), measured now.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshot.Usage, error) {
	ms, root, err := s.store()
	if err != nil {
		return snapshot.Usage{}, err
	}
	var st storage.Snapshot
	err = ms.View(func(tx *storage.Tx) error {
		st, err = tx.Get(key)
		return err
	})
	if err != nil {
		return snapshot.Usage{}, err
	}
	if st.Kind == snapshot.KindView {
		return snapshot.Usage{}, nil // a view owns nothing: it shows its parent
	}
	return DiskUsage(ctx, snapOf(root, st).FS)
}

// Mounts implements snapshot.Snapshotter.
func (s *Snapshotter) Mounts(_ context.Context, key string) ([]mount.Mount, error) {
	ms, root, err := s.store()
	if err != nil {
		return nil, err
	}
	var st storage.Snapshot
	err = ms.View(func(tx *storage.Tx) error {
		st, err = tx.Get(key)
		return err
	})
	if err != nil {
		return nil, err
	}
	if st.Kind == snapshot.KindCommitted {
		return nil, errdefs.InvalidState("snapshot %q is committed: mount an active snapshot or a view of it", key)
	}
	return s.backend.Mounts(snapOf(root, st)), nil
}

// Prepare implements snapshot.Snapshotter.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshot.KindActive, key, parent, opts)
}

// View implements snapshot.Snapshotter.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshot.KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshot.Kind, key, parent string, opts []snapshot.Opt) ([]mount.Mount, error) {
	ms, root, err := s.store()
	if err != nil {
		return nil, err
	}
	var mounts []mount.Mount
	err = ms.Update(func(tx *storage.Tx) error {
		st, err := tx.Create(key, parent, kind, opts)
		if err != nil {
			return err
		}
		sn := snapOf(root, st)
		tmp, err := os.MkdirTemp(filepath.Join(root, "snapshots"), "new-")
		if err != nil {
			return err
		}
		final := sn
		sn.Dir, sn.FS, sn.Work = tmp, filepath.Join(tmp, "fs"), filepath.Join(tmp, "work")
		err = func() error {
			if err := os.Chmod(tmp, 0o700); err != nil {
				return err
			}
			if err := os.Mkdir(sn.FS, 0o755); err != nil {
				return err
			}
			if err := s.backend.Populate(ctx, sn); err != nil {
				return fmt.Errorf("snapshot %q: %w", key, err)
			}
			return os.Rename(tmp, final.Dir)
		}()
		if err != nil {
			_ = os.RemoveAll(tmp)
			return err
		}
		mounts = s.backend.Mounts(final)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Debug("created snapshot", "key", key, "parent", parent, "kind", kind)
	return mounts, nil
}

// Commit implements snapshot.Snapshotter.
func (s *Snapshotter) Commit(_ context.Context, name, key string, opts ...snapshot.Opt) error {
	ms, _, err := s.store()
	if err != nil {
		return err
	}
	defer s.lockKey(key)()
	var st storage.Snapshot
	if err := ms.View(func(tx *storage.Tx) error { st, err = tx.Get(key); return err }); err != nil {
		return err
	}
	if st.Kind != snapshot.KindActive {
		return errdefs.InvalidState("snapshot %q is %s; only active snapshots can be committed", key, st.Kind)
	}
	// Usage is measured when asked (it walks the tree), not here: commits
	// are on the unpack path.
	err = ms.Update(func(tx *storage.Tx) error {
		_, err := tx.Commit(name, key, snapshot.Usage{}, opts)
		return err
	})
	if err == nil {
		s.log.Debug("committed snapshot", "key", key, "name", name)
	}
	return err
}

// Remove implements snapshot.Snapshotter.
func (s *Snapshotter) Remove(_ context.Context, key string) error {
	ms, root, err := s.store()
	if err != nil {
		return err
	}
	defer s.lockKey(key)()
	var gone string
	err = ms.Update(func(tx *storage.Tx) error {
		id, _, err := tx.Remove(key)
		if err != nil {
			return err
		}
		dir := filepath.Join(root, "snapshots", id)
		gone = filepath.Join(root, "snapshots", "rm-"+id)
		if err := os.Rename(dir, gone); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove snapshot %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(gone); err != nil {
		// The record is gone; Cleanup retries the directory.
		s.log.Warn("snapshot removed but its directory was not; Cleanup will retry", "key", key, "dir", gone, "error", err)
	}
	return nil
}

// Walk implements snapshot.Snapshotter. fn runs outside the metadata
// transaction, so it may call the snapshotter.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshot.WalkFunc, filters ...string) error {
	ms, _, err := s.store()
	if err != nil {
		return err
	}
	fs, err := storage.ParseFilters(filters)
	if err != nil {
		return err
	}
	var infos []snapshot.Info
	err = ms.View(func(tx *storage.Tx) error {
		return tx.Walk(func(_ string, info snapshot.Info) error { infos = append(infos, info); return nil }, fs)
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Apply implements snapshot.Snapshotter: the layer is applied to a clone of
// key's fs (cheap: usually empty, or reflinked) which replaces it only
// when the whole layer applied and its diff ID matched.
func (s *Snapshotter) Apply(ctx context.Context, key string, layer snapshot.Layer, r io.Reader) (snapshot.ApplyResult, error) {
	ms, root, err := s.store()
	if err != nil {
		return snapshot.ApplyResult{}, err
	}
	defer s.lockKey(key)()
	var st storage.Snapshot
	if err := ms.View(func(tx *storage.Tx) error { st, err = tx.Get(key); return err }); err != nil {
		return snapshot.ApplyResult{}, err
	}
	if st.Kind != snapshot.KindActive {
		return snapshot.ApplyResult{}, errdefs.InvalidState("snapshot %q is %s; layers apply only to active snapshots", key, st.Kind)
	}
	sn := snapOf(root, st)
	stage := filepath.Join(sn.Dir, "apply")
	_ = os.RemoveAll(stage) // a crashed Apply's leftover
	if empty, err := isEmptyDir(sn.FS); err != nil {
		return snapshot.ApplyResult{}, err
	} else if empty {
		if err := os.Mkdir(stage, 0o755); err != nil {
			return snapshot.ApplyResult{}, err
		}
		if err := copyDirMeta(sn.FS, stage); err != nil {
			_ = os.RemoveAll(stage)
			return snapshot.ApplyResult{}, err
		}
	} else if _, err := clonetree.Tree(sn.FS, stage, clonetree.Options{}); err != nil {
		return snapshot.ApplyResult{}, fmt.Errorf("apply to %q: stage a copy of it: %w", key, err)
	}
	opts := archive.Options{
		MediaType: layer.MediaType,
		DiffID:    layer.DiffID,
		Digest:    layer.Digest,
		Whiteouts: s.backend.Whiteouts(),
		Logger:    s.log.With("key", key, "layer", layer.Digest),
	}
	if opts.Whiteouts == archive.WhiteoutOverlay {
		opts.Parents = sn.ParentFS
		if len(sn.ParentFS) == 0 {
			// Nothing below to hide: a base layer's whiteouts delete, so
			// its directory (bound as is) shows no overlay markers.
			opts.Whiteouts = archive.WhiteoutDelete
		}
	}
	res, err := archive.Apply(ctx, stage, r, opts)
	if err != nil {
		_ = os.RemoveAll(stage)
		name := layer.Digest
		if name == "" {
			name = layer.DiffID
		}
		return snapshot.ApplyResult{}, fmt.Errorf("apply layer %s to %q: %w", name, key, err)
	}
	if err := exchange(stage, sn.FS); err != nil {
		_ = os.RemoveAll(stage)
		return snapshot.ApplyResult{}, fmt.Errorf("apply to %q: swap the applied tree in: %w", key, err)
	}
	if err := os.RemoveAll(stage); err != nil {
		s.log.Warn("could not remove the previous tree after apply", "dir", stage, "error", err)
	}
	return snapshot.ApplyResult{DiffID: res.DiffID, Size: res.Size}, nil
}

// Cleanup implements snapshot.Snapshotter: it deletes directories that no
// snapshot owns (left by a crash during Prepare, Remove or Apply).
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ms == nil {
		return errdefs.Unavailable("snapshot-%s is not configured yet", s.backend.Info().Name)
	}
	return s.cleanupLocked(ctx)
}

func (s *Snapshotter) cleanupLocked(context.Context) error {
	var ids map[string]string
	if err := s.ms.View(func(tx *storage.Tx) error {
		var err error
		ids, err = tx.IDs()
		return err
	}); err != nil {
		return err
	}
	dir := filepath.Join(s.root, "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if _, ok := ids[e.Name()]; ok {
			continue
		}
		if strings.HasPrefix(e.Name(), "new-") && !s.stale(filepath.Join(dir, e.Name())) {
			continue // a Prepare in flight
		}
		s.log.Debug("removing leftover snapshot directory", "dir", e.Name())
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// stale reports whether an in-flight directory is old enough to be a
// leftover rather than a Prepare running now.
func (s *Snapshotter) stale(p string) bool {
	st, err := os.Lstat(p)
	return err != nil || time.Since(st.ModTime()) > time.Hour
}

func isEmptyDir(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}
