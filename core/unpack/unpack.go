// Package unpack unpacks an image's layers into a snapshotter: each layer
// becomes a committed snapshot named by its chain ID (the OCI image spec's
// ChainID), on top of the previous layer's, so images that share their
// lower layers share those snapshots, and a layer already unpacked is never
// unpacked again.
//
// It knows nothing of where layers come from: the image service hands it
// the layers in order (base first), each able to open its blob.
package unpack

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// Layer is one layer of an image.
type Layer struct {
	// MediaType tells the compression.
	MediaType string
	// Digest is the blob's digest as stored (compressed).
	Digest string
	// DiffID is the digest of the uncompressed tar, from the image config.
	DiffID string
	// Size is the blob's size, 0 when unknown (progress only).
	Size int64
	// Open opens the blob; it is called at most once per Unpack, and only
	// for layers that are not unpacked yet.
	Open func() (io.ReadCloser, error)
}

// State says where a layer is in an Unpack.
type State string

// States reported through Progress.
const (
	StateExists   State = "exists"   // already unpacked; skipped
	StateApplying State = "applying" // being applied (Read grows)
	StateApplied  State = "applied"  // applied and committed
)

// Progress reports one step of an Unpack.
type Progress struct {
	// Index is the layer's position, 0 for the base layer, of Total.
	Index, Total int
	Digest       string
	ChainID      string
	State        State
	// Read is the number of blob bytes read so far, of Size (0 if unknown).
	Read, Size int64
}

// Options tune an Unpack.
type Options struct {
	// Progress, when set, is called as layers are skipped or applied;
	// while a layer applies, at most once per MiB read.
	Progress func(Progress)
	// Labels are set on every snapshot Unpack commits.
	Labels map[string]string
	// Logger receives one line per applied layer.
	Logger hclog.Logger
}

// Result says what an Unpack did.
type Result struct {
	// ChainID names the snapshot of the top layer: Prepare a container's
	// rootfs on it.
	ChainID string
	// ChainIDs are the chain IDs of every layer, base first.
	ChainIDs []string
	// Applied and Skipped count layers unpacked now and found unpacked.
	Applied, Skipped int
}

// ChainIDs returns the chain ID of each layer given the diff IDs, base
// first: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
// DiffID(Ln)).
func ChainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// Unpack unpacks layers (base first) into sn and returns the top chain ID.
// Layers whose chain ID is already a committed snapshot are skipped. Blobs
// are decompressed here, one layer ahead of the snapshotter, which
// receives plain tar streams (see stream). On
// error, the snapshot being extracted is removed; layers committed before
// it stay (they are valid, and the next Unpack skips them).
func Unpack(ctx context.Context, sn snapshot.Snapshotter, layers []Layer, opts Options) (Result, error) {
	if len(layers) == 0 {
		return Result{}, errdefs.InvalidArgument("unpack: the image has no layers")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		if !strings.HasPrefix(l.DiffID, "sha256:") || len(l.DiffID) != len("sha256:")+64 {
			return Result{}, errdefs.InvalidArgument("unpack: layer %d (%s) has diff ID %q; want sha256:<64 hex>", i, l.Digest, l.DiffID)
		}
		if l.Open == nil {
			return Result{}, errdefs.InvalidArgument("unpack: layer %d (%s) cannot be opened", i, l.Digest)
		}
		diffIDs[i] = l.DiffID
	}
	res := Result{ChainIDs: ChainIDs(diffIDs)}
	res.ChainID = res.ChainIDs[len(layers)-1]

	// Find the highest layer already unpacked: everything below it is too.
	start := 0
	for i := len(layers) - 1; i >= 0; i-- {
		info, err := sn.Stat(ctx, res.ChainIDs[i])
		if err == nil && info.Kind == snapshot.KindCommitted {
			start = i + 1
			break
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return res, fmt.Errorf("unpack: stat snapshot %s: %w", res.ChainIDs[i], err)
		}
	}
	for i := 0; i < start; i++ {
		res.Skipped++
		report(opts, Progress{Index: i, Total: len(layers), Digest: layers[i].Digest, ChainID: res.ChainIDs[i], State: StateExists, Size: layers[i].Size})
	}
	var reportMu sync.Mutex
	streams := map[int]*stream{}
	defer func() {
		for _, s := range streams {
			s.Close()
		}
	}()
	startAt := func(i int) {
		if i >= len(layers) || streams[i] != nil {
			return
		}
		p := Progress{Index: i, Total: len(layers), Digest: layers[i].Digest, ChainID: res.ChainIDs[i], State: StateApplying, Size: layers[i].Size}
		streams[i] = startStream(layers[i], func(n int64) {
			reportMu.Lock()
			defer reportMu.Unlock()
			p.Read = n
			report(opts, p)
		})
	}
	locked := opts
	if opts.Progress != nil {
		locked.Progress = func(p Progress) {
			reportMu.Lock()
			defer reportMu.Unlock()
			opts.Progress(p)
		}
	}
	for i := start; i < len(layers); i++ {
		parent := ""
		if i > 0 {
			parent = res.ChainIDs[i-1]
		}
		for j := i; j <= i+layersAhead; j++ {
			startAt(j)
		}
		applied, err := unpackLayer(ctx, sn, layers[i], streams[i], i, len(layers), parent, res.ChainIDs[i], locked)
		streams[i].Close()
		delete(streams, i)
		if err != nil {
			return res, fmt.Errorf("unpack layer %d of %d (%s): %w", i+1, len(layers), layers[i].Digest, err)
		}
		if applied {
			res.Applied++
		} else {
			res.Skipped++
		}
	}
	return res, nil
}

// unpackLayer extracts one layer into a fresh active snapshot and commits
// it as chainID. It reports false when another unpack committed chainID
// first.
func unpackLayer(ctx context.Context, sn snapshot.Snapshotter, l Layer, blob *stream, index, total int, parent, chainID string, opts Options) (bool, error) {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	key := fmt.Sprintf("extract-%x-%s", nonce, chainID)
	if _, err := sn.Prepare(ctx, key, parent, snapshot.WithLabels(map[string]string{"berth.dev/unpack": chainID})); err != nil {
		return false, fmt.Errorf("prepare snapshot on %s: %w", parentName(parent), err)
	}
	committed := false
	defer func() {
		if !committed {
			// Best effort with a context of its own: ctx may be what failed.
			if err := sn.Remove(context.WithoutCancel(ctx), key); err != nil && !errdefs.IsNotFound(err) {
				opts.Logger.Warn("could not remove the extraction snapshot", "key", key, "error", err)
			}
		}
	}()
	p := Progress{Index: index, Total: total, Digest: l.Digest, ChainID: chainID, State: StateApplying, Size: l.Size}
	res, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: tarMediaType, DiffID: l.DiffID}, blob)
	if err != nil {
		return false, err
	}
	if res.DiffID != l.DiffID {
		return false, errdefs.InvalidArgument("the snapshotter applied content with diff ID %s, the image says %s", res.DiffID, l.DiffID)
	}
	labels := map[string]string{}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	if err := sn.Commit(ctx, chainID, key, snapshot.WithLabels(labels)); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return false, nil // a concurrent unpack won; its snapshot is the same
		}
		return false, fmt.Errorf("commit %s: %w", chainID, err)
	}
	committed = true
	p.State, p.Read = StateApplied, l.Size
	report(opts, p)
	opts.Logger.Debug("layer unpacked", "layer", l.Digest, "chain_id", chainID, "bytes", res.Size)
	return true, nil
}

func parentName(p string) string {
	if p == "" {
		return "nothing (base layer)"
	}
	return p
}

func report(opts Options, p Progress) {
	if opts.Progress != nil {
		opts.Progress(p)
	}
}

// Release removes the snapshots of an image's layers that nothing uses any
// more, from the top down: it stops at the first chain ID that inUse says
// another image needs, or that the snapshotter refuses to remove because
// snapshots (another image's layers, a container's rootfs) are built on
// it. A chain ID already gone is skipped. It returns the chain IDs removed.
func Release(ctx context.Context, sn snapshot.Snapshotter, chainIDs []string, inUse func(chainID string) bool) ([]string, error) {
	var removed []string
	for i := len(chainIDs) - 1; i >= 0; i-- {
		c := chainIDs[i]
		if inUse != nil && inUse(c) {
			break
		}
		err := sn.Remove(ctx, c)
		switch {
		case err == nil:
			removed = append(removed, c)
		case errdefs.IsNotFound(err):
		case errdefs.IsInvalidState(err):
			return removed, nil
		default:
			return removed, fmt.Errorf("release snapshot %s: %w", c, err)
		}
	}
	return removed, nil
}
