// Package archive is the hardened layer applier every Berth snapshotter
// shares: it streams an OCI image layer (a tar, uncompressed or compressed
// with gzip or zstd) into a directory, and guarantees that nothing it does
// reaches outside that directory.
//
// What it applies: regular files, directories, symlinks, hardlinks, FIFOs,
// device nodes (as root; skipped otherwise), permission bits including
// setuid/setgid/sticky, ownership (as root; kept as the caller's otherwise),
// extended attributes (SCHILY.xattr PAX records), and modification times
// (directories get theirs once the whole layer is in, so their children do
// not disturb them). Whiteouts follow the OCI image spec: ".wh.<name>" deletes
// <name> of a lower layer and ".wh..wh..opq" hides every lower entry of its
// directory. With WhiteoutDelete the root is a full tree and whiteouts delete;
// with WhiteoutOverlay the root is an overlayfs upper directory and whiteouts
// become overlayfs's own markers (a 0:0 character device, the
// trusted.overlay.opaque="y" attribute).
//
// What it refuses, with an *EntryError naming the entry: names that climb
// out of the root ("../x", "/../x", "a/../../x"), hardlinks whose target
// climbs out or is not inside the root, whiteouts of "." or "..", and any
// entry whose parent directory is a symlink or not a directory (so a layer
// cannot plant "etc -> /etc" and then write "etc/passwd" through it, in this
// layer or through a lower one). Names are taken relative to the root:
// "/usr/bin/x" is "usr/bin/x" (as tar and Docker do). Symlink targets are
// stored as given and never followed; every path is resolved one component
// at a time from a directory descriptor of the root with O_NOFOLLOW (on
// Linux with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS first), and every
// change is made with *at system calls relative to the verified parent.
//
// The diff ID (the digest of the uncompressed tar) is computed while the
// layer streams and compared at the end, and so is the blob digest when it
// is given. On any error the root holds a partial layer: callers that must
// not show one (snapshotters) apply into a staging directory and swap it in
// on success.
package archive

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// WhiteoutMode says what the root of an Apply is and so how deletions are
// represented.
type WhiteoutMode int

const (
	// WhiteoutDelete: the root is the complete filesystem of the snapshot
	// (lower layers included); whiteouts delete what they name.
	WhiteoutDelete WhiteoutMode = iota
	// WhiteoutOverlay: the root is an overlayfs upper directory over
	// Options.Parents; whiteouts are written as overlayfs markers.
	WhiteoutOverlay
)

// Options controls one Apply.
type Options struct {
	// MediaType is the layer's media type; it selects the decompressor
	// ("…tar+gzip", "…tar.gzip", "…tar+zstd", "…tar"). When empty, or not
	// a layer media type Berth knows, the stream's magic number decides.
	MediaType string
	// DiffID is the expected digest of the uncompressed tar
	// ("sha256:<hex>"). Empty means compute and report it only.
	DiffID string
	// Digest is the expected digest of the blob as given (compressed).
	// Empty means do not check it.
	Digest string
	// Whiteouts chooses how deletions are applied.
	Whiteouts WhiteoutMode
	// Parents are the lower directories of an overlay upper root, upper-most
	// first. When a layer writes below a directory it does not list itself,
	// the directory is created in the root with the mode, owner, times and
	// extended attributes it has in the first parent that has it (0755 and
	// the caller's owner when none does), so the merged view keeps them.
	Parents []string
	// Progress, when set, is called with the number of blob bytes read so
	// far, at most once per MiB and once at the end. Calls come one at a
	// time, from a goroutine Apply starts (the one reading the blob).
	Progress func(read int64)
	// Logger receives debug notes (skipped devices, unsupported xattrs).
	Logger hclog.Logger
}

// Result reports what an Apply did.
type Result struct {
	// DiffID is the digest of the uncompressed tar ("sha256:<hex>").
	DiffID string
	// Size is the number of uncompressed bytes read, tar padding included.
	Size int64
	// Read is the number of blob bytes read.
	Read int64
	// Entries is the number of tar entries applied.
	Entries int
}

// EntryError is a layer entry the applier refused or could not apply.
// Refusals of unsafe entries are errdefs.ErrInvalidArgument.
type EntryError struct {
	// Entry is the entry's name as the tar gives it.
	Entry string
	// Err says what is wrong.
	Err error
}

func (e *EntryError) Error() string { return fmt.Sprintf("layer entry %q: %v", e.Entry, e.Err) }
func (e *EntryError) Unwrap() error { return e.Err }

// unsafe returns an EntryError of kind ErrInvalidArgument.
func unsafe(entry, format string, args ...any) error {
	return &EntryError{Entry: entry, Err: errdefs.InvalidArgument(format, args...)}
}

// entryErr wraps a system error met while applying entry.
func entryErr(entry string, err error) error {
	var ee *EntryError
	if errors.As(err, &ee) {
		return err
	}
	return &EntryError{Entry: entry, Err: err}
}
