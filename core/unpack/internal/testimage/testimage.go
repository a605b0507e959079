// Package testimage builds OCI image layouts for unpack's tests and
// benchmark with go-containerregistry: one image that exercises every kind
// of layer entry and whiteout, and one bulky image for timing.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Ref is the ref.name annotation the layouts carry (umoci's --image dir:Ref).
const Ref = "test"

// Entry is one tar entry.
type Entry struct {
	Name, Body, Link string
	Type             byte
	Mode             int64
	UID, GID         int
	Xattrs           map[string]string
	Major, Minor     int64
}

// F, D, S and H make a file, a directory, a symlink and a hardlink.
func F(name, body string, mode int64) Entry {
	return Entry{Name: name, Body: body, Type: tar.TypeReg, Mode: mode}
}
func D(name string, mode int64) Entry { return Entry{Name: name, Type: tar.TypeDir, Mode: mode} }
func S(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Link: target, Mode: 0o777}
}
func H(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeLink, Link: target, Mode: 0o644}
}

// Tar returns the tar of entries.
func Tar(entries []Entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1650000000, 0)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Link, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: mt, Devmajor: e.Major, Devminor: e.Minor, Format: tar.FormatPAX}
		if e.Type == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if len(e.Xattrs) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range e.Xattrs {
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(fmt.Sprintf("testimage: %s: %v", e.Name, err))
		}
		if e.Type == tar.TypeReg {
			_, _ = tw.Write([]byte(e.Body))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

// Image builds an image of layers (gzip-compressed).
func Image(layers ...[]Entry) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for i, entries := range layers {
		raw := Tar(entries)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
			tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Cmd = []string{"/bin/sh"}
	return mutate.ConfigFile(img, cfg)
}

// WriteLayout writes img to an OCI layout at dir, named Ref.
func WriteLayout(dir string, img v1.Image) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": Ref}))
}

// ReadLayout returns the image named Ref in the layout at dir.
func ReadLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == Ref {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("layout %s has no image named %q", dir, Ref)
}

// Rich returns the layers of an image with every kind of entry: modes
// (setuid, sticky), owners, xattrs, symlinks, hardlinks, a FIFO, device
// nodes (root), and in later layers changed content, modes and owners,
// whiteouts of files and directories, opaque directories, and a directory
// replaced by a symlink.
func Rich(withDevices bool) [][]Entry {
	big := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.IntN(256))
	}
	l1 := []Entry{
		D("etc/", 0o755), F("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644), F("etc/removeme", "x", 0o644),
		F("etc/shadow", "root:*:1::::::\n", 0o640),
		D("usr/", 0o755), D("usr/bin/", 0o755), F("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o4755),
		H("usr/bin/tool-alias", "usr/bin/tool"), S("usr/bin/sh", "/bin/busybox"), S("usr/bin/rel", "../bin/tool"),
		D("usr/lib/", 0o755), F("usr/lib/big.bin", string(big), 0o644), F("usr/lib/empty", "", 0o600),
		{Name: "home/", Type: tar.TypeDir, Mode: 0o755}, {Name: "home/user/", Type: tar.TypeDir, Mode: 0o750, UID: 1000, GID: 1000},
		{Name: "home/user/.profile", Type: tar.TypeReg, Body: "export A=1\n", Mode: 0o644, UID: 1000, GID: 1000, Xattrs: map[string]string{"user.origin": "layer1"}},
		D("tmp/", 0o1777), {Name: "run/", Type: tar.TypeDir, Mode: 0o755}, {Name: "run/fifo", Type: tar.TypeFifo, Mode: 0o600},
		D("var/", 0o755), D("var/cache/", 0o755), F("var/cache/old1", "1", 0o644), D("var/cache/sub/", 0o755), F("var/cache/sub/old2", "2", 0o644),
		D("olddir/", 0o755), F("olddir/a", "a", 0o644), D("olddir/deep/", 0o700), F("olddir/deep/b", "b", 0o644),
		D("becomes-link/", 0o755), F("becomes-link/x", "x", 0o644),
		D("opt/", 0o755), D("opt/a/", 0o755), D("opt/a/b/", 0o755), D("opt/a/b/c/", 0o755), F("opt/a/b/c/deep.txt", "deep", 0o444),
	}
	if withDevices {
		l1 = append(l1, D("dev/", 0o755),
			Entry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3},
			Entry{Name: "dev/loop9", Type: tar.TypeBlock, Mode: 0o660, Major: 7, Minor: 9, GID: 6})
	}
	l2 := []Entry{
		F("etc/.wh.removeme", "", 0o644),
		F("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0o644),
		{Name: "etc/shadow", Type: tar.TypeReg, Body: "root:*:1::::::\n", Mode: 0o600, UID: 0, GID: 42},
		F("var/cache/.wh..wh..opq", "", 0o644), F("var/cache/new", "fresh", 0o644),
		F(".wh.becomes-link", "", 0o644), S("becomes-link", "usr/lib"),
		F("usr/bin/tool2", "second", 0o755), H("usr/bin/tool2-alias", "usr/bin/tool2"),
		{Name: "usr/lib/attrs", Type: tar.TypeReg, Body: "xattrs", Mode: 0o644, Xattrs: map[string]string{"user.a": "1", "user.b": "two"}},
	}
	l3 := []Entry{
		F(".wh.olddir", "", 0o644),
		D("olddir/", 0o711), F("olddir/reborn", "new life", 0o644),
		F("usr/lib/.wh.empty", "", 0o644),
		F("opt/a/b/c/deep.txt", "deeper", 0o644),
	}
	return [][]Entry{l1, l2, l3}
}

// Bulk returns layers totalling about total bytes of file data: mostly
// text-like, compressible content (as real images are), in files of 1 KiB
// to 1 MiB across many directories.
func Bulk(layers int, total int64) [][]Entry {
	r := rand.New(rand.NewPCG(7, 11))
	words := []string{"berth", "layer", "snapshot", "overlay", "container", "image", "kernel", "module", "library", "binary", "config", "socket", "\n", "0x1f8b", "func", "return", "{", "}"}
	var out [][]Entry
	per := total / int64(layers)
	for l := range layers {
		var entries []Entry
		var size int64
		for d := 0; size < per; d++ {
			dir := fmt.Sprintf("l%d/d%03d/", l, d)
			entries = append(entries, D(dir, 0o755))
			for f := 0; f < 20 && size < per; f++ {
				n := 1024 << r.IntN(11) // 1 KiB .. 1 MiB
				var b bytes.Buffer
				for b.Len() < n {
					if r.IntN(8) == 0 {
						b.WriteByte(byte(r.IntN(256)))
					}
					b.WriteString(words[r.IntN(len(words))])
					b.WriteByte(' ')
				}
				entries = append(entries, F(fmt.Sprintf("%sf%02d", dir, f), b.String()[:n], 0o644))
				size += int64(n)
			}
		}
		if l > 0 {
			entries = append(entries, F(fmt.Sprintf("l%d/.wh.d000", l-1), "", 0o644))
		}
		out = append(out, entries)
	}
	return out
}
