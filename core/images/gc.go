package images

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// markLocked returns every blob reachable from a name, a lease or an
// operation in flight. s.mu must be held.
func (s *Service) markLocked() map[content.Digest]bool {
	marked := map[content.Digest]bool{}
	for d := range s.inflight {
		marked[d] = true
	}
	for d := range s.ix.roots() {
		marked[d] = true
		si, err := loadManifest(s.store, d)
		if err != nil {
			continue // a root whose manifest is gone holds nothing more
		}
		for _, b := range si.blobs() {
			marked[b] = true
		}
	}
	return marked
}

// collect deletes the candidates (every blob when all is set) that nothing
// reaches, and reports what went.
func (s *Service) collect(_ context.Context, all bool, candidates []content.Digest) (images.RemoveResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marked := s.markLocked()
	var res images.RemoveResult
	del := func(d content.Digest, size int64) error {
		if marked[d] {
			return nil
		}
		if err := s.store.Delete(d); err != nil {
			return err
		}
		delete(s.summary, d)
		res.Deleted = append(res.Deleted, string(d))
		res.BytesFreed += size
		return nil
	}
	var err error
	if all {
		err = s.store.Walk(del)
	} else {
		seen := map[content.Digest]bool{}
		for _, d := range candidates {
			if seen[d] {
				continue
			}
			seen[d] = true
			size, ierr := s.store.Info(d)
			if ierr != nil {
				continue // already gone
			}
			if err = del(d, size); err != nil {
				break
			}
		}
	}
	slices.Sort(res.Deleted)
	return res, err
}

// Prune implements images.Service.
func (s *Service) Prune(ctx context.Context) (images.RemoveResult, error) {
	res, err := s.collect(ctx, true, nil)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	s.log.Info("pruned image store", "blobs", len(res.Deleted), "bytes", res.BytesFreed)
	return res, nil
}

// Remove implements images.Service.
func (s *Service) Remove(ctx context.Context, ref string, opts images.RemoveOptions) (images.RemoveResult, error) {
	d, names, err := s.resolve(ref)
	if err != nil {
		return images.RemoveResult{}, err
	}
	if len(names) > 1 && !opts.Force {
		return images.RemoveResult{}, errdefs.InvalidState("image %s has several names (%s); remove them one by one or force with -f",
			d.Short(), strings.Join(names, ", "))
	}
	ix := s.snapshot()
	remaining := slices.DeleteFunc(ix.namesOf(d), func(n string) bool { return slices.Contains(names, n) })
	leases := ix.leasesOf(d)
	var containers []string
	for _, l := range leases {
		if id, ok := strings.CutPrefix(l, images.ContainerLease); ok {
			containers = append(containers, id)
		}
	}
	if len(remaining) == 0 && len(containers) > 0 && !opts.Force {
		return images.RemoveResult{}, errdefs.InvalidState("image %s (%s) is used by container(s) %s; remove them first or force with -f",
			strings.Join(names, ", "), d.Short(), strings.Join(containers, ", "))
	}
	last := len(remaining) == 0 && len(leases) == 0
	var si *storedImage
	if last {
		if si, err = loadManifest(s.store, d); err == nil {
			if err := s.runHooks(ctx, d, si); err != nil {
				return images.RemoveResult{}, fmt.Errorf("remove %s: %w", ref, err)
			}
		}
	}
	if err := s.update(func(ix *index) error {
		for _, n := range names {
			delete(ix.Refs, n)
		}
		return nil
	}); err != nil {
		return images.RemoveResult{}, err
	}
	res := images.RemoveResult{Untagged: names}
	if last {
		candidates := []content.Digest{d}
		if si != nil {
			candidates = append(candidates, si.blobs()...)
		}
		gc, err := s.collect(ctx, false, candidates)
		res.Deleted, res.BytesFreed = gc.Deleted, gc.BytesFreed
		if err != nil {
			return res, fmt.Errorf("remove %s: %w", ref, err)
		}
	}
	s.log.Info("removed image", "names", names, "digest", d, "blobs_deleted", len(res.Deleted))
	return res, nil
}

func (s *Service) runHooks(ctx context.Context, d content.Digest, si *storedImage) error {
	s.mu.Lock()
	hooks := slices.Clone(s.hooks)
	s.mu.Unlock()
	if len(hooks) == 0 {
		return nil
	}
	layers, err := s.layersOf(si)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		if err := h(ctx, string(d), layers); err != nil {
			return err
		}
	}
	return nil
}

// AddLease makes lease id hold the image ref names, so Remove and Prune
// keep its blobs (and refuse to remove its last name, for container
// leases, unless forced). Adding the same image twice is harmless.
func (s *Service) AddLease(_ context.Context, id, ref string) error {
	if id == "" {
		return errdefs.InvalidArgument("lease id is empty")
	}
	d, _, err := s.resolve(ref)
	if err != nil {
		return err
	}
	return s.update(func(ix *index) error {
		if !slices.Contains(ix.Leases[id], d) {
			ix.Leases[id] = append(ix.Leases[id], d)
		}
		return nil
	})
}

// DeleteLease ends lease id and deletes the blobs only it held. Deleting
// an unknown lease is not an error.
func (s *Service) DeleteLease(ctx context.Context, id string) error {
	var held []content.Digest
	if err := s.update(func(ix *index) error {
		held = ix.Leases[id]
		delete(ix.Leases, id)
		return nil
	}); err != nil {
		return err
	}
	var candidates []content.Digest
	for _, d := range held {
		if si, err := loadManifest(s.store, d); err == nil {
			if len(s.snapshot().namesOf(d)) == 0 && len(s.snapshot().leasesOf(d)) == 0 {
				if err := s.runHooks(ctx, d, si); err != nil {
					return err
				}
			}
			candidates = append(candidates, si.blobs()...)
		}
		candidates = append(candidates, d)
	}
	if len(candidates) == 0 {
		return nil
	}
	_, err := s.collect(ctx, false, candidates)
	return err
}
