// Package ext4 is the snapshot-ext4 backend: Berth's block snapshotter for
// VMs. Its mounts are ext4 disk images a hypervisor attaches as virtio-blk
// (never a shared directory: qemu refuses to migrate with a 9p share
// mounted, which would rule out checkpoints).
//
// # Model
//
// A committed snapshot (an image layer, named by its chain ID) keeps the
// whole unpacked tree of its chain in fs/: Apply bases a new tree on the
// parent's (linkTree: fresh directories, every other entry hardlinked —
// safe because nothing changes a tree's files in place) and unpacks the
// layer into it with sdk/archive's hardened applier (whiteouts delete: the
// tree is the whole filesystem). Full trees rather than per-layer diffs
// because mke2fs -d needs one directory, and merging diffs without
// mounting (no root on darwin) would mean reimplementing overlayfs; with
// hardlinks a layer costs a directory walk of its chain, not a copy.
//
// Each committed snapshot has ONE ext4 image of its chain, image.raw,
// built from fs/ with `mkfs.ext4 -d` (e2fsprogs: no root, no mount) the
// first time a child or view needs it, and cached; once a layer is
// committed on it and no disk or view uses it, it is dropped (an
// intermediate layer's image would hold its whole chain for nothing).
// Images are sparse and made at the configured size (default 2 GiB) or more when the content
// needs it, so the guest sees free space without resize2fs (which the
// guest does not have) and the free space costs nothing on the host.
//
// An active snapshot owns a disk (current/disk): a copy-on-write image of
// its parent's image — a reflink (FICLONE, clonefile) where the state dir
// can (format raw), else a qcow2 overlay whose read-only backing file is
// the parent's raw image (format qcow2, version 3, written in Go). Without
// a parent the disk is a fresh empty ext4 (raw). A container's writes land in its
// disk, which this plugin counts in Usage and deletes in Remove.
//
// An active snapshot labelled LabelUnpack ("berth.dev/unpack", which
// core/unpack sets on its extraction snapshots) gets its disk lazily, at
// the first Mounts call: unpacking then costs a tree of hardlinks per
// layer and the chain's one image is built when a container is prepared
// on it (without the label, every Apply also runs mkfs of its chain). Its
// Prepare returns the descriptor the disk will have; use Mounts before
// handing it to anyone.
//
// The same active snapshot can be used both ways: unpacked into (Apply)
// and used as a disk (a container, or the conformance suite writing
// through a mount). The disk's mtime tells them apart: every disk this
// plugin writes is stamped with a fixed old mtime, and any write to it (a
// VM, a loop mount) changes it. Apply and Commit start from the disk's
// content when it was written — read back into a tree by loop-mounting a
// temporary raw copy read-only as a detached mount (fsmount; Linux, root;
// elsewhere ErrNotImplemented) — and from the tree or the parent's
// otherwise. Apply rebuilds the disk from the new tree (mkfs), so its
// mount descriptor stays valid; Commit turns the tree (and, where it has
// one for free, the disk) into the committed snapshot's fs/ and image.
// Neither is for a disk a running VM has open: stop or pause the container
// first (Apply replaces the disk; Commit would read a changing image).
//
// # Layout and crash safety
//
//	metadata.db                    sdk/snapshot/storage (bbolt)
//	snapshots/<id>/current -> gN   the snapshot's generation: replaced by an
//	                               atomic symlink rename, the commit point
//	snapshots/<id>/gN/fs/          tree (committed; active after Apply)
//	snapshots/<id>/gN/image.raw    committed: the chain image (lazy);
//	                               active qcow2 after Apply: the backing
//	snapshots/<id>/gN/disk         active: the disk (raw or qcow2)
//	snapshots/<id>/gN/state.json   active: format, what the disk holds, its stamp
//	snapshots/new-*, rm-*          in-flight creations and removals
//
// Apply and Commit build a new generation beside the current one and
// switch the symlink last; Configure deletes every generation that is not
// current, temporary files, and directories no record owns, so a killed
// Apply or Commit leaves nothing half-visible. Readback mounts are detached
// (fsmount): they vanish with their file descriptor, so with the process.
//
// # Mounts
//
// Active: [{Type: "ext4", Source: snapshots/<id>/current/disk, Options:
// ["rw", "format=raw"|"format=qcow2"]}]; the Source path stays valid across
// Apply. View: the parent's image, ["ro", "format=raw"]. A qcow2 names its
// backing image by absolute path; a committed snapshot cannot be removed
// while children or views use it (ErrInvalidState) and its image is only
// dropped when none does, so backing files never vanish under a disk.
//
// # darwin
//
// e2fsprogs is a documented Homebrew dependency (`brew install e2fsprogs`,
// found in /opt/homebrew/opt/e2fsprogs/sbin), as containerd's nerdbox does
// on macOS. No pure-Go ext4 writer is good enough today: go-diskfs's ext4
// write support is young (multi-GiB creation failed until mid-2026, resize
// inodes only with 1 KiB blocks, ~50× slower than mke2fs in its own
// benchmark), hcsshim's tar2ext4 makes read-only journal-less LCOW layers,
// dsoprea/go-ext4 only reads. Disks on darwin are clonefile(2) clones
// (raw: Virtualization.framework reads raw images only), so the state dir
// must be on APFS; reading back a written disk (docker commit of a VM
// container) is not available there.
package ext4

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/archive"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/storage"
)

// Version is the plugin's version, reported in Info.
const Version = "0.1.0"

// MetadataTimeout bounds the wait for the metadata file's lock.
const MetadataTimeout = 10 * time.Second

// What an active snapshot's disk holds when its stamp is unchanged.
const (
	baseEmpty  = "empty"  // an empty filesystem
	baseParent = "parent" // the parent's image, unchanged
	baseTree   = "tree"   // the generation's fs/
)

// testHook is called at the points crash tests kill the process at.
var testHook = func(point string) {}

// stampTime is the mtime of every disk this plugin writes: any later write
// sets the current time, which is never this.
var stampTime = time.Unix(1_000_000_000, 0)

// LabelUnpack marks an active snapshot made to unpack a layer into (core/unpack
// sets it, value the chain ID). Such a snapshot gets its disk lazily: its
// Prepare returns the descriptor the disk will have, and the disk is made
// (with its parent's image) by the first Mounts call; until then Apply and
// Commit work on trees alone, so unpacking an N-layer image runs mkfs
// once, for the image a container asks for, instead of once per layer.
const LabelUnpack = "berth.dev/unpack"

// diskState is state.json of an active snapshot's generation.
type diskState struct {
	Format     string `json:"format"`
	Base       string `json:"base"`
	Stamp      stamp  `json:"stamp"`
	BaseInodes int64  `json:"base_inodes"`
	// Lazy: no disk yet (an unpack snapshot nobody asked Mounts of).
	Lazy bool `json:"lazy,omitempty"`
}

// Snapshotter implements snapshot.Snapshotter with ext4 images.
type Snapshotter struct {
	log hclog.Logger

	mu    sync.RWMutex
	root  string
	ms    *storage.MetaStore
	set   Settings
	tools tools
	cow   string // FormatRaw (reflink) or FormatQcow2: disks of snapshots with a parent

	keys   keyedMutex // per key: Apply, Commit, Remove
	images keyedMutex // per snapshot ID: image builds
}

var _ snapshot.Snapshotter = (*Snapshotter)(nil)

// New returns an unconfigured Snapshotter.
func New(log hclog.Logger) *Snapshotter {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Snapshotter{log: log}
}

// Info implements plugin.Base.
func (s *Snapshotter) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerSnapshot, "ext4", Version,
		snapshot.CapMountBlock, snapshot.CapApplyGzip, snapshot.CapApplyZstd, snapshot.CapCleanup), nil
}

// ConfigSchema implements plugin.Base (see configSchema).
func (s *Snapshotter) ConfigSchema(context.Context) (*schema.Spec, error) { return configSchema, nil }

// Configure implements plugin.Base: it finds mkfs.ext4 (and qemu-img when
// disks are qcow2), probes whether the state dir can reflink, opens the
// metadata and removes what a crash left. Calling it again with the same
// state dir keeps everything.
func (s *Snapshotter) Configure(ctx context.Context, req plugin.ConfigureRequest) error {
	if req.StateDir == "" {
		return errdefs.InvalidArgument("snapshot-ext4: no state dir: the snapshots live there")
	}
	set, err := decodeSettings(req.Config)
	if err != nil {
		return err
	}
	mkfs, err := findTool(set.MkfsExt4, "mkfs.ext4", mkfsDirs...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ms != nil && s.root == req.StateDir {
		return nil
	}
	snaps := filepath.Join(req.StateDir, "snapshots")
	if err := os.MkdirAll(snaps, 0o700); err != nil {
		return fmt.Errorf("snapshot-ext4: %w", err)
	}
	t := tools{mkfsPath: mkfs}
	canReflink := probeReflink(snaps)
	cow := FormatRaw
	switch {
	case set.CopyOnWrite == CowReflink && !canReflink:
		return errdefs.NotImplemented("snapshot-ext4: copy_on_write = \"reflink\" but %s cannot reflink (it needs xfs with reflink=1, btrfs or APFS)", snaps)
	case set.CopyOnWrite == CowQcow2 || (set.CopyOnWrite == CowAuto && !canReflink):
		cow = FormatQcow2
	}
	if cow == FormatQcow2 && runtime.GOOS == "darwin" {
		return errdefs.NotImplemented("snapshot-ext4: %s cannot clone files and Virtualization.framework reads raw images only: put the state dir on APFS", snaps)
	}
	// qemu-img converts written disks to raw to read them back (docker
	// commit); overlays are written in Go. A configured path must exist.
	if t.qemuImg, err = findTool(set.QemuImg, "qemu-img", qemuImgDirs...); err != nil {
		if set.QemuImg != "" {
			return err
		}
		s.log.Warn("qemu-img not found: disks a container wrote cannot be committed", "error", err)
		t.qemuImg = ""
	}
	ms, err := storage.Open(filepath.Join(req.StateDir, "metadata.db"), MetadataTimeout)
	if err != nil {
		return err
	}
	if s.ms != nil {
		_ = s.ms.Close()
	}
	s.root, s.ms, s.set, s.tools, s.cow = req.StateDir, ms, set, t, cow
	if err := s.recoverLocked(ctx); err != nil {
		s.log.Warn("recovery of leftovers failed", "error", err)
	}
	s.log.Info("configured", "state_dir", req.StateDir, "copy_on_write", cow, "size", set.sizeBytes, "mkfs", mkfs, "qemu_img", t.qemuImg)
	return nil
}

// CopyOnWrite returns the format of disks made on a parent: "raw" when
// they are reflinks, "qcow2" when they are overlays ("" before Configure).
func (s *Snapshotter) CopyOnWrite() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cow
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

// env is what an operation needs, read once under the lock.
type env struct {
	ms    *storage.MetaStore
	root  string
	set   Settings
	tools tools
	cow   string
}

func (s *Snapshotter) env() (env, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ms == nil {
		return env{}, errdefs.Unavailable("snapshot-ext4 is not configured yet")
	}
	return env{ms: s.ms, root: s.root, set: s.set, tools: s.tools, cow: s.cow}, nil
}

func (e env) dir(id string) string     { return filepath.Join(e.root, "snapshots", id) }
func (e env) current(id string) string { return filepath.Join(e.dir(id), "current") }

// get returns snapshot key.
func (e env) get(key string) (storage.Snapshot, error) {
	var st storage.Snapshot
	err := e.ms.View(func(tx *storage.Tx) error {
		var err error
		st, err = tx.Get(key)
		return err
	})
	return st, err
}

// Stat implements snapshot.Snapshotter.
func (s *Snapshotter) Stat(_ context.Context, key string) (snapshot.Info, error) {
	e, err := s.env()
	if err != nil {
		return snapshot.Info{}, err
	}
	var info snapshot.Info
	err = e.ms.View(func(tx *storage.Tx) error {
		_, info, _, err = tx.Info(key)
		return err
	})
	return info, err
}

// Update implements snapshot.Snapshotter.
func (s *Snapshotter) Update(_ context.Context, info snapshot.Info, fieldpaths ...string) (snapshot.Info, error) {
	e, err := s.env()
	if err != nil {
		return snapshot.Info{}, err
	}
	var out snapshot.Info
	err = e.ms.Update(func(tx *storage.Tx) error {
		out, err = tx.UpdateInfo(info, fieldpaths...)
		return err
	})
	return out, err
}

// Walk implements snapshot.Snapshotter; fn runs outside the transaction.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshot.WalkFunc, filters ...string) error {
	e, err := s.env()
	if err != nil {
		return err
	}
	fs, err := storage.ParseFilters(filters)
	if err != nil {
		return err
	}
	var infos []snapshot.Info
	if err := e.ms.View(func(tx *storage.Tx) error {
		return tx.Walk(func(_ string, info snapshot.Info) error { infos = append(infos, info); return nil }, fs)
	}); err != nil {
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

// Mounts implements snapshot.Snapshotter.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	e, err := s.env()
	if err != nil {
		return nil, err
	}
	st, err := e.get(key)
	if err != nil {
		return nil, err
	}
	if st.Kind == snapshot.KindActive {
		if err := s.materialize(ctx, e, key); err != nil {
			return nil, err
		}
	}
	return s.mounts(ctx, e, key, st)
}

// materialize makes the disk of a lazy active snapshot (see LabelUnpack).
func (s *Snapshotter) materialize(ctx context.Context, e env, key string) error {
	defer s.keys.lock(key)()
	st, err := e.get(key)
	if err != nil {
		return err
	}
	cur := e.current(st.ID)
	ds, err := readState(cur)
	if err != nil || !ds.Lazy {
		return err
	}
	gen, old, err := newGen(e.dir(st.ID))
	if err != nil {
		return err
	}
	err = func() error {
		from := ""
		switch ds.Base {
		case baseParent:
			if from, err = s.ensureImage(ctx, e, st.ParentIDs[0]); err != nil {
				return fmt.Errorf("the image of its parent: %w", err)
			}
		case baseTree:
			if err := os.Rename(filepath.Join(cur, "fs"), filepath.Join(gen, "fs")); err != nil {
				return err
			}
		}
		if _, err := s.makeDisk(ctx, e, gen, ds.Format, ds.Base, from); err != nil {
			if ds.Base == baseTree {
				_ = os.Rename(filepath.Join(gen, "fs"), filepath.Join(cur, "fs"))
			}
			return err
		}
		return switchGen(gen)
	}()
	if err != nil {
		_ = os.RemoveAll(gen)
		return fmt.Errorf("snapshot %q: make its disk: %w", key, err)
	}
	_ = os.RemoveAll(old)
	s.log.Debug("made the disk of an unpack snapshot", "key", key)
	return nil
}

func (s *Snapshotter) mounts(_ context.Context, e env, key string, st storage.Snapshot) ([]mount.Mount, error) {
	switch st.Kind {
	case snapshot.KindCommitted:
		return nil, errdefs.InvalidState("snapshot %q is committed: mount an active snapshot or a view of it", key)
	case snapshot.KindView:
		img := filepath.Join(e.current(st.ID), "image.raw") // a view of nothing
		if len(st.ParentIDs) > 0 {
			real, err := filepath.EvalSymlinks(e.current(st.ParentIDs[0]))
			if err != nil {
				return nil, fmt.Errorf("view %q: its parent's image: %w", key, err)
			}
			img = filepath.Join(real, "image.raw")
		}
		return []mount.Mount{{Type: "ext4", Source: img, Options: []string{"ro", "format=" + FormatRaw}}}, nil
	}
	ds, err := readState(e.current(st.ID))
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	return []mount.Mount{{Type: "ext4", Source: filepath.Join(e.current(st.ID), "disk"), Options: []string{"rw", "format=" + ds.Format}}}, nil
}

// Prepare implements snapshot.Snapshotter: it builds the parent's image if
// it has none yet and makes the new snapshot's copy-on-write disk.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshot.KindActive, key, parent, opts)
}

// View implements snapshot.Snapshotter: a view mounts its parent's image
// read-only (built if needed); a view of nothing is an empty filesystem.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshot.KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshot.Kind, key, parent string, opts []snapshot.Opt) ([]mount.Mount, error) {
	e, err := s.env()
	if err != nil {
		return nil, err
	}
	parentImage := ""
	parentID := ""
	lazy := false
	if kind == snapshot.KindActive {
		info, err := snapshot.ApplyOptions(opts)
		if err != nil {
			return nil, err
		}
		_, lazy = info.Labels[LabelUnpack]
	}
	if parent != "" && !lazy {
		// Build the parent's image outside the metadata transaction: it
		// can take seconds and other operations must go on meanwhile.
		var info snapshot.Info
		err := e.ms.View(func(tx *storage.Tx) error {
			var err error
			parentID, info, _, err = tx.Info(parent)
			return err
		})
		if errdefs.IsNotFound(err) {
			return nil, errdefs.NotFound("parent snapshot %q of %q not found", parent, key)
		} else if err != nil {
			return nil, err
		}
		if info.Kind == snapshot.KindCommitted {
			if parentImage, err = s.ensureImage(ctx, e, parentID); err != nil {
				return nil, fmt.Errorf("snapshot %q: the image of its parent %q: %w", key, parent, err)
			}
		}
	}
	var mounts []mount.Mount
	err = e.ms.Update(func(tx *storage.Tx) error {
		st, err := tx.Create(key, parent, kind, opts)
		if err != nil {
			return err
		}
		if parent != "" && !lazy {
			if st.ParentIDs[0] != parentID {
				return errdefs.Unavailable("snapshot %q: parent %q was replaced while its image was built; retry", key, parent)
			}
			// Under the writer lock the image cannot be evicted (see
			// evictImage); this only rebuilds it if that happened since.
			if parentImage, err = s.ensureImage(ctx, e, parentID); err != nil {
				return fmt.Errorf("snapshot %q: the image of its parent %q: %w", key, parent, err)
			}
		}
		tmp, err := os.MkdirTemp(filepath.Join(e.root, "snapshots"), "new-")
		if err != nil {
			return err
		}
		err = func() error {
			if err := os.Chmod(tmp, 0o700); err != nil {
				return err
			}
			gen := filepath.Join(tmp, "g1")
			if err := os.Mkdir(gen, 0o700); err != nil {
				return err
			}
			switch {
			case lazy:
				ds := diskState{Format: FormatRaw, Base: baseEmpty, Lazy: true}
				if parent != "" {
					ds.Format, ds.Base = e.cow, baseParent
				}
				b, _ := json.Marshal(ds)
				if err := writeFileSync(filepath.Join(gen, "state.json"), b); err != nil {
					return err
				}
			case kind == snapshot.KindActive && parent == "":
				if _, err := s.makeDisk(ctx, e, gen, FormatRaw, baseEmpty, ""); err != nil {
					return err
				}
			case kind == snapshot.KindActive:
				if _, err := s.makeDisk(ctx, e, gen, e.cow, baseParent, parentImage); err != nil {
					return err
				}
			case parent == "": // a view of nothing
				if err := e.tools.mkfs(ctx, "", filepath.Join(gen, "image.raw"), e.set.sizeBytes); err != nil {
					return err
				}
			}
			if err := os.Symlink("g1", filepath.Join(tmp, "current")); err != nil {
				return err
			}
			return os.Rename(tmp, e.dir(st.ID))
		}()
		if err != nil {
			_ = os.RemoveAll(tmp)
			return fmt.Errorf("snapshot %q: %w", key, err)
		}
		mounts, err = s.mounts(ctx, e, key, st)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.Debug("created snapshot", "key", key, "parent", parent, "kind", kind)
	return mounts, nil
}

// ensureImage returns the path of committed snapshot id's chain image,
// building it from its tree the first time.
func (s *Snapshotter) ensureImage(ctx context.Context, e env, id string) (string, error) {
	defer s.images.lock(id)()
	gen, err := filepath.EvalSymlinks(e.current(id))
	if err != nil {
		return "", err
	}
	img := filepath.Join(gen, "image.raw")
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	start := time.Now()
	tree := filepath.Join(gen, "fs")
	size, err := imageSize(ctx, tree, e.set.sizeBytes)
	if err != nil {
		return "", err
	}
	tmp := img + ".tmp-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := e.tools.mkfs(ctx, tree, tmp, size); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, img); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	if err := syncDir(gen); err != nil {
		return "", err
	}
	s.log.Debug("built chain image", "id", id, "size", size, "took", since(start))
	return img, nil
}

// makeDisk creates gen/disk holding base — an empty filesystem, the
// parent's image (from), or gen/fs — in format, stamps it and writes
// gen/state.json.
func (s *Snapshotter) makeDisk(ctx context.Context, e env, gen, format, base, from string) (diskState, error) {
	disk := filepath.Join(gen, "disk")
	ds := diskState{Format: format, Base: base}
	switch base {
	case baseEmpty:
		if err := e.tools.mkfs(ctx, "", disk, e.set.sizeBytes); err != nil {
			return ds, err
		}
	case baseParent:
		if format == FormatRaw {
			if err := reflink(from, disk); err != nil {
				return ds, fmt.Errorf("reflink the parent's image: %w", err)
			}
		} else if err := e.tools.overlay(ctx, from, disk); err != nil {
			return ds, err
		}
	case baseTree:
		tree := filepath.Join(gen, "fs")
		size, err := imageSize(ctx, tree, e.set.sizeBytes)
		if err != nil {
			return ds, err
		}
		if format == FormatRaw {
			if err := e.tools.mkfs(ctx, tree, disk, size); err != nil {
				return ds, err
			}
		} else {
			img := filepath.Join(gen, "image.raw")
			if err := e.tools.mkfs(ctx, tree, img, size); err != nil {
				return ds, err
			}
			if err := e.tools.overlay(ctx, img, disk); err != nil {
				return ds, err
			}
		}
	}
	var err error
	if ds.BaseInodes, err = usedInodes(disk); err != nil {
		return ds, err
	}
	if err := os.Chtimes(disk, stampTime, stampTime); err != nil {
		return ds, err
	}
	if ds.Stamp, err = stampOf(disk); err != nil {
		return ds, err
	}
	b, _ := json.Marshal(ds)
	if err := writeFileSync(filepath.Join(gen, "state.json"), b); err != nil {
		return ds, err
	}
	return ds, syncDir(gen)
}

func readState(gen string) (diskState, error) {
	var ds diskState
	b, err := os.ReadFile(filepath.Join(gen, "state.json"))
	if err != nil {
		return ds, fmt.Errorf("disk state: %w", err)
	}
	if err := json.Unmarshal(b, &ds); err != nil {
		return ds, fmt.Errorf("disk state %s: %w", gen, err)
	}
	return ds, nil
}

// written reports whether the disk of gen changed since this plugin wrote
// it (a VM or a mount wrote to it).
func written(gen string, ds diskState) (bool, error) {
	if ds.Lazy {
		return false, nil
	}
	st, err := stampOf(filepath.Join(gen, "disk"))
	if err != nil {
		return false, err
	}
	return st != ds.Stamp, nil
}

// newGen makes the next generation directory of snapshot dir and returns
// it with the current one.
func newGen(dir string) (next, cur string, err error) {
	link, err := os.Readlink(filepath.Join(dir, "current"))
	if err != nil {
		return "", "", err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(link, "g"))
	if err != nil || !strings.HasPrefix(link, "g") {
		return "", "", fmt.Errorf("%s: current generation %q is not gN", dir, link)
	}
	next = filepath.Join(dir, "g"+strconv.Itoa(n+1))
	_ = os.RemoveAll(next) // a crashed operation's leftover
	if err := os.Mkdir(next, 0o700); err != nil {
		return "", "", err
	}
	return next, filepath.Join(dir, link), nil
}

// switchGen makes gen the current generation of its snapshot directory.
func switchGen(gen string) error {
	dir := filepath.Dir(gen)
	tmp := filepath.Join(dir, "current.tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "current")); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// baseTree fills gen/fs with what active snapshot st holds now: the disk
// read back when it was written, else its tree, its parent's tree or
// nothing. With keepRaw, a full raw image of that content is left at
// gen/image.raw when one was made on the way (readback).
func (s *Snapshotter) baseTree(ctx context.Context, e env, st storage.Snapshot, cur, gen string, ds diskState, wrote, keepRaw bool) error {
	dst := filepath.Join(gen, "fs")
	switch {
	case wrote:
		raw := filepath.Join(gen, "readback.raw")
		if err := s.rawCopy(ctx, e, filepath.Join(cur, "disk"), ds.Format, raw); err != nil {
			return fmt.Errorf("read the written disk back: %w", err)
		}
		start := time.Now()
		if err := readBack(ctx, raw, dst); err != nil {
			_ = os.Remove(raw)
			return fmt.Errorf("read the written disk back: %w", err)
		}
		s.log.Debug("read a written disk back", "id", st.ID, "took", since(start))
		if keepRaw {
			return os.Rename(raw, filepath.Join(gen, "image.raw"))
		}
		return os.Remove(raw)
	case ds.Base == baseTree:
		_, _, err := linkTree(filepath.Join(cur, "fs"), dst)
		return err
	case ds.Base == baseParent:
		_, _, err := linkTree(filepath.Join(e.current(st.ParentIDs[0]), "fs"), dst)
		return err
	default:
		return os.Mkdir(dst, 0o755)
	}
}

// rawCopy writes a raw copy of disk to out: a reflink of a raw disk where
// possible, else qemu-img's sparse conversion.
func (s *Snapshotter) rawCopy(ctx context.Context, e env, disk, format, out string) error {
	if format == FormatRaw {
		if err := reflink(disk, out); err == nil {
			return nil
		}
	}
	if e.tools.qemuImg == "" {
		return errdefs.NotImplemented("qemu-img is needed to copy the disk %s: %s", disk, installHint("qemu-img"))
	}
	if err := run(ctx, e.tools.qemuImg, "convert", "-f", format, "-O", "raw", disk, out); err != nil {
		_ = os.Remove(out)
		return err
	}
	return nil
}

// Apply implements snapshot.Snapshotter: the layer is unpacked into a new
// generation's tree (a clone of what the snapshot holds now) and the disk
// is rebuilt from it; the generation replaces the current one only when
// all of that succeeded.
func (s *Snapshotter) Apply(ctx context.Context, key string, layer snapshot.Layer, r io.Reader) (snapshot.ApplyResult, error) {
	e, err := s.env()
	if err != nil {
		return snapshot.ApplyResult{}, err
	}
	defer s.keys.lock(key)()
	st, err := e.get(key)
	if err != nil {
		return snapshot.ApplyResult{}, err
	}
	if st.Kind != snapshot.KindActive {
		return snapshot.ApplyResult{}, errdefs.InvalidState("snapshot %q is %s; layers apply only to active snapshots", key, st.Kind)
	}
	dir := e.dir(st.ID)
	gen, cur, err := newGen(dir)
	if err != nil {
		return snapshot.ApplyResult{}, err
	}
	res, err := func() (archive.Result, error) {
		ds, err := readState(cur)
		if err != nil {
			return archive.Result{}, err
		}
		wrote, err := written(cur, ds)
		if err != nil {
			return archive.Result{}, err
		}
		start := time.Now()
		if err := s.baseTree(ctx, e, st, cur, gen, ds, wrote, false); err != nil {
			return archive.Result{}, err
		}
		staged := time.Now()
		res, err := archive.Apply(ctx, filepath.Join(gen, "fs"), r, archive.Options{
			MediaType: layer.MediaType,
			DiffID:    layer.DiffID,
			Digest:    layer.Digest,
			Whiteouts: archive.WhiteoutDelete,
			Logger:    s.log.With("key", key, "layer", layer.Digest),
		})
		if err != nil {
			name := layer.Digest
			if name == "" {
				name = layer.DiffID
			}
			return res, fmt.Errorf("apply layer %s to %q: %w", name, key, err)
		}
		applied := time.Now()
		if ds.Lazy {
			ds.Base = baseTree
			b, _ := json.Marshal(ds)
			if err := writeFileSync(filepath.Join(gen, "state.json"), b); err != nil {
				return res, err
			}
		} else if _, err := s.makeDisk(ctx, e, gen, ds.Format, baseTree, ""); err != nil {
			return res, fmt.Errorf("apply to %q: rebuild its disk: %w", key, err)
		}
		s.log.Debug("applied layer", "key", key, "stage", staged.Sub(start), "apply", applied.Sub(staged), "mkfs", since(applied), "readback", wrote)
		testHook("apply-built")
		return res, switchGen(gen)
	}()
	if err != nil {
		_ = os.RemoveAll(gen)
		return snapshot.ApplyResult{}, err
	}
	if err := os.RemoveAll(cur); err != nil {
		s.log.Warn("could not remove the previous generation after apply", "dir", cur, "error", err)
	}
	return snapshot.ApplyResult{DiffID: res.DiffID, Size: res.Size}, nil
}

// Commit implements snapshot.Snapshotter: the snapshot's content becomes
// a committed tree (read back from its disk when the disk was written)
// and, when one is at hand, its image; the metadata changes and the new
// generation becomes current in one transaction.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshot.Opt) error {
	e, err := s.env()
	if err != nil {
		return err
	}
	defer s.keys.lock(key)()
	var st storage.Snapshot
	var parent string
	err = e.ms.View(func(tx *storage.Tx) error {
		if st, err = tx.Get(key); err != nil {
			return err
		}
		_, info, _, _ := tx.Info(key)
		parent = info.Parent
		if st.Kind != snapshot.KindActive {
			return errdefs.InvalidState("snapshot %q is %s; only active snapshots can be committed", key, st.Kind)
		}
		if _, _, _, err := tx.Info(name); err == nil {
			return errdefs.AlreadyExists("snapshot %q already exists", name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	dir := e.dir(st.ID)
	gen, cur, err := newGen(dir)
	if err != nil {
		return err
	}
	var undo []func()
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		_ = os.RemoveAll(gen)
		return err
	}
	ds, err := readState(cur)
	if err != nil {
		return fail(err)
	}
	wrote, err := written(cur, ds)
	if err != nil {
		return fail(err)
	}
	move := func(from, to string) error {
		if err := os.Rename(from, to); err != nil {
			return err
		}
		undo = append(undo, func() { _ = os.Rename(to, from) })
		return nil
	}
	link := func(from, to string) error {
		if ds.Lazy {
			return nil // no disk: the committed image is built when a child needs it
		}
		return os.Link(from, to)
	}
	switch {
	case wrote:
		err = s.baseTree(ctx, e, st, cur, gen, ds, true, true)
	case ds.Base == baseTree:
		// The tree and the unwritten disk made from it are the committed
		// snapshot as they are.
		err = move(filepath.Join(cur, "fs"), filepath.Join(gen, "fs"))
		if err == nil && ds.Format == FormatRaw {
			err = link(filepath.Join(cur, "disk"), filepath.Join(gen, "image.raw"))
		} else if err == nil {
			err = link(filepath.Join(cur, "image.raw"), filepath.Join(gen, "image.raw"))
		}
	case ds.Base == baseParent:
		err = s.baseTree(ctx, e, st, cur, gen, ds, false, false)
		if err == nil && ds.Format == FormatRaw {
			err = link(filepath.Join(cur, "disk"), filepath.Join(gen, "image.raw")) // an unwritten reflink of the parent's
		}
	default:
		err = os.Mkdir(filepath.Join(gen, "fs"), 0o755)
		if err == nil {
			err = link(filepath.Join(cur, "disk"), filepath.Join(gen, "image.raw")) // an unwritten empty filesystem
		}
	}
	if err == nil {
		err = syncDir(gen)
	}
	if err != nil {
		return fail(fmt.Errorf("commit %q: %w", key, err))
	}
	testHook("commit-built")
	err = e.ms.Update(func(tx *storage.Tx) error {
		if _, err := tx.Commit(name, key, snapshot.Usage{}, opts); err != nil {
			return err
		}
		if err := switchGen(gen); err != nil {
			return err
		}
		testHook("commit-switched")
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if err := os.RemoveAll(cur); err != nil {
		s.log.Warn("could not remove the active generation after commit", "dir", cur, "error", err)
	}
	s.log.Debug("committed snapshot", "key", key, "name", name, "readback", wrote)
	if parent != "" {
		if err := s.evictImage(e, parent, st.ParentIDs[0]); err != nil {
			s.log.Warn("could not drop an intermediate layer's image", "key", parent, "error", err)
		}
	}
	return nil
}

// evictImage deletes the image of committed snapshot parent (ID id) when
// a layer was committed on it and no active snapshot or view uses it (its
// children are all committed): an intermediate layer's image is only
// needed while disks on it exist, and each holds its whole chain, so
// keeping them all would cost the sum of the chain's sizes. A later child
// or view rebuilds it from the tree. It runs in a metadata write
// transaction, which Prepare and View also hold while they make a disk on
// the image: lock order is the metadata writer, then the image lock.
func (s *Snapshotter) evictImage(e env, parent, id string) error {
	filters, err := storage.ParseFilters([]string{"parent==" + parent})
	if err != nil {
		return err
	}
	return e.ms.Update(func(tx *storage.Tx) error {
		busy := false
		if err := tx.Walk(func(_ string, info snapshot.Info) error {
			busy = busy || info.Kind != snapshot.KindCommitted
			return nil
		}, filters); err != nil || busy {
			return err
		}
		defer s.images.lock(id)()
		img := filepath.Join(e.current(id), "image.raw")
		if err := os.Remove(img); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		s.log.Debug("dropped an intermediate layer's image", "key", parent)
		return nil
	})
}

// Remove implements snapshot.Snapshotter. A disk still open by a VM keeps
// its space until the VM closes it.
func (s *Snapshotter) Remove(_ context.Context, key string) error {
	e, err := s.env()
	if err != nil {
		return err
	}
	defer s.keys.lock(key)()
	var gone string
	err = e.ms.Update(func(tx *storage.Tx) error {
		id, _, err := tx.Remove(key)
		if err != nil {
			return err
		}
		gone = filepath.Join(e.root, "snapshots", "rm-"+id)
		if err := os.Rename(e.dir(id), gone); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove snapshot %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(gone); err != nil {
		s.log.Warn("snapshot removed but its directory was not; Cleanup will retry", "key", key, "dir", gone, "error", err)
	}
	return nil
}

// Usage implements snapshot.Snapshotter. Committed: its tree (the
// entries it does not share with its parent's) and image.
// Active: the bytes its disk owns (a qcow2 file's allocation; a reflinked
// raw disk's extents not shared with its parent), its tree and image when
// Apply made them, and the inodes in use in its filesystem beyond those
// its disk started with (from the ext4 superblock: as of the last
// superblock write, which a mounted filesystem does at commit and unmount).
// A view owns nothing.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshot.Usage, error) {
	e, err := s.env()
	if err != nil {
		return snapshot.Usage{}, err
	}
	st, err := e.get(key)
	if err != nil {
		return snapshot.Usage{}, err
	}
	cur := e.current(st.ID)
	var u snapshot.Usage
	if st.Kind == snapshot.KindView {
		return u, nil
	}
	parentTree := ""
	if len(st.ParentIDs) > 0 {
		parentTree = filepath.Join(e.current(st.ParentIDs[0]), "fs")
	}
	if u, err = treeUsage(ctx, filepath.Join(cur, "fs"), parentTree); err != nil {
		return u, err
	}
	img, err := ownBytes(filepath.Join(cur, "image.raw"))
	if err != nil {
		return u, err
	}
	u.Size += img
	if st.Kind == snapshot.KindCommitted {
		return u, nil
	}
	ds, err := readState(cur)
	if err != nil || ds.Lazy {
		return u, err
	}
	disk := filepath.Join(cur, "disk")
	own, err := ownBytes(disk)
	if err != nil {
		return u, err
	}
	u.Size += own
	used, err := usedInodes(disk)
	if err != nil {
		return u, err
	}
	u.Inodes += max(0, used-ds.BaseInodes)
	return u, nil
}

// Cleanup implements snapshot.Snapshotter: it deletes directories no
// snapshot owns (left by a crash during Prepare or Remove). Generations
// left by a crashed Apply or Commit are deleted at Configure.
func (s *Snapshotter) Cleanup(context.Context) error {
	e, err := s.env()
	if err != nil {
		return err
	}
	return s.cleanupDirs(e, false)
}

func (s *Snapshotter) cleanupDirs(e env, atStart bool) error {
	var ids map[string]string
	if err := e.ms.View(func(tx *storage.Tx) error {
		var err error
		ids, err = tx.IDs()
		return err
	}); err != nil {
		return err
	}
	dir := filepath.Join(e.root, "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range entries {
		if _, ok := ids[d.Name()]; ok {
			continue
		}
		if !atStart && (strings.HasPrefix(d.Name(), "new-") || strings.HasPrefix(d.Name(), "probe-")) {
			if st, err := os.Lstat(filepath.Join(dir, d.Name())); err == nil && time.Since(st.ModTime()) < time.Hour {
				continue // a Prepare in flight
			}
		}
		s.log.Debug("removing leftover snapshot directory", "dir", d.Name())
		errs = append(errs, os.RemoveAll(filepath.Join(dir, d.Name())))
	}
	return errors.Join(errs...)
}

// recoverLocked runs at Configure, when no operation is in flight: it
// removes leftovers of every kind and gives an active snapshot whose
// generation lost its disk (a crash inside Commit's transaction) a disk
// rebuilt from its tree.
func (s *Snapshotter) recoverLocked(ctx context.Context) error {
	e := env{ms: s.ms, root: s.root, set: s.set, tools: s.tools, cow: s.cow}
	errs := []error{s.cleanupDirs(e, true)}
	var keys map[string]string
	if err := e.ms.View(func(tx *storage.Tx) error {
		var err error
		keys, err = tx.IDs()
		return err
	}); err != nil {
		return err
	}
	for id, key := range keys {
		dir := e.dir(id)
		link, err := os.Readlink(filepath.Join(dir, "current"))
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot %q: %w", key, err))
			continue
		}
		entries, _ := os.ReadDir(dir)
		for _, d := range entries {
			if d.Name() != "current" && d.Name() != link {
				s.log.Debug("removing leftover generation", "key", key, "entry", d.Name())
				errs = append(errs, os.RemoveAll(filepath.Join(dir, d.Name())))
			}
		}
		gen := filepath.Join(dir, link)
		files, _ := os.ReadDir(gen)
		for _, f := range files {
			if strings.Contains(f.Name(), ".tmp-") || strings.HasPrefix(f.Name(), "readback") {
				errs = append(errs, os.RemoveAll(filepath.Join(gen, f.Name())))
			}
		}
		st, err := e.get(key)
		if err != nil || st.Kind != snapshot.KindActive {
			continue
		}
		_, noDisk := os.Stat(filepath.Join(gen, "disk"))
		_, noState := os.Stat(filepath.Join(gen, "state.json"))
		if errors.Is(noDisk, fs.ErrNotExist) && errors.Is(noState, fs.ErrNotExist) {
			format := FormatRaw
			if len(st.ParentIDs) > 0 {
				format = e.cow
			}
			s.log.Warn("active snapshot without a disk (a crash inside Commit): rebuilding it from its tree", "key", key)
			_ = os.Remove(filepath.Join(gen, "image.raw"))
			if _, err := s.makeDisk(ctx, e, gen, format, baseTree, ""); err != nil {
				errs = append(errs, fmt.Errorf("snapshot %q: rebuild its disk: %w", key, err))
			}
		}
	}
	return errors.Join(errs...)
}

func writeFileSync(p string, b []byte) error {
	tmp := p + ".tmp-w"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// keyedMutex serialises work per name.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(name string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e, ok := k.m[name]
	if !ok {
		e = &keyedEntry{}
		k.m[name] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, name)
		}
		k.mu.Unlock()
	}
}
