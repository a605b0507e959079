// Package snapshot is layer 3 of Berth: image snapshots, with containerd's
// snapshotter semantics.
//
// Snapshots form a tree of changesets. Prepare(key, parent) makes an active
// (read-write) snapshot on top of a committed parent and returns the mounts
// that present it; View does the same read-only, and a view can never be
// committed. Commit(name, key) turns active snapshot key into committed
// snapshot name; only committed snapshots may be parents. Active and
// committed snapshots share one key space. Remove refuses a snapshot that has
// children (errdefs.ErrInvalidState).
//
// Unpacking an image, layer by layer:
//
//	mounts, _ := sn.Prepare(ctx, "extract-1", "")          // empty parent: base layer
//	_, _ = sn.Apply(ctx, "extract-1", desc1, blob1)         // unpack into it
//	_ = sn.Commit(ctx, diffIDChain1, "extract-1")           // name it by chain ID
//	_, _ = sn.Prepare(ctx, "extract-2", diffIDChain1)       // next layer on top
//	_, _ = sn.Apply(ctx, "extract-2", desc2, blob2)
//	_ = sn.Commit(ctx, diffIDChain2, "extract-2")
//
// Running a container: mounts, _ := sn.Prepare(ctx, containerID, topChainID),
// hand mounts to the isolation layer; Remove(containerID) when it is deleted.
//
// Results are mount descriptors (sdk/mount), never mounted paths: overlay or
// bind for sandboxes, a block image for VMs. Apply is part of the contract so
// each backend unpacks into its own storage (directories, ext4 images).
package snapshot

import (
	"context"
	"io"
	"time"

	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
)

// Capabilities a snapshot plugin may declare. The mount kinds tell the core
// which isolation modes the snapshotter can serve.
const (
	CapMountOverlay = "mount.overlay"
	CapMountBind    = "mount.bind"
	CapMountBlock   = "mount.block"
	CapMountShare   = "mount.share" // virtiofs / 9p directory share
	CapApplyGzip    = "apply.gzip"
	CapApplyZstd    = "apply.zstd"
	CapRebase       = "rebase"
	CapCleanup      = "cleanup"
)

// Kind is the kind of a snapshot.
type Kind string

// Snapshot kinds.
const (
	KindView      Kind = "view"
	KindActive    Kind = "active"
	KindCommitted Kind = "committed"
)

// Info describes a snapshot.
type Info struct {
	Kind    Kind
	Name    string
	Parent  string
	Labels  map[string]string
	Created time.Time
	Updated time.Time
}

// Usage is the disk use of one snapshot alone, not its parents.
type Usage struct {
	Size   int64
	Inodes int64
}

// Opt sets optional fields of a snapshot's Info at Prepare, View or Commit.
type Opt func(*Info) error

// WithLabels sets labels on the snapshot.
func WithLabels(labels map[string]string) Opt {
	return func(i *Info) error {
		if i.Labels == nil {
			i.Labels = map[string]string{}
		}
		for k, v := range labels {
			i.Labels[k] = v
		}
		return nil
	}
}

// ApplyOptions applies opts to a fresh Info; adapters and implementations use
// it to read the labels a caller set.
func ApplyOptions(opts []Opt) (Info, error) {
	var i Info
	for _, o := range opts {
		if err := o(&i); err != nil {
			return Info{}, err
		}
	}
	return i, nil
}

// WalkFunc is called for each snapshot Walk visits. Returning an error stops
// the walk and Walk returns it.
type WalkFunc func(ctx context.Context, info Info) error

// Layer describes a layer blob given to Apply.
type Layer struct {
	// MediaType is the OCI or Docker layer media type; it tells the
	// compression (gzip, zstd, none).
	MediaType string
	// Digest is the digest of the blob as stored (compressed).
	Digest string
	// DiffID is the digest of the uncompressed tar; Apply verifies it while
	// streaming and fails with errdefs.ErrInvalidArgument on a mismatch.
	DiffID string
	// Size is the blob's size in bytes, or 0 when unknown.
	Size int64
}

// ApplyResult reports what Apply wrote.
type ApplyResult struct {
	// DiffID is the digest of the uncompressed tar that was applied.
	DiffID string
	// Size is the number of uncompressed bytes read.
	Size int64
}

// Snapshotter is the snapshot layer contract.
type Snapshotter interface {
	plugin.Base
	// Stat returns the info of snapshot key (active, view or committed).
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes the mutable fields of a snapshot; fieldpaths are
	// "labels" or "labels.<key>"; none means all mutable fields.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Usage returns the disk use of key alone. It may be slow.
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns the mounts of an active snapshot or view.
	Mounts(ctx context.Context, key string) ([]mount.Mount, error)
	// Prepare creates active snapshot key on committed parent ("" for none).
	// A second Prepare or View of the same key fails with ErrAlreadyExists.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// View creates a read-only snapshot key of committed parent.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// Commit turns active snapshot key into committed snapshot name; key is
	// gone afterwards.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove deletes snapshot key. A snapshot with children is refused with
	// ErrInvalidState; a missing one is ErrNotFound.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for each snapshot matching every filter ("name==x",
	// "parent==y", "kind==committed", "labels.k==v"); no filter matches all.
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	// Apply unpacks layer into active snapshot key with the SDK's hardened
	// applier rules (whiteouts, no escape from the root), verifying DiffID.
	// On error nothing of the layer remains visible in key.
	Apply(ctx context.Context, key string, layer Layer, r io.Reader) (ApplyResult, error)
	// Cleanup reclaims space of removed snapshots; optional work, may be a
	// no-op.
	Cleanup(ctx context.Context) error
}
