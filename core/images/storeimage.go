package images

import (
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-dev/berth/core/images/content"
)

// storedImage is an image in the content store as ggcr's v1.Image, so push
// and save reuse ggcr's remote, layout and tarball writers unchanged.
type storedImage struct {
	store     *content.Store
	raw       []byte
	manifest  *v1.Manifest
	mediaType types.MediaType
}

var _ partial.CompressedImageCore = (*storedImage)(nil)

// loadManifest reads and parses manifest d from the store.
func loadManifest(store *content.Store, d content.Digest) (*storedImage, error) {
	raw, err := store.ReadAll(d)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Short(), err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Short(), err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	return &storedImage{store: store, raw: raw, manifest: &m, mediaType: mt}, nil
}

// image returns the v1.Image view.
func (s *storedImage) image() (v1.Image, error) { return partial.CompressedToImage(s) }

// blobs lists the manifest's config and layer digests.
func (s *storedImage) blobs() []content.Digest {
	out := []content.Digest{content.Digest(s.manifest.Config.Digest.String())}
	for _, l := range s.manifest.Layers {
		out = append(out, content.Digest(l.Digest.String()))
	}
	return out
}

func (s *storedImage) RawManifest() ([]byte, error)        { return s.raw, nil }
func (s *storedImage) MediaType() (types.MediaType, error) { return s.mediaType, nil }
func (s *storedImage) RawConfigFile() ([]byte, error) {
	return s.store.ReadAll(content.Digest(s.manifest.Config.Digest.String()))
}

func (s *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == s.manifest.Config.Digest {
		return &storedBlob{store: s.store, desc: s.manifest.Config}, nil
	}
	for _, l := range s.manifest.Layers {
		if l.Digest == h {
			return &storedBlob{store: s.store, desc: l}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not part of this image", h)
}

// storedBlob is one blob of a stored image.
type storedBlob struct {
	store *content.Store
	desc  v1.Descriptor
}

func (b *storedBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *storedBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *storedBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
func (b *storedBlob) Compressed() (io.ReadCloser, error) {
	return b.store.Open(content.Digest(b.desc.Digest.String()))
}
