package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
)

// tree makes a small root: files, a directory, a relative and an escaping
// symlink, a hard link.
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	root, outside = t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc/app"), 0o755))
	must(os.WriteFile(filepath.Join(root, "hello"), []byte("hello from the image\n"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/app/conf"), []byte("a=1\n"), 0o600))
	must(os.Link(filepath.Join(root, "etc/app/conf"), filepath.Join(root, "etc/app/conf2")))
	must(os.Symlink("app/conf", filepath.Join(root, "etc/link")))
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret\n"), 0o600))
	must(os.Symlink(outside, filepath.Join(root, "esc")))                   // absolute, outside
	must(os.Symlink("../../../../"+outside, filepath.Join(root, "etc/up"))) // climbs
	return root, outside
}

type entry struct {
	Name, Link string
	Type       byte
	Body       string
}

func readTar(t *testing.T, r io.Reader) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, entry{h.Name, h.Linkname, h.Typeflag, string(b)})
	}
}

func tarOf(t *testing.T, root, p string, opts TarOptions) ([]entry, error) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTar(&buf, root, p, opts); err != nil {
		return nil, err
	}
	return readTar(t, &buf), nil
}

func TestWriteTar(t *testing.T) {
	root, _ := tree(t)
	got, err := tarOf(t, root, "/etc", TarOptions{Name: "etc"})
	if err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{"etc/", "", tar.TypeDir, ""},
		{"etc/app/", "", tar.TypeDir, ""},
		{"etc/app/conf", "", tar.TypeReg, "a=1\n"},
		{"etc/app/conf2", "etc/app/conf", tar.TypeLink, ""},
		{"etc/link", "app/conf", tar.TypeSymlink, ""},
		{"etc/up", "../../../../" + strings.TrimPrefix(got[5].Link, "../../../../"), tar.TypeSymlink, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tar of /etc =\n %q\nwant\n %q", got, want)
	}

	// A file, under another name.
	got, err = tarOf(t, root, "hello", TarOptions{Name: "renamed"})
	if err != nil || !reflect.DeepEqual(got, []entry{{"renamed", "", tar.TypeReg, "hello from the image\n"}}) {
		t.Errorf("tar of /hello = %q, %v", got, err)
	}
	// The symlink named last is the link itself; through a symlink it is
	// resolved inside the root.
	got, err = tarOf(t, root, "/etc/link", TarOptions{Name: "link"})
	if err != nil || len(got) != 1 || got[0].Type != tar.TypeSymlink {
		t.Errorf("tar of /etc/link = %q, %v", got, err)
	}
	// Symlinks that point outside stay inside: esc/secret is the root's
	// (missing) /<outside>/secret, never the host's file.
	for _, p := range []string{"/esc/secret", "/etc/up/secret", "/../../../../../../" + "esc/secret"} {
		got, err := tarOf(t, root, p, TarOptions{Name: "secret"})
		if !errdefs.IsNotFound(err) {
			t.Errorf("tar of %s = %q, %v; want NotFound (the host's file must not leak)", p, got, err)
		}
	}
	// The root's content, skipping /etc's.
	got, err = tarOf(t, root, "/", TarOptions{Skip: func(p string) bool { return p == "/etc" }})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	if want := []string{"esc", "etc/", "hello"}; !reflect.DeepEqual(names, want) {
		t.Errorf("export names = %q, want %q", names, want)
	}
	if _, err := tarOf(t, root, "/nope", TarOptions{Name: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("tar of a missing path: %v, want NotFound", err)
	}
}

func mkTar(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: e.Type, Mode: 0o644, Size: int64(len(e.Body))}
		if e.Type == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestExtract(t *testing.T) {
	root, outside := tree(t)
	ctx := context.Background()
	if err := Extract(ctx, root, "/etc", mkTar(t, entry{"new/", "", tar.TypeDir, ""}, entry{"new/f", "", tar.TypeReg, "copied\n"}), nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/new/f")); err != nil || string(b) != "copied\n" {
		t.Errorf("extracted file = %q, %v", b, err)
	}
	// Refused: climbing out, a hard link to outside, writing through a
	// symlink the tar plants or the root has.
	for name, tr := range map[string]*bytes.Buffer{
		"climb":        mkTar(t, entry{"../../x", "", tar.TypeReg, "x"}),
		"hard link":    mkTar(t, entry{"l", "../../../" + outside + "/secret", tar.TypeLink, ""}),
		"planted link": mkTar(t, entry{"p", outside, tar.TypeSymlink, ""}, entry{"p/planted", "", tar.TypeReg, "x"}),
		"root's link":  mkTar(t, entry{"esc/planted", "", tar.TypeReg, "x"}),
	} {
		err := Extract(ctx, root, "/", tr, nil)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: Extract = %v, want InvalidArgument", name, err)
		}
	}
	// A destination through an escaping symlink resolves inside the root.
	err := Extract(ctx, root, "/esc", mkTar(t, entry{"planted", "", tar.TypeReg, "x"}), nil)
	if !errdefs.IsNotFound(err) {
		t.Errorf("Extract into /esc = %v, want NotFound (inside the root, %s does not exist)", err, outside)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("the directory outside the root changed: %v", ents)
	}
	if err := Extract(ctx, root, "/hello", mkTar(t, entry{"x", "", tar.TypeReg, "x"}), nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Extract into a file = %v, want InvalidArgument", err)
	}
}

func TestMountOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root only: mounts an overlay")
	}
	lower, upper, work, under := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "hello"), []byte("lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "upper"), []byte("upper\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ms := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work}}}
	dir, release, err := Mount(ms, under, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tarOf(t, dir, "/", TarOptions{})
	if err != nil || len(got) != 2 || got[0].Body != "lower\n" || got[1].Body != "upper\n" {
		t.Errorf("tar of the mounted overlay = %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to a read-only mount: %v, want EROFS", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(under); len(ents) != 0 {
		t.Errorf("Mount left %v behind", ents)
	}
	if _, _, err := Mount([]mount.Mount{{Type: "block", Source: "/x.img"}}, under, true); !errdefs.IsNotImplemented(err) {
		t.Errorf("Mount of a block image: %v, want NotImplemented", err)
	}
	// Cleanup removes what a dead process left mounted.
	_, _, err = Mount(ms, under, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(under); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(under); len(ents) != 0 {
		t.Errorf("Cleanup left %v behind", ents)
	}
}

func TestMountBinds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root only: bind mounts")
	}
	root, vol, other := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{"data", "data/nested", "ro"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(vol, "nested"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/data", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	// Children are given first: MountBinds mounts parents first anyway.
	release, err := MountBinds(root, []Bind{
		{Source: other, Destination: "/data/nested"},
		{Source: vol, Destination: "/data"},
		{Source: other, Destination: "/ro", ReadOnly: true},
		{Source: other, Destination: "/missing"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tarOf(t, root, "/link/f", TarOptions{Name: "f"}) // through a symlink, inside the root
	if err != nil || len(got) != 1 || got[0].Body != "volume\n" {
		t.Errorf("volume file through the bind: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(root, "data/nested/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other, "x")); err != nil {
		t.Errorf("the nested bind is not over the parent's: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "ro/y"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through a read-only bind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing mount point was made: %v", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), root) {
		t.Errorf("binds left mounted:\n%s", b)
	}
}
