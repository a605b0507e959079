package deb_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/vmkernel/deb"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

const control = "Package: linux-image-9.9.9-1-amd64\nVersion: 9.9.9-1\nArchitecture: amd64\nDepends: kmod,\n linux-base (>= 4.3~)\nDescription: x\n"

func mustTar(t *testing.T, comp string, entries ...vmkerneltest.TarEntry) []byte {
	t.Helper()
	b, err := vmkerneltest.Tar(comp, entries...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDeb(t *testing.T, comp string, entries ...vmkerneltest.TarEntry) []byte {
	t.Helper()
	b, err := vmkerneltest.BuildDeb(control, comp, mustTar(t, comp, entries...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ar(t *testing.T, members ...vmkerneltest.ARMember) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := vmkerneltest.WriteAR(&b, members...); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type seen struct {
	name, linkname string
	typ            byte
	data           string
}

func walk(data []byte) (*deb.Control, []seen, error) {
	var got []seen
	ctrl, err := deb.Read(bytes.NewReader(data), func(e deb.Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		got = append(got, seen{e.Name, e.Linkname, e.Type, string(b)})
		return nil
	})
	return ctrl, got, err
}

func TestReadValid(t *testing.T) {
	entries := []vmkerneltest.TarEntry{
		{Name: "./", Type: tar.TypeDir},
		{Name: "./boot/", Type: tar.TypeDir},
		{Name: "./boot/vmlinuz-9", Data: []byte("kernel")},
		{Name: "lib/modules/9/kernel/a.ko", Data: []byte("odd")}, // odd size: ar padding
		{Name: "./lib/modules/9/build", Type: tar.TypeSymlink, Linkname: "/usr/src/linux-headers-9"},
		{Name: "./lib/modules/9/b.ko", Type: tar.TypeLink, Linkname: "./lib/modules/9/kernel/a.ko"},
	}
	want := []seen{
		{"boot", "", tar.TypeDir, ""},
		{"boot/vmlinuz-9", "", tar.TypeReg, "kernel"},
		{"lib/modules/9/kernel/a.ko", "", tar.TypeReg, "odd"},
		{"lib/modules/9/build", "/usr/src/linux-headers-9", tar.TypeSymlink, ""},
		{"lib/modules/9/b.ko", "lib/modules/9/kernel/a.ko", tar.TypeLink, ""},
	}
	for _, comp := range []string{"gz", "zst", ""} {
		t.Run("data.tar."+comp, func(t *testing.T) {
			ctrl, got, err := walk(mustDeb(t, comp, entries...))
			if err != nil {
				t.Fatal(err)
			}
			if ctrl.Package != "linux-image-9.9.9-1-amd64" || ctrl.Version != "9.9.9-1" || ctrl.Architecture != "amd64" {
				t.Errorf("control %+v", ctrl)
			}
			if ctrl.Depends != "kmod,\nlinux-base (>= 4.3~)" {
				t.Errorf("Depends %q", ctrl.Depends)
			}
			if len(got) != len(want) {
				t.Fatalf("entries %+v, want %+v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestReadControlOnlyAndStop(t *testing.T) {
	d := mustDeb(t, "gz", vmkerneltest.TarEntry{Name: "./a", Data: []byte("a")}, vmkerneltest.TarEntry{Name: "./b", Data: []byte("b")})
	ctrl, err := deb.Read(bytes.NewReader(d), nil)
	if err != nil || ctrl.Package == "" {
		t.Fatalf("control only: %v %v", ctrl, err)
	}
	n := 0
	_, err = deb.Read(bytes.NewReader(d), func(deb.Entry, io.Reader) error { n++; return deb.ErrStop })
	if err != nil || n != 1 {
		t.Fatalf("ErrStop: n=%d err=%v", n, err)
	}
	boom := errors.New("boom")
	_, err = deb.Read(bytes.NewReader(d), func(deb.Entry, io.Reader) error { return boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("callback error: %v", err)
	}
}

// TestReadRefuses feeds crafted archives that must be refused, each with
// an error saying why.
func TestReadRefuses(t *testing.T) {
	good := mustDeb(t, "gz", vmkerneltest.TarEntry{Name: "./boot/vmlinuz-9", Data: bytes.Repeat([]byte("k"), 5000)})
	ctrlTar := mustTar(t, "gz", vmkerneltest.TarEntry{Name: "./control", Data: []byte(control)})
	data := func(entries ...vmkerneltest.TarEntry) []byte {
		return ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("2.0\n")},
			vmkerneltest.ARMember{Name: "control.tar.gz", Data: ctrlTar},
			vmkerneltest.ARMember{Name: "data.tar.gz", Data: mustTar(t, "gz", entries...)})
	}
	cases := []struct {
		name, want string
		archive    []byte
	}{
		{"empty", "ar magic", nil},
		{"not ar", "bad ar magic", []byte("PK\x03\x04 this is a zip file")},
		{"traversal", "climbs out", data(vmkerneltest.TarEntry{Name: "../../etc/passwd", Data: []byte("x")})},
		{"inner traversal", "climbs out", data(vmkerneltest.TarEntry{Name: "./boot/../../x", Data: []byte("x")})},
		{"absolute", "absolute", data(vmkerneltest.TarEntry{Name: "/etc/passwd", Data: []byte("x")})},
		{"hardlink out", "hard link", data(vmkerneltest.TarEntry{Name: "./x", Type: tar.TypeLink, Linkname: "../../etc/shadow"})},
		{"device node", "unsupported entry type", data(vmkerneltest.TarEntry{Name: "./dev/null", Type: tar.TypeChar})},
		{"fifo", "unsupported entry type", data(vmkerneltest.TarEntry{Name: "./p", Type: tar.TypeFifo})},
		{"first member", "first member", ar(t, vmkerneltest.ARMember{Name: "control.tar.gz", Data: ctrlTar})},
		{"format 3", "format version", ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("3.0\n")})},
		{"no control", "data archive before the control", ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("2.0\n")},
			vmkerneltest.ARMember{Name: "data.tar.gz", Data: mustTar(t, "gz")})},
		{"control without control file", "no control file", ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("2.0\n")},
			vmkerneltest.ARMember{Name: "control.tar.gz", Data: mustTar(t, "gz", vmkerneltest.TarEntry{Name: "./md5sums", Data: []byte("x")})})},
		{"stray member", "unexpected member", ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("2.0\n")},
			vmkerneltest.ARMember{Name: "evil", Data: []byte("x")})},
		{"bad compression", "unsupported compression", ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("2.0\n")},
			vmkerneltest.ARMember{Name: "control.tar.gz", Data: ctrlTar}, vmkerneltest.ARMember{Name: "data.tar.bz2", Data: []byte("BZh")})},
		{"corrupt gzip", "gzip", ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("2.0\n")},
			vmkerneltest.ARMember{Name: "control.tar.gz", Data: ctrlTar}, vmkerneltest.ARMember{Name: "data.tar.gz", Data: []byte("not gzip at all")})},
		{"bad ar size", "bad size", []byte(fmt.Sprintf("!<arch>\n%-16s%-12d%-6d%-6d%-8s%-10s`\n2.0\n", "debian-binary", 0, 0, 0, "100644", "12x4"))},
		{"negative ar size", "bad size", []byte(fmt.Sprintf("!<arch>\n%-16s%-12d%-6d%-6d%-8s%-10s`\n2.0\n", "debian-binary", 0, 0, 0, "100644", "-4"))},
		{"bad ar terminator", "terminator", []byte(fmt.Sprintf("!<arch>\n%-16s%-12d%-6d%-6d%-8s%-10d!!2.0\n", "debian-binary", 0, 0, 0, "100644", 4))},
		{"truncated in header", "unexpected EOF", good[:30]},
		{"truncated in control", "", good[:8+60+4+60+10]},
		{"truncated in data", "", good[:len(good)-100]},
		{"truncated at the end", "truncated", good[:len(good)-2]},
		{"no data", "no data archive", ar(t, vmkerneltest.ARMember{Name: "debian-binary", Data: []byte("2.0\n")},
			vmkerneltest.ARMember{Name: "control.tar.gz", Data: ctrlTar})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := walk(c.archive)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"./":              "",
		".":               "",
		"./boot/vmlinuz":  "boot/vmlinuz",
		"boot//x/":        "boot/x",
		"./lib/./modules": "lib/modules",
	} {
		got, err := deb.CleanName(in)
		if err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"..", "../x", "a/../../b", "a/..", "/abs", "a\x00b"} {
		if got, err := deb.CleanName(bad); err == nil {
			t.Errorf("CleanName(%q) = %q, accepted", bad, got)
		}
	}
}

// TestReadRealDebs reads the control fields of the cached real kernel
// packages (control.tar.xz) and the first data entries (data.tar.xz), then
// stops without reading the rest.
func TestReadRealDebs(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			p := vmkerneltest.Deb(t, arch)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var first []string
			ctrl, err := deb.Read(f, func(e deb.Entry, r io.Reader) error {
				first = append(first, e.Name)
				if len(first) == 2 {
					return deb.ErrStop
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(ctrl.Package, "linux-image-") || ctrl.Architecture != arch || ctrl.Version == "" {
				t.Errorf("control %+v", ctrl)
			}
			if len(first) != 2 {
				t.Errorf("first entries %v", first)
			}
			t.Logf("%s %s: %v", ctrl.Package, ctrl.Version, first)
		})
	}
}

// FuzzRead: no input panics the reader, and every name it reports is
// clean and relative.
func FuzzRead(f *testing.F) {
	for _, comp := range []string{"gz", "zst", ""} {
		d, err := vmkerneltest.BuildDeb(control, comp, func() []byte {
			b, _ := vmkerneltest.Tar(comp, vmkerneltest.TarEntry{Name: "./boot/vmlinuz-9", Data: []byte("kernel")},
				vmkerneltest.TarEntry{Name: "./lib/modules/9/x.ko", Type: tar.TypeLink, Linkname: "./boot/vmlinuz-9"})
			return b
		}())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d)
		f.Add(d[:len(d)/2])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = deb.Read(bytes.NewReader(data), func(e deb.Entry, r io.Reader) error {
			for _, n := range []string{e.Name, e.Linkname} {
				if e.Type == tar.TypeSymlink && n == e.Linkname {
					continue
				}
				if strings.HasPrefix(n, "/") || n == ".." || strings.HasPrefix(n, "../") || strings.Contains(n, "/../") || strings.HasSuffix(n, "/..") {
					t.Fatalf("unclean name %q", n)
				}
			}
			_, err := io.Copy(io.Discard, r)
			return err
		})
	})
}
