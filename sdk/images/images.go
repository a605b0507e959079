// Package images is the contract of Berth's image service: the core's
// content store and registry client, brokered to plugins as the "images"
// handle (plugin.HandleImages) and served on the public API by api-grpc.
//
// References are image names as users type them ("alpine",
// "localhost:5000/app:v1", "busybox@sha256:…"); the service normalises them
// the way Docker does ("alpine" is docker.io/library/alpine:latest) and
// reports the normalised form.
//
// An image in the store is one platform's manifest, its config and its
// layers, every blob stored once by digest. Names point at manifests; a
// manifest no name and no lease points at is garbage and Prune (or Remove of
// its last name) deletes it with every blob nothing else uses.
//
// Unpacking goes through Layers and OpenBlob: an image's layers come in
// order (base first) with the digests and diff IDs a snapshotter needs.
//
// The package holds only Go types; the wire protocol is in sdk/proto.
package images

import (
	"context"
	"io"
	"time"
)

// Platform names an OS/architecture pair, as OCI does.
type Platform struct {
	OS           string
	Architecture string
	Variant      string
}

// String renders p as "linux/arm64/v8" (variant only when set).
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Image is one name in the store and the manifest it points at.
type Image struct {
	// Name is the normalised reference, "docker.io/library/alpine:3.20";
	// empty for an image listed by digest only.
	Name string
	// Repository and Tag split Name ("docker.io/library/alpine", "3.20").
	Repository string
	Tag        string
	// Digest is the digest of the platform manifest.
	Digest string
	// RepoDigest is the digest the registry knows the image by (the index
	// digest for a multi-arch image), empty for images never pulled.
	RepoDigest string
	MediaType  string
	// Size is the bytes stored: manifest, config and compressed layers.
	Size     int64
	Created  time.Time
	Platform Platform
}

// Layer is one layer of an image, as a snapshotter's Apply wants it.
type Layer struct {
	MediaType string
	// Digest is the digest of the stored (usually compressed) blob.
	Digest string
	// DiffID is the digest of the uncompressed tar.
	DiffID string
	Size   int64
}

// Config is the part of an image's config a container is built from.
type Config struct {
	User         string
	Env          []string
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
	Labels       map[string]string
	ExposedPorts []string
	Volumes      []string
	StopSignal   string
}

// Detail is everything the store knows about one image.
type Detail struct {
	Image
	// Names lists every name pointing at the same manifest.
	Names  []string
	Config Config
	// Layers are in order, base first.
	Layers []Layer
	// ConfigDigest is the digest of the config blob.
	ConfigDigest string
	// RawConfig and RawManifest are the blobs, byte for byte.
	RawConfig   []byte
	RawManifest []byte
}

// Progress phases.
const (
	PhaseResolving   = "resolving"   // reading the manifest
	PhaseResolved    = "resolved"    // manifest read; blobs follow
	PhaseWaiting     = "waiting"     // queued behind other downloads
	PhaseDownloading = "downloading" // bytes are flowing
	PhaseExists      = "exists"      // already in the store
	PhaseDone        = "done"        // downloaded and verified
	PhaseUploading   = "uploading"
	PhasePushed      = "pushed"
	// PhaseUnpacking and PhaseUnpacked report a pulled layer being
	// unpacked into the default snapshotter (Current/Total: blob bytes).
	PhaseUnpacking = "unpacking"
	PhaseUnpacked  = "unpacked"
)

// Progress reports one blob's progress during a pull or push. Updates for
// a blob arrive in order; Current never decreases.
type Progress struct {
	// ID is the blob's digest, or the reference while resolving.
	ID    string
	Phase string
	// Current and Total are bytes; Total is 0 while unknown.
	Current int64
	Total   int64
}

// ProgressFunc receives progress; it must not block for long.
type ProgressFunc func(Progress)

// PullOptions tune Pull.
type PullOptions struct {
	// Platform selects from a multi-arch index; empty fields take the
	// service's default (linux and the host's architecture).
	Platform Platform
}

// PushOptions tune Push.
type PushOptions struct{}

// RemoveOptions tune Remove.
type RemoveOptions struct {
	// Force removes a name even when a container (a lease) uses its
	// image; the blobs the lease holds stay until it is released.
	Force bool
}

// RemoveResult reports what Remove and Prune deleted.
type RemoveResult struct {
	// Untagged lists names removed.
	Untagged []string
	// Deleted lists blob digests deleted.
	Deleted []string
	// BytesFreed is the size of the blobs deleted.
	BytesFreed int64
}

// Archive formats for Save and Load.
const (
	// FormatOCI is an OCI image layout in a tar (skopeo's oci-archive).
	FormatOCI = "oci"
	// FormatDocker is a docker-save tarball (manifest.json, repositories).
	FormatDocker = "docker"
)

// SaveOptions tune Save.
type SaveOptions struct {
	// Format is FormatOCI or FormatDocker; empty means FormatOCI.
	Format string
}

// ImportOptions describe an image built from a root filesystem directory.
type ImportOptions struct {
	// Dir is the root filesystem, read as one layer.
	Dir string
	// Name is the name the image gets.
	Name     string
	Config   Config
	Platform Platform
}

// Service is the image service.
type Service interface {
	// Pull fetches ref for one platform, storing its manifest, config and
	// layers, and points ref at it. progress may be nil.
	Pull(ctx context.Context, ref string, opts PullOptions, progress ProgressFunc) (Image, error)
	// Push uploads the image named ref to the registry ref names.
	Push(ctx context.Context, ref string, opts PushOptions, progress ProgressFunc) error
	// List lists every name, sorted.
	List(ctx context.Context) ([]Image, error)
	// Inspect describes the image ref names; ref may also be a manifest
	// digest or a unique prefix of one.
	Inspect(ctx context.Context, ref string) (Detail, error)
	// Tag points target at the image source names.
	Tag(ctx context.Context, source, target string) (Image, error)
	// Remove removes name ref and, when no other name or lease holds its
	// image, the blobs only it used. ref may be a digest (or a unique
	// prefix): then every name of that image goes, which needs Force when
	// there are several.
	Remove(ctx context.Context, ref string, opts RemoveOptions) (RemoveResult, error)
	// Prune deletes every blob no name and no lease reaches.
	Prune(ctx context.Context) (RemoveResult, error)
	// Save writes the images refs name to w as one archive.
	Save(ctx context.Context, refs []string, opts SaveOptions, w io.Writer) error
	// Load reads an archive (OCI layout or docker-save tarball, told apart
	// by content) from r and stores and names its images.
	Load(ctx context.Context, r io.Reader) ([]Image, error)
	// Import builds a one-layer image from a directory on the daemon's host.
	Import(ctx context.Context, opts ImportOptions) (Image, error)
	// OpenBlob reads a stored blob by digest.
	OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error)
	// AddLease makes lease id hold the image ref names: its blobs stay
	// while the lease lives, and Remove refuses the image's last name to
	// a container lease (ContainerLease + ID) unless forced. Idempotent.
	AddLease(ctx context.Context, id, ref string) error
	// DeleteLease ends lease id, deleting the blobs only it held. Deleting
	// an unknown lease is not an error.
	DeleteLease(ctx context.Context, id string) error
}

// CapImages is the capability an api plugin declares when it serves the
// image service on its public endpoint.
const CapImages = "images"

// ContainerLease is the prefix of leases that containers hold on images
// (ContainerLease + container ID); Remove refuses an image a container
// lease holds unless forced.
const ContainerLease = "container/"
