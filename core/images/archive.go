package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berth-dev/berth/core/images/content"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// Annotations naming images in an OCI layout: containerd, Docker and
// Berth write the full name in the first and the tag in the second; skopeo
// writes whatever the user gave in the second.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// Save implements images.Service: an OCI layout in a tar (FormatOCI, what
// skopeo calls oci-archive) or a docker-save tarball (FormatDocker).
func (s *Service) Save(ctx context.Context, refs []string, opts images.SaveOptions, w io.Writer) error {
	if len(refs) == 0 {
		return errdefs.InvalidArgument("save: name at least one image")
	}
	format := opts.Format
	if format == "" {
		format = images.FormatOCI
	}
	if format != images.FormatOCI && format != images.FormatDocker {
		return errdefs.InvalidArgument("save: unknown format %q (want %q or %q)", format, images.FormatOCI, images.FormatDocker)
	}
	type named struct {
		ref name.Reference
		n   string
		img v1.Image
	}
	var all []named
	for _, r := range refs {
		d, names, err := s.resolve(r)
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		release := s.hold([]content.Digest{d})
		defer release()
		si, err := loadManifest(s.store, d)
		if err != nil {
			return fmt.Errorf("save %s: %w", r, err)
		}
		releaseBlobs := s.hold(si.blobs())
		defer releaseBlobs()
		img, err := si.image()
		if err != nil {
			return fmt.Errorf("save %s: %w", r, err)
		}
		for _, n := range names {
			pr, err := parseRef(n, s.opts.InsecureRegistries)
			if err != nil {
				return err
			}
			all = append(all, named{ref: pr.ref, n: n, img: img})
		}
		if len(names) == 0 {
			return errdefs.InvalidArgument("save %s: the image has no name to save it under; tag it first", r)
		}
	}
	if format == images.FormatDocker {
		m := map[name.Reference]v1.Image{}
		for _, a := range all {
			m[a.ref] = a.img
		}
		if err := tarball.MultiRefWrite(m, w); err != nil {
			return fmt.Errorf("save: %w", err)
		}
		return nil
	}
	dir, err := os.MkdirTemp(s.tmpDir(), "save-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	for _, a := range all {
		_, tag := splitName(a.n)
		if err := p.AppendImage(a.img, layout.WithAnnotations(map[string]string{annotationImageName: a.n, annotationRefName: tag})); err != nil {
			return fmt.Errorf("save %s: %w", a.n, err)
		}
	}
	if err := tarDir(ctx, dir, w); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

// Load implements images.Service. The archive is spooled to a temp file
// (docker-save tarballs need random access), told apart by content, and all
// its images are stored before any name is set: a corrupt archive changes
// nothing.
func (s *Service) Load(ctx context.Context, r io.Reader) ([]images.Image, error) {
	f, err := os.CreateTemp(s.tmpDir(), "load-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, ctxReader{ctx: ctx, r: r}); err != nil {
		return nil, fmt.Errorf("load: reading the archive: %w", err)
	}
	entries, err := tarEntries(f.Name())
	if err != nil {
		return nil, errdefs.InvalidArgument("load: not a valid tar archive: %v", err)
	}
	var toStore []namedImage
	switch {
	case entries["manifest.json"]:
		toStore, err = dockerArchiveImages(f.Name())
	case entries["oci-layout"] && entries["index.json"]:
		dir, derr := os.MkdirTemp(s.tmpDir(), "load-")
		if derr != nil {
			return nil, derr
		}
		defer os.RemoveAll(dir)
		toStore, err = s.ociArchiveImages(f.Name(), dir)
	default:
		return nil, errdefs.InvalidArgument("load: the archive is neither a docker-save tarball (no manifest.json) nor an OCI layout (no oci-layout and index.json)")
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if len(toStore) == 0 {
		return nil, errdefs.InvalidArgument("load: the archive holds no image")
	}
	in := s.newIngestion(nil)
	names := map[string]refEntry{}
	for _, ni := range toStore {
		sm, err := in.image(ctx, ni.img)
		if err != nil {
			in.abort()
			return nil, fmt.Errorf("load %s: %w", ni.name, corruptArchive(err))
		}
		names[ni.name] = refEntry{Digest: sm.digest, MediaType: string(sm.mediaType), Updated: time.Now().UTC()}
	}
	if err := in.commit(names); err != nil {
		in.abort()
		return nil, err
	}
	var out []images.Image
	for _, ni := range toStore {
		img, err := s.imageFor(ni.name, names[ni.name])
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	s.log.Info("loaded images", "count", len(out))
	return out, nil
}

// corruptArchive makes read errors from inside an archive a user error.
func corruptArchive(err error) error {
	if errors.Is(err, errdefs.ErrInvalidArgument) || errors.Is(err, context.Canceled) {
		return err
	}
	return errdefs.InvalidArgument("corrupt archive: %v", err)
}

type namedImage struct {
	name string
	img  v1.Image
}

func dockerArchiveImages(path string) ([]namedImage, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, errdefs.InvalidArgument("manifest.json: %v", err)
	}
	var out []namedImage
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			return nil, errdefs.InvalidArgument("image %d of manifest.json (config %s) has no name (RepoTags is empty); tag it before saving", i+1, d.Config)
		}
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return nil, errdefs.InvalidArgument("manifest.json: invalid name %q: %v", t, err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return nil, errdefs.InvalidArgument("image %s: %v", t, err)
			}
			if err := verifyDiffIDs(img); err != nil {
				return nil, errdefs.InvalidArgument("image %s: %v", t, err)
			}
			out = append(out, namedImage{name: displayName(tag), img: img})
		}
	}
	return out, nil
}

// ociArchiveImages extracts OCI archive path into dir (which must outlive
// the images returned) and names its images.
func (s *Service) ociArchiveImages(path, dir string) ([]namedImage, error) {
	if err := untar(path, dir); err != nil {
		return nil, errdefs.InvalidArgument("%v", err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, errdefs.InvalidArgument("oci layout: %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, errdefs.InvalidArgument("oci layout index.json: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, errdefs.InvalidArgument("oci layout index.json: %v", err)
	}
	var out []namedImage
	for _, desc := range im.Manifests {
		n := desc.Annotations[annotationImageName]
		if n == "" {
			n = desc.Annotations[annotationRefName]
		}
		if n == "" {
			return nil, errdefs.InvalidArgument("image %s in index.json has no name (annotation %s or %s)", desc.Digest, annotationImageName, annotationRefName)
		}
		pr, err := parseRef(n, s.opts.InsecureRegistries)
		if err != nil {
			return nil, err
		}
		var img v1.Image
		switch {
		case oneOf(desc.MediaType, indexTypes):
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return nil, errdefs.InvalidArgument("index %s: %v", desc.Digest, err)
			}
			imgs, err := partial.FindImages(child, match.Platforms(s.platform(images.Platform{})))
			if err != nil || len(imgs) == 0 {
				return nil, errdefs.NotFound("index %s (%s) has no image for platform %s", desc.Digest, n, platformString(s.platform(images.Platform{})))
			}
			img = imgs[0]
		case oneOf(desc.MediaType, manifestTypes):
			if img, err = idx.Image(desc.Digest); err != nil {
				return nil, errdefs.InvalidArgument("image %s: %v", desc.Digest, err)
			}
		default:
			return nil, errdefs.InvalidArgument("image %s: unsupported media type %q", desc.Digest, desc.MediaType)
		}
		out = append(out, namedImage{name: pr.display, img: img})
	}
	return out, nil
}

// tarEntries lists the regular files of a tar archive, reading all of it
// (so a truncated archive is found before anything is stored).
func tarEntries(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(filepath.Clean(h.Name), "./")] = true
	}
	if len(out) == 0 {
		return nil, errors.New("empty archive")
	}
	return out, nil
}

// untar extracts the regular files and directories of archive path into
// dir, refusing entries that would land outside it.
func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel := filepath.Clean(h.Name)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("archive entry %q points outside the archive", h.Name)
		}
		target := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("archive entry %s: %w", h.Name, err)
			}
		default:
			return fmt.Errorf("archive entry %q: unexpected type %q in an OCI layout", h.Name, h.Typeflag)
		}
	}
}

// tarDir writes the files under dir to w as a tar, paths relative to dir.
func tarDir(ctx context.Context, dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime = time.Unix(0, 0)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
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

// verifyDiffIDs checks each layer's uncompressed content against the diff
// ID the config lists: a docker-save tarball carries no other digest of
// its layers (the manifest is computed from the files as found).
func verifyDiffIDs(img v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return fmt.Errorf("config lists %d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		got := "sha256:" + hex.EncodeToString(h.Sum(nil))
		if want := cf.RootFS.DiffIDs[i].String(); got != want {
			return fmt.Errorf("layer %d: content has diff ID %s, the config says %s (corrupt archive)", i+1, got, want)
		}
	}
	return nil
}
