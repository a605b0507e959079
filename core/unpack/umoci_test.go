package unpack

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/core/unpack/internal/testimage"
	"github.com/berth-dev/berth/plugins/snapshot-apfs/apfs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/mountutil"
)

// LayersOf turns a go-containerregistry image into unpack layers.
func layersOf(t *testing.T, img v1.Image) []Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	// Diff IDs come from the config, as the image service has them.
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []Layer
	for i, l := range ls {
		mt, err1 := l.MediaType()
		dg, err2 := l.Digest()
		size, err3 := l.Size()
		if err := firstErr(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		out = append(out, Layer{MediaType: string(mt), Digest: dg.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), Size: size, Open: l.Compressed})
	}
	return out
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// TestMatchesUmoci unpacks one image with umoci (from an OCI layout) and
// with core/unpack (pulled from a registry on loopback) into
// snapshot-overlay and into snapshot-apfs, and compares the trees entry by
// entry.
func TestMatchesUmoci(t *testing.T) {
	requireRoot(t)
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		t.Fatalf("umoci is the reference for this check; install it (scripts/install-deps.sh): %v", err)
	}
	work := t.TempDir()
	img, err := testimage.Image(testimage.Rich(true)...)
	if err != nil {
		t.Fatal(err)
	}
	layoutDir := filepath.Join(work, "layout")
	if err := testimage.WriteLayout(layoutDir, img); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(work, "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", layoutDir+":"+testimage.Ref, bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}

	// Ours pulls the same image from a registry on loopback.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/test/rich:latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push to the loopback registry: %v", err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull from the loopback registry: %v", err)
	}
	want := describeTree(t, filepath.Join(bundle, "rootfs"))
	if len(want.entries) < 30 {
		t.Fatalf("umoci's tree has only %d entries; the test image did not unpack as expected", len(want.entries))
	}
	layers := layersOf(t, pulled)
	t.Run("overlay", func(t *testing.T) {
		sn := newOverlay(t)
		compareWithUmoci(t, sn, layers, want, func(ms []mount.Mount) string {
			ours := t.TempDir()
			undo, err := mountutil.MountAll(ms, ours)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = undo() })
			return ours
		})
	})
	t.Run("apfs", func(t *testing.T) {
		// Full trees, whiteouts deleting: the view is the snapshot's dir.
		sn := apfs.New(nil)
		if err := sn.Configure(context.Background(), plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sn.Close() })
		compareWithUmoci(t, sn, layers, want, func(ms []mount.Mount) string { return ms[0].Source })
	})
}

// compareWithUmoci unpacks layers into sn, presents a view of the top
// layer with present, and compares it with umoci's tree.
func compareWithUmoci(t *testing.T, sn snapshot.Snapshotter, layers []Layer, want tree, present func([]mount.Mount) string) {
	ctx := context.Background()
	res, err := Unpack(ctx, sn, layers, Options{})
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	ms, err := sn.View(ctx, "compare", res.ChainID)
	if err != nil {
		t.Fatal(err)
	}
	got := describeTree(t, present(ms))
	var diffs []string
	for p, w := range want.entries {
		if g, ok := got.entries[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: missing (umoci: %s)", p, w))
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s:\n  ours  %s\n  umoci %s", p, g, w))
		}
	}
	for p, g := range got.entries {
		if _, ok := want.entries[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: extra (ours: %s)", p, g))
		}
	}
	if !slices.Equal(got.linkGroups, want.linkGroups) {
		diffs = append(diffs, fmt.Sprintf("hardlink groups: ours %v, umoci %v", got.linkGroups, want.linkGroups))
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("core/unpack differs from umoci unpack:\n%s", strings.Join(diffs, "\n"))
	}
	t.Logf("compared %d entries and %d hardlink groups", len(want.entries), len(want.linkGroups))
}

type tree struct {
	entries    map[string]string
	linkGroups []string // sorted "a=b=c" groups of paths sharing an inode
}

// describeTree describes every entry below root (root itself excluded):
// type, permission bits, owner, size and content hash, link target,
// device numbers and extended attributes (overlayfs's own excepted).
func describeTree(t *testing.T, root string) tree {
	t.Helper()
	tr := tree{entries: map[string]string{}}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		d := fmt.Sprintf("type=%o perm=%04o uid=%d gid=%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" size=%d sha256=%x", n, h.Sum(nil)[:8])
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			d += " -> " + l
		case unix.S_IFCHR, unix.S_IFBLK:
			d += fmt.Sprintf(" dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if x := xattrs(p); x != "" {
			d += " xattrs=" + x
		}
		tr.entries[rel] = d
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	for _, paths := range inodes {
		if len(paths) > 1 {
			sort.Strings(paths)
			tr.linkGroups = append(tr.linkGroups, strings.Join(paths, "="))
		}
	}
	sort.Strings(tr.linkGroups)
	return tr
}

func xattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if strings.HasPrefix(name, "trusted.overlay.") || name == "security.selinux" {
			continue
		}
		v := make([]byte, 4096)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		out = append(out, name+"="+string(v[:vn]))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
