package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// Media types Berth stores and runs.
var (
	manifestTypes = []types.MediaType{types.OCIManifestSchema1, types.DockerManifestSchema2}
	indexTypes    = []types.MediaType{types.OCIImageIndex, types.DockerManifestList}
	configTypes   = []types.MediaType{types.OCIConfigJSON, types.DockerConfigJSON}
	layerTypes    = []types.MediaType{
		types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
		types.DockerLayer, types.DockerUncompressedLayer,
	}
)

func oneOf(mt types.MediaType, set []types.MediaType) bool {
	for _, m := range set {
		if m == mt {
			return true
		}
	}
	return false
}

// checkManifest refuses manifests Berth cannot run, naming what is wrong.
func checkManifest(mt types.MediaType, m *v1.Manifest) error {
	if !oneOf(mt, manifestTypes) {
		return errdefs.InvalidArgument("unsupported manifest media type %q (want an OCI or Docker v2 image manifest)", mt)
	}
	if !oneOf(m.Config.MediaType, configTypes) {
		return errdefs.InvalidArgument("not a container image: config %s has media type %q", content.Digest(m.Config.Digest.String()).Short(), m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if !oneOf(l.MediaType, layerTypes) {
			return errdefs.InvalidArgument("layer %s: unsupported media type %q", content.Digest(l.Digest.String()).Short(), l.MediaType)
		}
		if _, err := content.ParseDigest(l.Digest.String()); err != nil {
			return err
		}
	}
	if _, err := content.ParseDigest(m.Config.Digest.String()); err != nil {
		return err
	}
	return nil
}

// ingestion stores images and commits their names together; blobs it
// fetched are deleted again if it is aborted and nothing else uses them.
type ingestion struct {
	s    *Service
	emit images.ProgressFunc
	// remote is set when layers come from a registry through ggcr, whose
	// readers verify each blob's digest and size themselves.
	remote   bool
	mu       sync.Mutex
	fetched  []content.Digest
	releases []func()
}

func (s *Service) newIngestion(progress images.ProgressFunc) *ingestion {
	var mu sync.Mutex
	emit := func(images.Progress) {}
	if progress != nil {
		emit = func(p images.Progress) {
			mu.Lock()
			defer mu.Unlock()
			progress(p)
		}
	}
	return &ingestion{s: s, emit: emit}
}

// storedManifest is an image ingest committed.
type storedManifest struct {
	digest    content.Digest
	mediaType types.MediaType
}

// image stores img's config, layers (at most PullParallelism at once) and
// manifest, each verified against its digest and size.
func (in *ingestion) image(ctx context.Context, img v1.Image) (storedManifest, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return storedManifest{}, fmt.Errorf("manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return storedManifest{}, fmt.Errorf("manifest: %w", err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return storedManifest{}, errdefs.InvalidArgument("manifest is not valid JSON: %v", err)
	}
	if m.MediaType != "" && m.MediaType != mt {
		mt = m.MediaType
	}
	if err := checkManifest(mt, m); err != nil {
		return storedManifest{}, err
	}
	md := content.FromBytes(raw)
	held := append([]content.Digest{md, content.Digest(m.Config.Digest.String())}, layerDigests(m)...)
	in.mu.Lock()
	in.releases = append(in.releases, in.s.hold(held))
	in.mu.Unlock()

	cfg := m.Config
	if err := in.blob(ctx, cfg.Digest, cfg.Size, func() (io.ReadCloser, error) {
		b, err := img.RawConfigFile()
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}, false); err != nil {
		return storedManifest{}, fmt.Errorf("config %s: %w", content.Digest(cfg.Digest.String()).Short(), err)
	}

	for _, l := range m.Layers {
		in.emit(images.Progress{ID: l.Digest.String(), Phase: images.PhaseWaiting, Total: l.Size})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(in.s.opts.PullParallelism)
	for _, l := range m.Layers {
		g.Go(func() error {
			err := in.blob(gctx, l.Digest, l.Size, func() (io.ReadCloser, error) {
				layer, err := img.LayerByDigest(l.Digest)
				if err != nil {
					return nil, err
				}
				return layer.Compressed()
			}, true)
			if err != nil {
				return fmt.Errorf("layer %s: %w", content.Digest(l.Digest.String()).Short(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return storedManifest{}, err
	}
	if err := in.s.store.Write(ctx, md, int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return storedManifest{}, fmt.Errorf("manifest: %w", err)
	}
	in.record(md)
	return storedManifest{digest: md, mediaType: mt}, nil
}

// blob ingests one blob, reporting progress when report is set.
func (in *ingestion) blob(ctx context.Context, h v1.Hash, size int64, open func() (io.ReadCloser, error), report bool) error {
	d := content.Digest(h.String())
	id := h.String()
	var opts []content.IngestOpt
	if in.remote && report {
		opts = append(opts, content.SourceVerifiesDigest())
	}
	fetched, err := in.s.store.Ingest(ctx, d, size, func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil || !report {
			return rc, err
		}
		in.emit(images.Progress{ID: id, Phase: images.PhaseDownloading, Total: size})
		return &progressReader{rc: rc, id: id, total: size, emit: in.emit}, nil
	}, opts...)
	if err != nil {
		if errors.Is(err, content.ErrMismatch) {
			return errdefs.InvalidArgument("%v", err)
		}
		return err
	}
	if fetched {
		in.record(d)
	}
	if report {
		phase := images.PhaseExists
		if fetched {
			phase = images.PhaseDone
		}
		in.emit(images.Progress{ID: id, Phase: phase, Current: size, Total: size})
	}
	return nil
}

func (in *ingestion) record(d content.Digest) {
	in.mu.Lock()
	in.fetched = append(in.fetched, d)
	in.mu.Unlock()
}

// commit points names at their manifests in one index write and lets go
// of the blobs held.
func (in *ingestion) commit(names map[string]refEntry) error {
	defer in.release()
	return in.s.update(func(ix *index) error {
		for n, e := range names {
			ix.Refs[n] = e
		}
		return nil
	})
}

func (in *ingestion) release() {
	in.mu.Lock()
	rs := in.releases
	in.releases = nil
	in.mu.Unlock()
	for _, r := range rs {
		r()
	}
}

// abort undoes the ingestion: blobs it committed that nothing else reaches
// are deleted.
func (in *ingestion) abort() {
	in.release()
	in.mu.Lock()
	fetched := in.fetched
	in.mu.Unlock()
	if _, err := in.s.collect(context.Background(), false, fetched); err != nil {
		in.s.log.Warn("undo of a failed ingest left blobs behind; image prune removes them", "error", err)
	}
}

func layerDigests(m *v1.Manifest) []content.Digest {
	out := make([]content.Digest, 0, len(m.Layers))
	for _, l := range m.Layers {
		out = append(out, content.Digest(l.Digest.String()))
	}
	return out
}

// progressReader reports bytes read, at most every 100ms, and at the end.
type progressReader struct {
	rc    io.ReadCloser
	id    string
	total int64
	n     int64
	last  time.Time
	emit  images.ProgressFunc
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.emit(images.Progress{ID: p.id, Phase: images.PhaseDownloading, Current: p.n, Total: p.total})
	}
	return n, err
}

func (p *progressReader) Close() error { return p.rc.Close() }
