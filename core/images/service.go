// Package images is the core's image service: the content store
// (core/images/content), the reference index and the registry client, built
// on go-containerregistry. It implements sdk/images.Service; the daemon
// serves it to plugins as the "images" handle.
//
// State under the service's root (<state_dir>/images):
//
//	blobs/sha256/<hex>   every manifest, config and layer blob, once
//	ingest/              blobs being written (content package)
//	tmp/                 archives being loaded or saved; emptied at start
//	index.json           names → manifest digests, and leases (JSON,
//	                     rewritten whole by temp file + fsync + rename)
//
// Invariants:
//   - A name only ever points at a manifest whose config and layers are all
//     committed: blobs are committed first (each verified against its
//     digest and size), the index last.
//   - A failed pull, load or import leaves the store as it was: blobs it
//     committed that nothing else reaches are deleted again.
//   - Garbage collection (Remove of an image's last name, Prune, the end of
//     a lease) deletes exactly the blobs no name, no lease and no operation
//     in flight reaches. Release hooks run before an image's blobs go, so
//     the snapshots unpacked from it can be released too.
package images

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// DefaultPullParallelism is how many layers a pull downloads at once.
const DefaultPullParallelism = 4

// Options configure a Service.
type Options struct {
	// Root is the service's directory, <state_dir>/images.
	Root   string
	Logger hclog.Logger
	// InsecureRegistries are reached over plain HTTP (host[:port] as in
	// the reference). localhost and 127.0.0.1 always are.
	InsecureRegistries []string
	// PullParallelism bounds concurrent layer downloads per pull; 0 means
	// DefaultPullParallelism.
	PullParallelism int
	// Platform is the default platform of pulls; empty fields mean linux
	// and the host's architecture (the VM runs Linux on macOS too).
	Platform images.Platform
	// Keychain finds registry credentials; nil means ~/.docker/config.json
	// and its credential helpers (authn.DefaultKeychain).
	Keychain authn.Keychain
	// Transport is the HTTP transport; nil means remote.DefaultTransport.
	Transport http.RoundTripper
}

// ReleaseFunc is called when image manifest (a digest) loses its last name
// and lease, before its blobs are deleted, with its layers in order. A hook
// that fails stops the removal. Snapshot unpacking registers one to remove
// the snapshots it made from those layers.
type ReleaseFunc func(ctx context.Context, manifest string, layers []images.Layer) error

// Service is the image service.
type Service struct {
	opts  Options
	log   hclog.Logger
	store *content.Store

	mu       sync.Mutex
	ix       *index
	inflight map[content.Digest]int // blobs operations in flight hold
	summary  map[content.Digest]summary
	hooks    []ReleaseFunc
}

var _ images.Service = (*Service)(nil)

// summary caches what List shows about a manifest (content never changes).
type summary struct {
	size     int64
	created  time.Time
	platform images.Platform
}

// New opens the service's store at opts.Root, creating it, and removes
// what interrupted operations left behind.
func New(opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.PullParallelism <= 0 {
		opts.PullParallelism = DefaultPullParallelism
	}
	if opts.Platform.OS == "" {
		opts.Platform.OS = "linux"
	}
	if opts.Platform.Architecture == "" {
		opts.Platform.Architecture = runtime.GOARCH
	}
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	if opts.Transport == nil {
		opts.Transport = remote.DefaultTransport
	}
	if err := os.MkdirAll(opts.Root, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	store, err := content.Open(opts.Root)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(opts.Root, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if stale, _ := filepath.Glob(filepath.Join(opts.Root, indexFile+".tmp-*")); len(stale) > 0 {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	ix, err := loadIndex(opts.Root)
	if err != nil {
		return nil, err
	}
	return &Service{
		opts: opts, log: opts.Logger, store: store, ix: ix,
		inflight: map[content.Digest]int{}, summary: map[content.Digest]summary{},
	}, nil
}

// Store returns the content store (unpacking reads blobs from it).
func (s *Service) Store() *content.Store { return s.store }

// OnRelease registers a hook run when an image loses its last name and
// lease.
func (s *Service) OnRelease(fn ReleaseFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, fn)
}

// tmpDir is where archives are spooled.
func (s *Service) tmpDir() string { return filepath.Join(s.opts.Root, "tmp") }

func (s *Service) remoteOptions(ctx context.Context, extra ...remote.Option) []remote.Option {
	return append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(s.opts.Keychain),
		remote.WithTransport(s.opts.Transport),
		remote.WithUserAgent("berth/" + version.Version),
		remote.WithJobs(s.opts.PullParallelism),
	}, extra...)
}

func (s *Service) platform(p images.Platform) v1.Platform {
	out := v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	if out.OS == "" {
		out.OS = s.opts.Platform.OS
	}
	if out.Architecture == "" {
		out.Architecture = s.opts.Platform.Architecture
		if out.Variant == "" {
			out.Variant = s.opts.Platform.Variant
		}
	}
	return out
}

// snapshot returns the current index; callers must not modify it.
func (s *Service) snapshot() *index {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ix
}

// update applies fn to a copy of the index and persists it; the in-memory
// index changes only once the file is written.
func (s *Service) update(fn func(ix *index) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updateLocked(fn)
}

func (s *Service) updateLocked(fn func(ix *index) error) error {
	next := s.ix.clone()
	if err := fn(next); err != nil {
		return err
	}
	if err := next.save(s.opts.Root); err != nil {
		return err
	}
	s.ix = next
	return nil
}

// hold marks ds as in use by an operation in flight, so garbage collection
// keeps them; the returned func releases them (safe to call twice).
func (s *Service) hold(ds []content.Digest) func() {
	s.mu.Lock()
	for _, d := range ds {
		s.inflight[d]++
	}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			for _, d := range ds {
				if s.inflight[d]--; s.inflight[d] <= 0 {
					delete(s.inflight, d)
				}
			}
			s.mu.Unlock()
		})
	}
}

// resolve finds what ref names: a name in the index, else a manifest digest
// or a unique prefix of one (with or without "sha256:", at least 4 hex
// digits). It returns the manifest digest and the names that matched.
func (s *Service) resolve(ref string) (content.Digest, []string, error) {
	ix := s.snapshot()
	pr, perr := parseRef(ref, s.opts.InsecureRegistries)
	if perr == nil {
		if e, ok := ix.Refs[pr.display]; ok {
			return e.Digest, []string{pr.display}, nil
		}
	}
	prefix := strings.TrimPrefix(ref, "sha256:")
	if len(prefix) >= 4 && len(prefix) <= 64 && isHex(prefix) {
		var found []content.Digest
		for d := range ix.roots() {
			if strings.HasPrefix(d.Hex(), prefix) && !slices.Contains(found, d) {
				found = append(found, d)
			}
		}
		switch len(found) {
		case 1:
			return found[0], ix.namesOf(found[0]), nil
		case 0:
		default:
			return "", nil, errdefs.InvalidArgument("image ID prefix %q is ambiguous: it matches %d images", ref, len(found))
		}
	}
	if perr != nil {
		return "", nil, perr
	}
	return "", nil, errdefs.NotFound("image %q not found (pull or load it first)", pr.display)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2))
	return err == nil && strings.ToLower(s) == s
}
