package images

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
)

// importEpoch is the timestamp of every file in an imported layer and of
// the image itself, so importing the same directory twice gives the same
// digest.
var importEpoch = time.Unix(0, 0).UTC()

// Import implements images.Service: the directory becomes one gzip layer
// of an OCI image (files with their modes and owners, symlinks kept,
// timestamps zeroed), with the config given.
func (s *Service) Import(ctx context.Context, opts images.ImportOptions) (images.Image, error) {
	if opts.Name == "" {
		return images.Image{}, errdefs.InvalidArgument("import: the image needs a name")
	}
	pr, err := parseRef(opts.Name, s.opts.InsecureRegistries)
	if err != nil {
		return images.Image{}, err
	}
	if _, ok := pr.ref.(name.Tag); !ok {
		return images.Image{}, errdefs.InvalidArgument("import: name %q must be a tag, not a digest", opts.Name)
	}
	st, err := os.Stat(opts.Dir)
	if err != nil || !st.IsDir() {
		return images.Image{}, errdefs.InvalidArgument("import: %q is not a directory", opts.Dir)
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "import-*.tar")
	if err != nil {
		return images.Image{}, err
	}
	defer os.Remove(tmp.Name())
	if err := tarRootfs(ctx, opts.Dir, tmp); err != nil {
		_ = tmp.Close()
		return images.Image{}, fmt.Errorf("import %s: %w", opts.Dir, err)
	}
	if err := tmp.Close(); err != nil {
		return images.Image{}, err
	}
	layer, err := tarball.LayerFromFile(tmp.Name(), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return images.Image{}, fmt.Errorf("import %s: %w", opts.Dir, err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return images.Image{}, fmt.Errorf("import: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return images.Image{}, err
	}
	cf = cf.DeepCopy()
	plat := s.platform(opts.Platform)
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: importEpoch}
	c := opts.Config
	cf.Config = v1.Config{
		User: c.User, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir,
		Labels: c.Labels, StopSignal: c.StopSignal,
	}
	if len(c.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range c.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		cf.Config.Volumes = map[string]struct{}{}
		for _, v := range c.Volumes {
			cf.Config.Volumes[v] = struct{}{}
		}
	}
	cf.History = []v1.History{{Created: v1.Time{Time: importEpoch}, CreatedBy: "berth image import", Comment: "imported from a directory"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return images.Image{}, err
	}
	in := s.newIngestion(nil)
	sm, err := in.image(ctx, img)
	if err != nil {
		in.abort()
		return images.Image{}, fmt.Errorf("import %s: %w", opts.Dir, err)
	}
	entry := refEntry{Digest: sm.digest, MediaType: string(sm.mediaType), Updated: time.Now().UTC()}
	if err := in.commit(map[string]refEntry{pr.display: entry}); err != nil {
		in.abort()
		return images.Image{}, err
	}
	s.log.Info("imported image", "ref", pr.display, "dir", opts.Dir, "digest", sm.digest)
	return s.imageFor(pr.display, entry)
}

// tarRootfs writes dir as a layer tar: regular files, directories and
// symlinks with their modes and owners; other file types are refused.
func tarRootfs(ctx context.Context, dir string, w io.Writer) error {
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
		link := ""
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		case info.Mode().IsRegular(), info.IsDir():
		default:
			return fmt.Errorf("%s: %s files cannot be imported", rel, info.Mode().Type())
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = importEpoch, time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
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
