package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// List implements images.Service.
func (s *Service) List(context.Context) ([]images.Image, error) {
	ix := s.snapshot()
	out := make([]images.Image, 0, len(ix.Refs))
	for _, n := range slices.Sorted(maps.Keys(ix.Refs)) {
		img, err := s.imageFor(n, ix.Refs[n])
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// imageFor describes name n pointing at e.
func (s *Service) imageFor(n string, e refEntry) (images.Image, error) {
	sum, err := s.summarize(e.Digest)
	if err != nil {
		return images.Image{}, fmt.Errorf("image %s: %w", n, err)
	}
	repo, tag := splitName(n)
	return images.Image{
		Name: n, Repository: repo, Tag: tag, Digest: string(e.Digest), RepoDigest: string(e.RepoDigest),
		MediaType: e.MediaType, Size: sum.size, Created: sum.created, Platform: sum.platform,
	}, nil
}

func (s *Service) summarize(d content.Digest) (summary, error) {
	s.mu.Lock()
	sum, ok := s.summary[d]
	s.mu.Unlock()
	if ok {
		return sum, nil
	}
	si, err := loadManifest(s.store, d)
	if err != nil {
		return summary{}, err
	}
	cfg, err := s.configOf(si)
	if err != nil {
		return summary{}, err
	}
	sum.size = int64(len(si.raw)) + si.manifest.Config.Size
	for _, l := range si.manifest.Layers {
		sum.size += l.Size
	}
	sum.created = cfg.Created.Time
	sum.platform = images.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	s.mu.Lock()
	s.summary[d] = sum
	s.mu.Unlock()
	return sum, nil
}

func (s *Service) configOf(si *storedImage) (*v1.ConfigFile, error) {
	raw, err := si.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", content.Digest(si.manifest.Config.Digest.String()).Short(), err)
	}
	return cfg, nil
}

// layersOf lists si's layers with their diff IDs, base first.
func (s *Service) layersOf(si *storedImage) ([]images.Layer, error) {
	cfg, err := s.configOf(si)
	if err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != len(si.manifest.Layers) {
		return nil, fmt.Errorf("image config lists %d diff IDs for %d layers", len(cfg.RootFS.DiffIDs), len(si.manifest.Layers))
	}
	out := make([]images.Layer, 0, len(si.manifest.Layers))
	for i, l := range si.manifest.Layers {
		out = append(out, images.Layer{
			MediaType: string(l.MediaType), Digest: l.Digest.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), Size: l.Size,
		})
	}
	return out, nil
}

// Inspect implements images.Service.
func (s *Service) Inspect(_ context.Context, ref string) (images.Detail, error) {
	d, names, err := s.resolve(ref)
	if err != nil {
		return images.Detail{}, err
	}
	ix := s.snapshot()
	e, ok := ix.Refs[firstOr(names, "")]
	if !ok {
		e = refEntry{Digest: d}
	}
	si, err := loadManifest(s.store, d)
	if err != nil {
		return images.Detail{}, err
	}
	if e.MediaType == "" {
		e.MediaType = string(si.mediaType)
	}
	img, err := s.imageFor(firstOr(names, ""), e)
	if err != nil {
		return images.Detail{}, err
	}
	if len(names) == 0 {
		img.Name, img.Repository, img.Tag = "", "", ""
	}
	cfg, err := s.configOf(si)
	if err != nil {
		return images.Detail{}, err
	}
	layers, err := s.layersOf(si)
	if err != nil {
		return images.Detail{}, err
	}
	rawCfg, _ := si.RawConfigFile()
	c := cfg.Config
	return images.Detail{
		Image: img,
		Names: ix.namesOf(d),
		Config: images.Config{
			User: c.User, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir,
			Labels: c.Labels, ExposedPorts: slices.Sorted(maps.Keys(c.ExposedPorts)),
			Volumes: slices.Sorted(maps.Keys(c.Volumes)), StopSignal: c.StopSignal,
		},
		Layers:       layers,
		ConfigDigest: si.manifest.Config.Digest.String(),
		RawConfig:    rawCfg,
		RawManifest:  si.raw,
	}, nil
}

func firstOr(ss []string, def string) string {
	if len(ss) > 0 {
		return ss[0]
	}
	return def
}

// Tag implements images.Service.
func (s *Service) Tag(_ context.Context, source, target string) (images.Image, error) {
	d, names, err := s.resolve(source)
	if err != nil {
		return images.Image{}, err
	}
	pt, err := parseRef(target, s.opts.InsecureRegistries)
	if err != nil {
		return images.Image{}, err
	}
	if _, isTag := pt.ref.(name.Tag); !isTag {
		return images.Image{}, errdefs.InvalidArgument("tag %q: a target name takes a tag, not a digest", target)
	}
	var e refEntry
	if err := s.update(func(ix *index) error {
		e = refEntry{Digest: d, Updated: time.Now().UTC()}
		if src, ok := ix.Refs[firstOr(names, "")]; ok {
			e.MediaType, e.RepoDigest = src.MediaType, src.RepoDigest
		}
		if e.MediaType == "" {
			if si, err := loadManifest(s.store, d); err == nil {
				e.MediaType = string(si.mediaType)
			}
		}
		ix.Refs[pt.display] = e
		return nil
	}); err != nil {
		return images.Image{}, err
	}
	return s.imageFor(pt.display, e)
}

// OpenBlob implements images.Service.
func (s *Service) OpenBlob(_ context.Context, digest string) (io.ReadCloser, error) {
	d, err := content.ParseDigest(digest)
	if err != nil {
		return nil, err
	}
	return s.store.Open(d)
}

// Layers returns the layers of the image ref names, base first, for
// unpacking; open each with OpenBlob.
func (s *Service) Layers(ctx context.Context, ref string) ([]images.Layer, error) {
	d, err := s.Inspect(ctx, ref)
	if err != nil {
		return nil, err
	}
	return d.Layers, nil
}
