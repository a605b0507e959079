//go:build unix

package archive

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	// xattrPAXPrefix starts the PAX records that carry extended attributes.
	xattrPAXPrefix = "SCHILY.xattr."
	// overlayXattrPrefix is overlayfs's private namespace; entries of a
	// layer may not set it (they would forge whiteouts or redirects).
	overlayXattrPrefix = "trusted.overlay."
	overlayOpaqueXattr = "trusted.overlay.opaque"
)

// Apply streams the layer blob r into the directory root, which must exist,
// and returns what it applied. See the package comment for what is applied
// and refused. ctx is checked between entries.
func Apply(ctx context.Context, root string, r io.Reader, opts Options) (Result, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	var res Result
	blob := &countingReader{r: r, progress: opts.Progress}
	var blobHash *verifier
	var src io.Reader = blob
	if opts.Digest != "" {
		v, err := newVerifier(opts.Digest)
		if err != nil {
			return res, errdefs.InvalidArgument("layer digest %q: %v", opts.Digest, err)
		}
		blobHash = v
		src = io.TeeReader(blob, v.h)
	}
	tarStream, err := Decompress(opts.MediaType, src)
	if err != nil {
		return res, err
	}
	defer tarStream.Close()

	diffAlgo := "sha256"
	if opts.DiffID != "" {
		algo, _, ok := strings.Cut(opts.DiffID, ":")
		if !ok {
			return res, errdefs.InvalidArgument("diff ID %q is not <algorithm>:<hex>", opts.DiffID)
		}
		diffAlgo = algo
	}
	diffHash, err := newHash(diffAlgo)
	if err != nil {
		return res, errdefs.InvalidArgument("diff ID %q: %v", opts.DiffID, err)
	}
	uncompressed := &countingReader{r: tarStream}
	tee := io.TeeReader(uncompressed, diffHash)

	t, err := openTree(root, opts)
	if err != nil {
		return res, err
	}
	defer t.close()
	t.ctx = ctx

	// Decompression and hashing run in a goroutine of their own, a few
	// chunks ahead of the writes: on two cores, unpacking costs about the
	// larger of the two rather than their sum.
	ra := newReadahead(tee)
	stop := func(err error) error {
		ra.Close()
		return err
	}

	tr := tar.NewReader(ra)
	for {
		if err := ctx.Err(); err != nil {
			return res, stop(err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, stop(errdefs.InvalidArgument("layer is not a valid tar (after %d entries): %v", res.Entries, err))
		}
		if err := t.apply(hdr, tr); err != nil {
			return res, stop(err)
		}
		res.Entries++
	}
	if err := t.finish(); err != nil {
		return res, stop(err)
	}
	// The tar's end-of-archive blocks and any padding after them are part of
	// the diff ID.
	if _, err := io.Copy(io.Discard, ra); err != nil {
		return res, stop(errdefs.InvalidArgument("read the end of the layer: %v", err))
	}
	if err := ra.wait(); err != nil {
		return res, errdefs.InvalidArgument("read the end of the layer: %v", err)
	}
	res.Size = uncompressed.n
	res.DiffID = diffAlgo + ":" + hex.EncodeToString(diffHash.Sum(nil))
	if opts.DiffID != "" && res.DiffID != opts.DiffID {
		return res, errdefs.InvalidArgument("layer diff ID mismatch: expected %s, the uncompressed content is %s", opts.DiffID, res.DiffID)
	}
	if blobHash != nil {
		// Read what the decompressor left (a gzip trailer it did not need).
		if _, err := io.Copy(io.Discard, blob); err != nil {
			return res, fmt.Errorf("read the rest of the layer blob: %w", err)
		}
		if got := blobHash.sum(); got != opts.Digest {
			return res, errdefs.InvalidArgument("layer digest mismatch: expected %s, the blob is %s", opts.Digest, got)
		}
	}
	res.Read = blob.n
	if opts.Progress != nil {
		opts.Progress(blob.n)
	}
	return res, nil
}

// cleanName turns a tar entry name into a clean path relative to the root,
// "" for the root itself; a name that climbs out of the root is an error.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	rel := strings.TrimLeft(name, "/")
	rel = path.Clean(rel)
	if rel == "." {
		return "", nil
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("path climbs out of the layer root")
	}
	return rel, nil
}

// splitRel splits a clean relative path into its parent ("" for the root)
// and base name.
func splitRel(rel string) (string, string) {
	dir, base := path.Split(rel)
	return strings.TrimSuffix(dir, "/"), base
}

// apply applies one entry.
func (t *tree) apply(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return unsafe(hdr.Name, "%v", err)
	}
	if rel == "" {
		// The root's own entry: the snapshotter owns the root directory.
		t.log.Trace("skipping the root's own entry", "entry", hdr.Name)
		return nil
	}
	dir, base := splitRel(rel)

	if strings.HasPrefix(base, whiteoutPrefix) {
		return t.whiteout(hdr.Name, dir, base)
	}
	t.wrote(rel)

	pfd, err := t.dir(hdr.Name, dir, true)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return t.mkdir(hdr, pfd, dir, base)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return t.file(hdr, pfd, rel, base, r)
	case tar.TypeSymlink:
		if err := t.create(hdr.Name, pfd, dir, base, func() error { return symlinkat(hdr.Linkname, pfd, base) }); err != nil {
			return entryErr(hdr.Name, fmt.Errorf("symlink to %q: %w", hdr.Linkname, err))
		}
		return t.attrs(hdr, pfd, rel, base, -1)
	case tar.TypeLink:
		return t.hardlink(hdr, pfd, dir, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if hdr.Typeflag != tar.TypeFifo && !t.privileged {
			t.log.Debug("skipping device node: not running as root", "entry", hdr.Name)
			return nil
		}
		if err := t.create(hdr.Name, pfd, dir, base, func() error {
			return mknodat(pfd, t.path(rel), base, nodeMode(hdr), hdr.Devmajor, hdr.Devminor)
		}); err != nil {
			return entryErr(hdr.Name, fmt.Errorf("mknod: %w", err))
		}
		return t.attrs(hdr, pfd, rel, base, -1)
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return unsafe(hdr.Name, "unsupported tar entry type %q", string(hdr.Typeflag))
	}
}

// whiteout applies a ".wh." entry in directory dir.
func (t *tree) whiteout(entry, dir, base string) error {
	if base == whiteoutOpaque {
		pfd, err := t.dir(entry, dir, true)
		if err != nil {
			return err
		}
		if t.mode == WhiteoutOverlay {
			if err := fsetxattr(pfd, overlayOpaqueXattr, []byte("y")); err != nil {
				return entryErr(entry, fmt.Errorf("mark %q opaque: %w", dir, err))
			}
			return nil
		}
		// Delete everything in dir that this layer did not write.
		names, err := readDirNames(pfd)
		if err != nil {
			return entryErr(entry, err)
		}
		for _, n := range names {
			child := path.Join(dir, n)
			if t.wroteUnder(child) {
				continue
			}
			if err := removeAllAt(pfd, n); err != nil {
				return entryErr(entry, err)
			}
			t.forget(child)
		}
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, whiteoutPrefix) {
		return unsafe(entry, "whiteout of %q is not a whiteout of an entry", name)
	}
	pfd, err := t.dir(entry, dir, t.mode == WhiteoutOverlay)
	if err != nil {
		if t.mode == WhiteoutDelete && isNotExist(err) {
			return nil // nothing to delete
		}
		return err
	}
	target := path.Join(dir, name)
	if t.wroteUnder(target) {
		// The layer wrote name itself: a whiteout hides only lower layers,
		// and what this layer wrote stays (OCI image spec).
		return t.hideLower(entry, pfd, target, name)
	}
	if err := removeAllAt(pfd, name); err != nil && !isNotExist(err) {
		return entryErr(entry, err)
	}
	t.forget(path.Join(dir, name))
	if t.mode == WhiteoutOverlay {
		if err := mknodat(pfd, t.path(path.Join(dir, name)), name, charDevice, 0, 0); err != nil {
			return entryErr(entry, fmt.Errorf("write overlay whiteout: %w", err))
		}
	}
	delete(t.written, path.Join(dir, name))
	return nil
}

// hideLower hides what lower layers have at target (name in pfd), which
// this layer wrote too: a directory keeps this layer's entries only; a
// non-directory written by the layer hides the lower entry already.
func (t *tree) hideLower(entry string, pfd int, target, name string) error {
	var st statInfo
	exists, err := lstatAt(pfd, name, &st)
	if err != nil {
		return entryErr(entry, err)
	}
	if !exists || !st.isDir {
		return nil
	}
	fd, err := openDirAt(pfd, name)
	if err != nil {
		return entryErr(entry, err)
	}
	defer closeFD(fd)
	if t.mode == WhiteoutOverlay {
		if err := fsetxattr(fd, overlayOpaqueXattr, []byte("y")); err != nil {
			return entryErr(entry, fmt.Errorf("mark %q opaque: %w", target, err))
		}
		return nil
	}
	names, err := readDirNames(fd)
	if err != nil {
		return entryErr(entry, err)
	}
	for _, n := range names {
		child := path.Join(target, n)
		if t.wroteUnder(child) {
			continue
		}
		if err := removeAllAt(fd, n); err != nil {
			return entryErr(entry, err)
		}
		t.forget(child)
	}
	return nil
}

// wrote records that this layer wrote rel (and so has entries below each
// of its ancestors).
func (t *tree) wrote(rel string) {
	t.written[rel] = struct{}{}
	for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := t.below[d]; ok {
			return
		}
		t.below[d] = struct{}{}
	}
}

// wroteUnder reports whether this layer wrote p or anything below it.
func (t *tree) wroteUnder(p string) bool {
	if _, ok := t.written[p]; ok {
		return true
	}
	_, ok := t.below[p]
	return ok
}

// mkdir applies a directory entry: an existing directory is kept (its
// content belongs to lower layers or earlier entries), anything else there is
// replaced.
func (t *tree) mkdir(hdr *tar.Header, pfd int, dir, base string) error {
	rel := path.Join(dir, base)
	var st statInfo
	exists, err := lstatAt(pfd, base, &st)
	if err != nil {
		return entryErr(hdr.Name, err)
	}
	// In an overlay upper dir, a non-directory (a whiteout, a file) hides
	// whatever lower layers have here; the directory replacing it must
	// keep hiding their entries, so it is made opaque.
	opaque := false
	if exists && !st.isDir {
		if err := removeAllAt(pfd, base); err != nil {
			return entryErr(hdr.Name, err)
		}
		exists = false
		opaque = t.mode == WhiteoutOverlay
	}
	if !exists {
		if err := mkdirat(pfd, base, 0o700); err != nil {
			return entryErr(hdr.Name, fmt.Errorf("mkdir: %w", err))
		}
	}
	fd, err := openDirAt(pfd, base)
	if err != nil {
		return entryErr(hdr.Name, err)
	}
	defer closeFD(fd)
	if opaque {
		if err := fsetxattr(fd, overlayOpaqueXattr, []byte("y")); err != nil {
			return entryErr(hdr.Name, fmt.Errorf("mark opaque: %w", err))
		}
	}
	if err := t.attrs(hdr, pfd, rel, base, fd); err != nil {
		return err
	}
	// Times last, once the layer's children are in.
	t.dirTimes = append(t.dirTimes, dirTime{rel: rel, entry: hdr.Name, atime: accessTime(hdr), mtime: hdr.ModTime})
	return nil
}

// file applies a regular file entry.
func (t *tree) file(hdr *tar.Header, pfd int, rel, base string, r io.Reader) error {
	fd := -1
	if err := t.create(hdr.Name, pfd, path.Dir(rel), base, func() (err error) { fd, err = createAt(pfd, base); return err }); err != nil {
		return entryErr(hdr.Name, fmt.Errorf("create: %w", err))
	}
	f := os.NewFile(uintptr(fd), t.path(rel))
	defer f.Close()
	if _, err := io.CopyBuffer(fileWriter{f: f, ctx: t.ctx}, r, t.buf); err != nil {
		return entryErr(hdr.Name, fmt.Errorf("write content: %w", err))
	}
	return t.attrs(hdr, pfd, rel, base, fd)
}

// fileWriter hides os.File's ReadFrom so CopyBuffer uses our buffer, and
// stops a large file's copy when ctx is cancelled.
type fileWriter struct {
	f   *os.File
	ctx context.Context
}

func (w fileWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.f.Write(p)
}

// hardlink applies a hardlink entry; its target must be inside the root and
// must not be a directory.
func (t *tree) hardlink(hdr *tar.Header, pfd int, dir, base string) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return unsafe(hdr.Name, "hardlink target %q: %v", hdr.Linkname, err)
	}
	if target == "" {
		return unsafe(hdr.Name, "hardlink to the layer root")
	}
	rel := path.Join(dir, base)
	if target == rel {
		return unsafe(hdr.Name, "hardlink to itself")
	}
	tdir, tbase := splitRel(target)
	tfd := t.rootFD
	if tdir != "" {
		fd, err := t.open(hdr.Name, tdir, false)
		if err != nil {
			if isNotExist(err) {
				return unsafe(hdr.Name, "hardlink target %q is not in the layer root", hdr.Linkname)
			}
			return err
		}
		defer closeFD(fd)
		tfd = fd
	}
	var st statInfo
	exists, err := lstatAt(tfd, tbase, &st)
	if err != nil {
		return entryErr(hdr.Name, err)
	}
	if !exists {
		return unsafe(hdr.Name, "hardlink target %q is not in the layer root", hdr.Linkname)
	}
	if st.isDir {
		return unsafe(hdr.Name, "hardlink target %q is a directory", hdr.Linkname)
	}
	if err := t.create(hdr.Name, pfd, dir, base, func() error { return linkat(tfd, tbase, pfd, base) }); err != nil {
		return entryErr(hdr.Name, fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err))
	}
	return nil
}

// create runs mk, which creates base in pfd and fails with EEXIST when
// something is there; that something is then removed and mk runs again.
// (Trying first saves a stat per entry: most entries are new.)
func (t *tree) create(entry string, pfd int, dir, base string, mk func() error) error {
	err := mk()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := t.replace(entry, pfd, dir, base); err != nil {
		return err
	}
	return mk()
}

// replace removes whatever is at base in pfd, so a new non-directory entry
// can be created there.
func (t *tree) replace(entry string, pfd int, dir, base string) error {
	var st statInfo
	exists, err := lstatAt(pfd, base, &st)
	if err != nil {
		return entryErr(entry, err)
	}
	if !exists {
		return nil
	}
	if err := removeAllAt(pfd, base); err != nil {
		return entryErr(entry, err)
	}
	if st.isDir {
		t.forget(path.Join(dir, base))
	}
	return nil
}

// attrs sets owner, mode, xattrs and (for non-directories) times of the
// entry just created at base in pfd; fd is its open descriptor, or -1.
func (t *tree) attrs(hdr *tar.Header, pfd int, rel, base string, fd int) error {
	isLink := hdr.Typeflag == tar.TypeSymlink
	if t.privileged {
		if err := chownAt(pfd, base, fd, hdr.Uid, hdr.Gid); err != nil {
			return entryErr(hdr.Name, fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err))
		}
	}
	if !isLink {
		if err := chmodAt(pfd, base, fd, uint32(hdr.Mode)&0o7777); err != nil {
			return entryErr(hdr.Name, fmt.Errorf("chmod %o: %w", hdr.Mode, err))
		}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPAXPrefix)
		if !ok {
			continue
		}
		if strings.HasPrefix(name, overlayXattrPrefix) {
			t.log.Debug("dropping overlayfs attribute set by the layer", "entry", hdr.Name, "xattr", name)
			continue
		}
		if !t.privileged && (strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")) {
			t.log.Debug("skipping privileged xattr: not running as root", "entry", hdr.Name, "xattr", name)
			continue
		}
		var err error
		if fd >= 0 {
			err = fsetxattr(fd, name, []byte(v))
		} else {
			err = lsetxattr(t.path(rel), name, []byte(v))
		}
		if err != nil {
			if isNotSupported(err) || (isLink && isPermission(err)) {
				t.log.Debug("xattr not supported here; skipped", "entry", hdr.Name, "xattr", name, "error", err)
				continue
			}
			return entryErr(hdr.Name, fmt.Errorf("set xattr %s: %w", name, err))
		}
	}
	if hdr.Typeflag != tar.TypeDir {
		if err := utimesAt(pfd, base, accessTime(hdr), hdr.ModTime); err != nil {
			return entryErr(hdr.Name, fmt.Errorf("set times: %w", err))
		}
	}
	return nil
}

// finish sets the times of the directories the layer listed.
func (t *tree) finish() error {
	for i := len(t.dirTimes) - 1; i >= 0; i-- {
		d := t.dirTimes[i]
		dir, base := splitRel(d.rel)
		pfd, err := t.dir(d.entry, dir, false)
		if err != nil {
			if isNotExist(err) {
				continue // deleted by a later whiteout
			}
			return err
		}
		if err := utimesAt(pfd, base, d.atime, d.mtime); err != nil && !isNotExist(err) {
			return entryErr(d.entry, fmt.Errorf("set times: %w", err))
		}
	}
	return nil
}

func accessTime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

type dirTime struct {
	rel, entry   string
	atime, mtime time.Time
}

// countingReader counts bytes and reports progress every MiB.
type countingReader struct {
	r        io.Reader
	n        int64
	reported int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && c.n-c.reported >= 1<<20 {
		c.reported = c.n
		c.progress(c.n)
	}
	return n, err
}

type verifier struct {
	algo string
	h    hash.Hash
}

func newVerifier(digest string) (*verifier, error) {
	algo, hexPart, ok := strings.Cut(digest, ":")
	if !ok || hexPart == "" {
		return nil, errors.New("not <algorithm>:<hex>")
	}
	h, err := newHash(algo)
	if err != nil {
		return nil, err
	}
	return &verifier{algo: algo, h: h}, nil
}

func (v *verifier) sum() string { return v.algo + ":" + hex.EncodeToString(v.h.Sum(nil)) }

func newHash(algo string) (hash.Hash, error) {
	switch algo {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unsupported digest algorithm %q", algo)
}
