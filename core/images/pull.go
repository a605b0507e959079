package images

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// Pull implements images.Service.
func (s *Service) Pull(ctx context.Context, ref string, opts images.PullOptions, progress images.ProgressFunc) (images.Image, error) {
	pr, err := parseRef(ref, s.opts.InsecureRegistries)
	if err != nil {
		return images.Image{}, err
	}
	img, entry, err := s.pull(ctx, pr, opts, progress)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: %w", pr.display, err)
	}
	s.log.Info("pulled image", "ref", pr.display, "digest", entry.Digest)
	return img, nil
}

func (s *Service) pull(ctx context.Context, pr parsedRef, opts images.PullOptions, progress images.ProgressFunc) (images.Image, refEntry, error) {
	in := s.newIngestion(progress)
	in.remote = true
	in.emit(images.Progress{ID: pr.display, Phase: images.PhaseResolving})
	plat := s.platform(opts.Platform)
	desc, err := remote.Get(pr.ref, s.remoteOptions(ctx, remote.WithPlatform(plat))...)
	if err != nil {
		return images.Image{}, refEntry{}, registryError(pr, err)
	}
	if !oneOf(desc.MediaType, manifestTypes) && !oneOf(desc.MediaType, indexTypes) {
		return images.Image{}, refEntry{}, errdefs.InvalidArgument("unsupported manifest media type %q (want an OCI or Docker v2 image manifest or index)", desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		if oneOf(desc.MediaType, indexTypes) && strings.Contains(err.Error(), "no child with platform") {
			return images.Image{}, refEntry{}, errdefs.NotFound("no image for platform %s in index %s: %v", platformString(plat), content.Digest(desc.Digest.String()).Short(), err)
		}
		return images.Image{}, refEntry{}, registryError(pr, err)
	}
	in.emit(images.Progress{ID: pr.display, Phase: images.PhaseResolved})
	sm, err := in.image(ctx, img)
	if err != nil {
		in.abort()
		return images.Image{}, refEntry{}, registryError(pr, err)
	}
	entry := refEntry{Digest: sm.digest, MediaType: string(sm.mediaType), RepoDigest: content.Digest(desc.Digest.String()), Updated: time.Now().UTC()}
	if err := in.commit(map[string]refEntry{pr.display: entry}); err != nil {
		in.abort()
		return images.Image{}, refEntry{}, err
	}
	out, err := s.imageFor(pr.display, entry)
	return out, entry, err
}

func platformString(p v1.Platform) string {
	return images.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}.String()
}

// registryError turns ggcr's transport errors into typed errors that tell
// the user what to do.
func registryError(pr parsedRef, err error) error {
	reg := pr.ref.Context().RegistryStr()
	var te *transport.Error
	if !errors.As(err, &te) {
		var ue *url.Error
		if errors.As(err, &ue) && !errors.Is(err, context.Canceled) {
			return errdefs.Unavailable("%v: registry %s cannot be reached", err, reg)
		}
		return err
	}
	switch te.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return errdefs.InvalidArgument("%v: registry %s refused access (HTTP %d); log in with `berth registry login %s`, or check the name", err, reg, te.StatusCode, reg)
	case http.StatusNotFound:
		return errdefs.NotFound("%v", err)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return errdefs.Unavailable("%v: registry %s is unavailable (HTTP %d), try again later", err, reg, te.StatusCode)
	}
	return err
}

// Push implements images.Service: the layers go up in parallel (at most
// PullParallelism at once), each reporting its own progress, then the
// config and the manifest.
func (s *Service) Push(ctx context.Context, ref string, _ images.PushOptions, progress images.ProgressFunc) error {
	pr, err := parseRef(ref, s.opts.InsecureRegistries)
	if err != nil {
		return err
	}
	d, _, err := s.resolve(ref)
	if err != nil {
		return err
	}
	release := s.hold([]content.Digest{d})
	defer release()
	si, err := loadManifest(s.store, d)
	if err != nil {
		return err
	}
	release2 := s.hold(si.blobs())
	defer release2()
	img, err := si.image()
	if err != nil {
		return err
	}
	emit := s.newIngestion(progress).emit
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.PullParallelism)
	for _, l := range layers {
		g.Go(func() error {
			h, err := l.Digest()
			if err != nil {
				return err
			}
			id := h.String()
			updates := make(chan v1.Update, 16)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for u := range updates {
					if u.Error == nil {
						emit(images.Progress{ID: id, Phase: images.PhaseUploading, Current: u.Complete, Total: u.Total})
					}
				}
			}()
			err = remote.WriteLayer(pr.ref.Context(), l, s.remoteOptions(gctx, remote.WithProgress(updates))...)
			<-done
			if err != nil {
				return fmt.Errorf("layer %s: %w", content.Digest(id).Short(), err)
			}
			size, _ := l.Size()
			emit(images.Progress{ID: id, Phase: images.PhasePushed, Current: size, Total: size})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("push %s: %w", pr.display, registryError(pr, err))
	}
	// The layers are there; this uploads the config and the manifest.
	if err := remote.Write(pr.ref, img, s.remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("push %s: %w", pr.display, registryError(pr, err))
	}
	emit(images.Progress{ID: pr.display, Phase: images.PhasePushed})
	s.log.Info("pushed image", "ref", pr.display, "digest", d)
	return nil
}
