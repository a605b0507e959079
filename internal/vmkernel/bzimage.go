package vmkernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/therootcompany/xz"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// Offsets in the x86 boot protocol's setup header
// (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202 // "HdrS"
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c

	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the PVH entry point
	// qemu's -kernel uses to boot an ELF vmlinux directly.
	xenElfnotePhys32Entry = 18

	// maxVmlinux bounds the decompressed kernel (Debian's is ~66 MB).
	maxVmlinux = 512 << 20
)

// DecompressBzImage writes the ELF vmlinux held in the x86 bzImage bz to w.
// The compressed payload is found through the setup header's payload_offset
// and payload_length (boot protocol 2.08+); xz (with the x86 BCJ filter the
// kernel uses), gzip, zstd and lz4 payloads are supported. The size the
// kernel build appends to the payload is checked against the output.
func DecompressBzImage(bz []byte, w io.Writer) error {
	payload, err := bzPayload(bz)
	if err != nil {
		return err
	}
	if len(payload) < 8 {
		return errors.New("bzImage: compressed payload too short")
	}
	// Every kernel compressor rule appends the uncompressed size (le32).
	want := int64(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	stream := payload[:len(payload)-4]
	r, format, err := decompressor(stream)
	if err != nil {
		return fmt.Errorf("bzImage: %w", err)
	}
	n, err := io.Copy(w, io.LimitReader(r, maxVmlinux+1))
	if err != nil {
		return fmt.Errorf("bzImage: decompressing %s payload: %w", format, err)
	}
	if n > maxVmlinux {
		return fmt.Errorf("bzImage: %s payload decompresses to more than %d bytes", format, maxVmlinux)
	}
	if n != want {
		return fmt.Errorf("bzImage: %s payload decompressed to %d bytes, the image says %d (corrupt image?)", format, n, want)
	}
	return nil
}

// bzPayload returns the compressed payload of an x86 bzImage.
func bzPayload(bz []byte) ([]byte, error) {
	if len(bz) < offPayloadLength+4 {
		return nil, fmt.Errorf("not an x86 bzImage: only %d bytes", len(bz))
	}
	if string(bz[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return nil, errors.New("not an x86 bzImage: no \"HdrS\" setup header magic at 0x202")
	}
	if v := binary.LittleEndian.Uint16(bz[offVersion:]); v < 0x208 {
		return nil, fmt.Errorf("x86 bzImage: boot protocol %d.%02d has no payload fields (need 2.08+)", v>>8, v&0xff)
	}
	setupSects := int(bz[offSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	pmStart := (setupSects + 1) * 512
	off := pmStart + int(binary.LittleEndian.Uint32(bz[offPayloadOffset:]))
	length := int(binary.LittleEndian.Uint32(bz[offPayloadLength:]))
	if length <= 0 || off < pmStart || off > len(bz) || length > len(bz)-off {
		return nil, fmt.Errorf("x86 bzImage: payload (offset %d, length %d) outside the %d-byte image (truncated?)", off, length, len(bz))
	}
	return bz[off : off+length], nil
}

// decompressor picks the decompressor for a kernel payload by its magic.
func decompressor(p []byte) (io.Reader, string, error) {
	switch {
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		r, err := xz.NewReader(bytes.NewReader(p), 0)
		if err != nil {
			return nil, "xz", fmt.Errorf("xz payload: %w", err)
		}
		r.Multistream(false)
		return r, "xz", nil
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		r, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, "gzip", fmt.Errorf("gzip payload: %w", err)
		}
		r.Multistream(false)
		return r, "gzip", nil
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(bytes.NewReader(p), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, "zstd", fmt.Errorf("zstd payload: %w", err)
		}
		return d.IOReadCloser(), "zstd", nil
	case bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}), bytes.HasPrefix(p, []byte{0x04, 0x22, 0x4d, 0x18}):
		return lz4.NewReader(bytes.NewReader(p)), "lz4", nil
	case bytes.HasPrefix(p, []byte("BZh")):
		return nil, "bzip2", errors.New("bzip2-compressed kernels are not supported (use a kernel built with xz, gzip, zstd or lz4)")
	case bytes.HasPrefix(p, []byte{0x5d, 0x00, 0x00}):
		return nil, "lzma", errors.New("lzma-compressed kernels are not supported (use a kernel built with xz, gzip, zstd or lz4)")
	case bytes.HasPrefix(p, []byte{0x89, 'L', 'Z', 'O'}):
		return nil, "lzo", errors.New("lzo-compressed kernels are not supported (use a kernel built with xz, gzip, zstd or lz4)")
	}
	n := min(len(p), 8)
	return nil, "", fmt.Errorf("payload has unknown compression (magic % x)", p[:n])
}

// VerifyPVH checks that r holds an x86-64 ELF kernel with a PVH entry point
// (the XEN_ELFNOTE_PHYS32_ENTRY note, CONFIG_PVH=y), which is what booting
// `-kernel vmlinux` directly needs.
func VerifyPVH(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("vmlinux is not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("vmlinux is an ELF for %v, want x86-64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(p.Open(), 1<<20))
		if err != nil {
			return fmt.Errorf("vmlinux: reading note segment: %w", err)
		}
		if hasXenNote(data, f.ByteOrder, xenElfnotePhys32Entry) {
			return nil
		}
	}
	return errors.New("vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): the kernel was built without CONFIG_PVH and cannot be booted as an ELF vmlinux")
}

// hasXenNote reports whether the ELF notes in data include a "Xen" note of
// type typ.
func hasXenNote(data []byte, bo binary.ByteOrder, typ uint32) bool {
	align4 := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(data) >= 12 {
		namesz := uint64(bo.Uint32(data[0:]))
		descsz := uint64(bo.Uint32(data[4:]))
		t := bo.Uint32(data[8:])
		data = data[12:]
		if align4(namesz) > uint64(len(data)) {
			return false
		}
		name := string(bytes.TrimRight(data[:namesz], "\x00"))
		data = data[align4(namesz):]
		if descsz > uint64(len(data)) {
			return false
		}
		if name == "Xen" && t == typ {
			return true
		}
		if align4(descsz) > uint64(len(data)) {
			return false
		}
		data = data[align4(descsz):]
	}
	return false
}

// ARM64 Image header (Documentation/arch/arm64/booting.rst).
const (
	arm64MagicOffset = 0x38
	arm64Magic       = "ARM\x64"
)

// ARM64Image returns the uncompressed arm64 Image in data: data itself when
// it carries the "ARM\x64" magic at 0x38 (Debian's arm64 vmlinuz), or its
// gzip-decompressed content when that does.
func ARM64Image(data []byte) ([]byte, error) {
	if isARM64Image(data) {
		return data, nil
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		r, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("arm64 kernel: gzip: %w", err)
		}
		out, err := io.ReadAll(io.LimitReader(r, maxVmlinux+1))
		if err != nil {
			return nil, fmt.Errorf("arm64 kernel: gzip: %w", err)
		}
		if len(out) > maxVmlinux {
			return nil, fmt.Errorf("arm64 kernel: decompresses to more than %d bytes", maxVmlinux)
		}
		if isARM64Image(out) {
			return out, nil
		}
		return nil, errors.New("arm64 kernel: the gzip content is not an arm64 Image (no ARM\\x64 magic at 0x38)")
	}
	return nil, errors.New("not an arm64 Image: no ARM\\x64 magic at 0x38 and not gzip-compressed")
}

func isARM64Image(b []byte) bool {
	return len(b) >= arm64MagicOffset+4 && string(b[arm64MagicOffset:arm64MagicOffset+4]) == arm64Magic
}

// ExtractVmlinux reads the x86 bzImage at bzPath and writes its ELF vmlinux
// to outPath (temp + fsync + rename), after checking its PVH entry note.
// Nothing is left at outPath on failure.
func ExtractVmlinux(bzPath, outPath string) error {
	bz, err := os.ReadFile(bzPath)
	if err != nil {
		return err
	}
	return atomicfile.Write(outPath, 0o644, true, func(f *os.File) error {
		if err := DecompressBzImage(bz, f); err != nil {
			return fmt.Errorf("%s: %w", bzPath, err)
		}
		if err := VerifyPVH(f); err != nil {
			return fmt.Errorf("%s: %w", bzPath, err)
		}
		return nil
	})
}
