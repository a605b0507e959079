package vmkerneltest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/berth-dev/berth/internal/vmkernel"
)

// ARMember is one member of an ar archive.
type ARMember struct {
	Name string
	Data []byte
}

// WriteAR writes a common-format ar archive (what dpkg-deb makes).
func WriteAR(w io.Writer, members ...ARMember) error {
	if _, err := io.WriteString(w, "!<arch>\n"); err != nil {
		return err
	}
	for _, m := range members {
		hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.Name, 0, 0, 0, "100644", len(m.Data))
		if _, err := io.WriteString(w, hdr); err != nil {
			return err
		}
		if _, err := w.Write(m.Data); err != nil {
			return err
		}
		if len(m.Data)%2 == 1 {
			if _, err := w.Write([]byte{'\n'}); err != nil {
				return err
			}
		}
	}
	return nil
}

// TarEntry is one entry of a tarball built by Tar.
type TarEntry struct {
	Name     string // as stored, e.g. "./boot/vmlinuz-x"
	Type     byte   // tar.TypeReg when zero
	Data     []byte
	Linkname string
	Mode     int64 // 0644 when zero
}

// Tar builds a tarball compressed as compression says: "gz", "zst" or ""
// (plain).
func Tar(compression string, entries ...TarEntry) ([]byte, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.Name, Typeflag: typ, Mode: mode, Linkname: e.Linkname, Format: tar.FormatGNU}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		if typ == tar.TypeChar || typ == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return Compress(compression, raw.Bytes())
}

// Compress compresses data as "gz", "zst", "xz" (with xz(1), as kmod
// modules are: CRC32 check) or "" (unchanged).
func Compress(compression string, data []byte) ([]byte, error) {
	var out bytes.Buffer
	switch compression {
	case "":
		return data, nil
	case "xz":
		cmd := exec.Command("xz", "--check=crc32", "-0", "-c")
		cmd.Stdin = bytes.NewReader(data)
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
	case "gz":
		zw := gzip.NewWriter(&out)
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case "zst":
		zw, err := zstd.NewWriter(&out, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("compression %q: want gz, zst, xz or none", compression)
	}
	return out.Bytes(), nil
}

// BuildDeb assembles a .deb from a control file and a data tarball whose member
// suffix is compression ("gz", "zst", "").
func BuildDeb(control string, compression string, data []byte) ([]byte, error) {
	ctrl, err := Tar("gz", TarEntry{Name: "./", Type: tar.TypeDir, Mode: 0o755}, TarEntry{Name: "./control", Data: []byte(control)})
	if err != nil {
		return nil, err
	}
	name := "data.tar"
	if compression != "" {
		name += "." + compression
	}
	var out bytes.Buffer
	err = WriteAR(&out, ARMember{"debian-binary", []byte("2.0\n")}, ARMember{"control.tar.gz", ctrl}, ARMember{name, data})
	return out.Bytes(), err
}

// FakeKernel describes a small kernel package built by FakeKernelDeb.
type FakeKernel struct {
	Arch    string // "amd64" (default) or "arm64"
	Release string // default "9.9.9-1-<arch>"
	Version string // default "9.9.9-1"
	// Compression of the data tarball: "gz" (default), "zst" or "none".
	Compression string
	// ModuleCompression: "" (plain .ko), "gz" (.ko.gz), "zst" (.ko.zst)
	// or "xz" (.ko.xz, as Debian 13 ships them; needs xz(1)).
	ModuleCompression string
	// Modules are copied from this installed kernel's kept modules (its
	// modules.builtin too); nil means a package without modules.
	Modules *vmkernel.Kernel
	// NoPVH builds an amd64 vmlinux without the PVH note.
	NoPVH bool
}

// FakeKernelDeb writes a small but well-formed kernel package to dir and
// returns its path: a synthetic boot image (an x86 bzImage holding a tiny
// ELF with the PVH note, or an arm64 Image header), a config, and real
// modules taken from an installed kernel.
func FakeKernelDeb(t testing.TB, dir string, fk FakeKernel) string {
	t.Helper()
	if fk.Arch == "" {
		fk.Arch = "amd64"
	}
	if fk.Release == "" {
		fk.Release = "9.9.9-1-" + fk.Arch
	}
	if fk.Version == "" {
		fk.Version = "9.9.9-1"
	}
	comp := fk.Compression
	switch comp {
	case "":
		comp = "gz"
	case "none":
		comp = ""
	}
	var image []byte
	if fk.Arch == "arm64" {
		image = FakeARM64Image()
	} else {
		image = FakeBzImage(FakeVmlinux(!fk.NoPVH))
	}
	entries := []TarEntry{
		{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		{Name: "./boot/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "./boot/config-" + fk.Release, Data: []byte("CONFIG_PVH=y\n")},
		{Name: "./boot/vmlinuz-" + fk.Release, Data: image},
	}
	if k := fk.Modules; k != nil {
		root := filepath.Join(k.Dir, "modules")
		prefix := "./lib/modules/" + fk.Release + "/"
		builtin, err := os.ReadFile(filepath.Join(k.Dir, "modules.builtin"))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, TarEntry{Name: prefix + "modules.builtin", Data: builtin})
		err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ko") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			name := prefix + filepath.ToSlash(rel)
			if fk.ModuleCompression != "" {
				if data, err = Compress(fk.ModuleCompression, data); err != nil {
					return err
				}
				name += "." + fk.ModuleCompression
			}
			entries = append(entries, TarEntry{Name: name, Data: data})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	data, err := Tar(comp, entries...)
	if err != nil {
		t.Fatal(err)
	}
	control := fmt.Sprintf("Package: linux-image-%s\nVersion: %s\nArchitecture: %s\nDescription: test kernel\n", fk.Release, fk.Version, fk.Arch)
	debBytes, err := BuildDeb(control, comp, data)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, fmt.Sprintf("linux-image-%s_%s_%s.deb", fk.Release, fk.Version, fk.Arch))
	if err := os.WriteFile(p, debBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// FakeVmlinux returns a minimal x86-64 ELF file with one PT_NOTE segment
// holding a "Xen" note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY) when pvh, or
// of another type when not. It is not bootable.
func FakeVmlinux(pvh bool) []byte {
	const ehsize, phsize = 64, 56
	noteType := uint32(18)
	if !pvh {
		noteType = 17
	}
	var note bytes.Buffer
	le := binary.LittleEndian
	_ = binary.Write(&note, le, []uint32{4, 4, noteType})
	note.WriteString("Xen\x00")
	_ = binary.Write(&note, le, uint32(0x1000000))
	b := make([]byte, ehsize+phsize)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // ELFCLASS64, little endian, EV_CURRENT
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 62)   // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], ehsize) // e_phoff
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 1) // e_phnum
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 4)                   // PT_NOTE
	le.PutUint64(ph[8:], ehsize+phsize)       // p_offset
	le.PutUint64(ph[32:], uint64(note.Len())) // p_filesz
	le.PutUint64(ph[40:], uint64(note.Len())) // p_memsz
	le.PutUint64(ph[48:], 4)                  // p_align
	return append(b, note.Bytes()...)
}

// FakeBzImage wraps vmlinux in a minimal x86 bzImage: a setup header
// (boot protocol 2.15) whose payload is the gzip-compressed vmlinux
// followed by its size, as the kernel build appends it.
func FakeBzImage(vmlinux []byte) []byte {
	payload, _ := Compress("gz", vmlinux)
	return FakeBzImageWithPayload(append(payload, le32(uint32(len(vmlinux)))...))
}

// FakeBzImageWithPayload wraps a raw payload (stream + le32 size) in a
// minimal bzImage setup header.
func FakeBzImageWithPayload(payload []byte) []byte {
	const setupSects = 1
	img := make([]byte, (setupSects+1)*512)
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x020f)
	binary.LittleEndian.PutUint32(img[0x248:], 16) // payload_offset (from the protected-mode code)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, make([]byte, 16)...)
	return append(img, payload...)
}

// FakeARM64Image is a minimal arm64 Image: a 64-byte header with the
// "ARM\x64" magic at 0x38, padded.
func FakeARM64Image() []byte {
	img := make([]byte, 4096)
	binary.LittleEndian.PutUint64(img[0x10:], uint64(len(img))) // image_size
	copy(img[0x38:], "ARM\x64")
	return img
}

func le32(v uint32) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, v)
	return b
}
