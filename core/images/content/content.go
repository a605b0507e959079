// Package content is Berth's content-addressed blob store: every manifest,
// config and layer blob the image service keeps, stored once by digest
// however many images share it.
//
// Layout under the store's root:
//
//	blobs/sha256/<hex>   committed blobs, read-only (0444), never modified
//	ingest/<random>      blobs being written; removed by Open and on failure
//
// Invariants:
//   - A file under blobs/ always holds exactly the bytes of its digest: a
//     write goes to a temp file under ingest/, is synced, its size and digest
//     are checked, and only then is it renamed into place. A process killed
//     at any point leaves at most a temp file, which the next Open removes.
//   - Writes of one digest are serialised (a per-digest lock), so
//     concurrent pulls of images that share a layer fetch it once: the second
//     writer waits, then finds the blob committed.
//
// One process owns a root at a time (the daemon holds its pid-file lock);
// Open removes leftovers of earlier processes from ingest/.
package content

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// Digest is a content digest, "sha256:<64 hex>".
type Digest string

// Hex returns the digest's hex part.
func (d Digest) Hex() string { _, h, _ := strings.Cut(string(d), ":"); return h }

// Short returns the first 12 hex digits, for messages.
func (d Digest) Short() string {
	h := d.Hex()
	if len(h) > 12 {
		h = h[:12]
	}
	return "sha256:" + h
}

// ParseDigest checks that s is a sha256 digest Berth can store.
func ParseDigest(s string) (Digest, error) {
	algo, h, ok := strings.Cut(s, ":")
	if !ok || algo != "sha256" {
		return "", errdefs.InvalidArgument("digest %q: want sha256:<64 hex digits>", s)
	}
	if len(h) != 64 {
		return "", errdefs.InvalidArgument("digest %q: want 64 hex digits, got %d", s, len(h))
	}
	if _, err := hex.DecodeString(h); err != nil || strings.ToLower(h) != h {
		return "", errdefs.InvalidArgument("digest %q: not lower-case hex", s)
	}
	return Digest(s), nil
}

// FromBytes returns the digest of b.
func FromBytes(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// ErrMismatch is the kind of error Write returns when the bytes it was given
// do not match the expected size or digest.
var ErrMismatch = errors.New("content mismatch")

// Store is a content store rooted at a directory. It is safe for concurrent
// use.
type Store struct {
	root string

	mu    sync.Mutex
	locks map[Digest]*digestLock
}

type digestLock struct {
	mu    sync.Mutex
	users int
}

// Open opens (creating it) the store at root and removes temp files left
// by an earlier process.
func Open(root string) (*Store, error) {
	for _, d := range []string{filepath.Join(root, "blobs", "sha256"), filepath.Join(root, "ingest")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("content store: %w", err)
		}
	}
	s := &Store{root: root, locks: map[Digest]*digestLock{}}
	if err := s.cleanIngest(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) cleanIngest() error {
	dir := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("content store: remove leftover %s: %w", e.Name(), err)
		}
	}
	return nil
}

// BlobPath returns where blob d lives once committed.
func (s *Store) BlobPath(d Digest) string {
	return filepath.Join(s.root, "blobs", "sha256", d.Hex())
}

// Info returns the size of committed blob d, or an ErrNotFound error.
func (s *Store) Info(d Digest) (int64, error) {
	st, err := os.Stat(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errdefs.NotFound("blob %s not found", d)
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Has reports whether blob d is committed.
func (s *Store) Has(d Digest) bool {
	_, err := s.Info(d)
	return err == nil
}

// Open returns a reader of committed blob d.
func (s *Store) Open(d Digest) (*os.File, error) {
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("blob %s not found", d)
	}
	return f, err
}

// ReadAll returns the bytes of committed blob d (manifests and configs).
func (s *Store) ReadAll(d Digest) ([]byte, error) {
	f, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Lock serialises work on digest d across goroutines; call the returned
// func to release. Ingest holds it while it writes.
func (s *Store) Lock(d Digest) func() {
	s.mu.Lock()
	l, ok := s.locks[d]
	if !ok {
		l = &digestLock{}
		s.locks[d] = l
	}
	l.users++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		l.users--
		if l.users == 0 {
			delete(s.locks, d)
		}
		s.mu.Unlock()
	}
}

// Ingest commits blob d of size bytes (size < 0: unknown) unless it is
// already committed. open is called at most once, only when the blob is
// missing; its reader is copied to a temp file, checked, and renamed into
// place. fetched reports whether open was called. Concurrent Ingests of one
// digest call open once between them (unless that one fails).
//
// The error names the digest; a size or digest mismatch is of kind
// ErrMismatch, and nothing is committed then.
func (s *Store) Ingest(ctx context.Context, d Digest, size int64, open func() (io.ReadCloser, error), opts ...IngestOpt) (fetched bool, err error) {
	var o ingestOpts
	for _, opt := range opts {
		opt(&o)
	}
	unlock := s.Lock(d)
	defer unlock()
	if s.Has(d) {
		return false, nil
	}
	rc, err := open()
	if err != nil {
		return true, err
	}
	defer rc.Close()
	return true, s.write(ctx, d, size, rc, o.sourceVerifies)
}

// IngestOpt tunes Ingest.
type IngestOpt func(*ingestOpts)

type ingestOpts struct{ sourceVerifies bool }

// SourceVerifiesDigest tells Ingest that the reader open returns checks the
// digest itself and fails at its end unless every byte matched (as
// go-containerregistry's registry readers do). The store then checks only
// the size, sparing a second hash of every byte; the blob is still verified
// before it is committed.
func SourceVerifiesDigest() IngestOpt { return func(o *ingestOpts) { o.sourceVerifies = true } }

// Write commits the bytes of r as blob d (size < 0: unknown), verifying
// both. It is Ingest for a reader already in hand; a blob already committed
// is left alone and r is drained no further.
func (s *Store) Write(ctx context.Context, d Digest, size int64, r io.Reader) error {
	unlock := s.Lock(d)
	defer unlock()
	if s.Has(d) {
		return nil
	}
	return s.write(ctx, d, size, r, false)
}

// WriteBytes commits b, returning its digest.
func (s *Store) WriteBytes(ctx context.Context, b []byte) (Digest, error) {
	d := FromBytes(b)
	return d, s.Write(ctx, d, int64(len(b)), bytes.NewReader(b))
}

func (s *Store) write(ctx context.Context, d Digest, size int64, r io.Reader, sourceVerifies bool) (err error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "ingest"), d.Hex()[:12]+"-*")
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	var h hash.Hash
	var w io.Writer = tmp
	if !sourceVerifies {
		h = sha256.New()
		w = io.MultiWriter(tmp, h)
	}
	n, err := io.Copy(w, ctxReader{ctx: ctx, r: r})
	if err != nil {
		// A verifying source fails at the end of a blob whose digest is
		// wrong; report that as what it is.
		if size >= 0 && n == size && ctx.Err() == nil {
			if sourceVerifies {
				return fmt.Errorf("blob %s: %w: %v", d.Short(), ErrMismatch, err)
			}
			if verr := verify(d, size, n, h); verr != nil {
				return verr
			}
		}
		return fmt.Errorf("blob %s: after %d bytes: %w", d.Short(), n, err)
	}
	if sourceVerifies {
		if size >= 0 && n != size {
			return fmt.Errorf("blob %s: %w: got %d bytes, expected %d (truncated or oversized)", d.Short(), ErrMismatch, n, size)
		}
	} else if err := verify(d, size, n, h); err != nil {
		return err
	}
	if err := tmp.Chmod(0o444); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("blob %s: sync: %w", d, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := os.Rename(tmp.Name(), s.BlobPath(d)); err != nil {
		return fmt.Errorf("blob %s: commit: %w", d, err)
	}
	return nil
}

func verify(d Digest, size, n int64, h hash.Hash) error {
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s: %w: got %d bytes, expected %d (truncated or oversized)", d.Short(), ErrMismatch, n, size)
	}
	got := Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if got != d {
		return fmt.Errorf("blob %s: %w: content has digest %s", d.Short(), ErrMismatch, got)
	}
	return nil
}

// Delete removes blob d. Deleting a missing blob is not an error.
func (s *Store) Delete(d Digest) error {
	unlock := s.Lock(d)
	defer unlock()
	if err := os.Remove(s.BlobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every committed blob with its size, in no set order.
func (s *Store) Walk(fn func(d Digest, size int64) error) error {
	dir := filepath.Join(s.root, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		if err := fn(Digest("sha256:"+e.Name()), info.Size()); err != nil {
			return err
		}
	}
	return nil
}

// Verify re-reads blob d and checks its digest (tests, fsck).
func (s *Store) Verify(d Digest) error {
	f, err := s.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	return verify(d, -1, n, h)
}

// IngestFiles lists the temp files under ingest/ (tests, fsck).
func (s *Store) IngestFiles() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "ingest"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
