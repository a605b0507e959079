package vmkernel_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

func withSize(stream []byte, n int) []byte {
	return binary.LittleEndian.AppendUint32(append([]byte(nil), stream...), uint32(n))
}

// TestDecompressBzImageFormats decompresses synthetic bzImages whose
// payload is each supported format, found through the setup header.
func TestDecompressBzImageFormats(t *testing.T) {
	content := bytes.Repeat([]byte("vmlinux content "), 4096)
	gz, err := vmkerneltest.Compress("gz", content)
	if err != nil {
		t.Fatal(err)
	}
	zs, err := vmkerneltest.Compress("zst", content)
	if err != nil {
		t.Fatal(err)
	}
	var lz bytes.Buffer
	lw := lz4.NewWriter(&lz)
	if _, err := lw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	// The kernel's lz4 payloads use the legacy frame format (lz4 -l).
	var lzLegacy bytes.Buffer
	lw = lz4.NewWriter(&lzLegacy)
	if err := lw.Apply(lz4.LegacyOption(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := lw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	for name, stream := range map[string][]byte{"gzip": gz, "zstd": zs, "lz4": lz.Bytes(), "lz4 legacy": lzLegacy.Bytes()} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := vmkernel.DecompressBzImage(vmkerneltest.FakeBzImageWithPayload(withSize(stream, len(content))), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), content) {
				t.Fatalf("got %d bytes, want the %d-byte content", out.Len(), len(content))
			}
		})
	}
}

// TestDecompressBzImageErrors: corrupt or foreign images give an error that
// says what is wrong.
func TestDecompressBzImageErrors(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 10000)
	gz, _ := vmkerneltest.Compress("gz", content)
	good := vmkerneltest.FakeBzImageWithPayload(withSize(gz, len(content)))
	corrupt := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	enc, _ := zstd.NewWriter(nil)
	zs := enc.EncodeAll(content, nil)
	cases := map[string]struct {
		img  []byte
		want string
	}{
		"empty":            {nil, "not an x86 bzImage"},
		"elf":              {append([]byte("\x7fELF"), make([]byte, 1024)...), "HdrS"},
		"old protocol":     {corrupt(func(b []byte) []byte { b[0x206] = 0x04; b[0x207] = 0x02; return b }), "boot protocol 2.04"},
		"payload past end": {corrupt(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[0x24c:], 1<<30); return b }), "outside"},
		"truncated":        {good[:len(good)-50], "outside"},
		"wrong size":       {vmkerneltest.FakeBzImageWithPayload(withSize(gz, len(content)+1)), "the image says"},
		"corrupt stream":   {corrupt(func(b []byte) []byte { b[len(b)-30] ^= 0xff; return b }), "decompressing gzip payload"},
		"unknown magic":    {vmkerneltest.FakeBzImageWithPayload(withSize([]byte("SOMETHING ELSE ENTIRELY"), 5)), "unknown compression"},
		"bzip2":            {vmkerneltest.FakeBzImageWithPayload(withSize([]byte("BZh91AY&SY...."), 5)), "bzip2"},
		"zstd cut":         {vmkerneltest.FakeBzImageWithPayload(withSize(zs[:len(zs)/2], len(content))), "zstd"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := vmkernel.DecompressBzImage(c.img, &out)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestVerifyPVH(t *testing.T) {
	if err := vmkernel.VerifyPVH(bytes.NewReader(vmkerneltest.FakeVmlinux(true))); err != nil {
		t.Fatalf("ELF with the PVH note: %v", err)
	}
	err := vmkernel.VerifyPVH(bytes.NewReader(vmkerneltest.FakeVmlinux(false)))
	if err == nil || !strings.Contains(err.Error(), "no PVH entry note") {
		t.Fatalf("ELF without the PVH note: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := vmkernel.VerifyPVH(f); err == nil || !strings.Contains(err.Error(), "PVH") {
		t.Fatalf("a Go test binary: %v", err)
	}
	if err := vmkernel.VerifyPVH(bytes.NewReader([]byte("MZ not an elf"))); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Fatalf("not an ELF: %v", err)
	}
}

// TestExtractVmlinuxRealCorrupted corrupts the real Debian bzImage's xz
// payload: extraction fails with an error naming the image and leaves no
// output file.
func TestExtractVmlinuxRealCorrupted(t *testing.T) {
	bz := vmlinuzFromDeb(t, vmkerneltest.Deb(t, "amd64"))
	payload := bzPayloadForTest(t, bz)
	off := len(bz) - len(payload) - 4 + 64 // inside the first xz block
	for i := range 64 {
		bz[off+i] ^= 0x5a
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(in, bz, 0o644); err != nil {
		t.Fatal(err)
	}
	err := vmkernel.ExtractVmlinux(in, out)
	if err == nil || !strings.Contains(err.Error(), "xz payload") || !strings.Contains(err.Error(), in) {
		t.Fatalf("corrupt payload: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestARM64Image(t *testing.T) {
	img := vmkerneltest.FakeARM64Image()
	got, err := vmkernel.ARM64Image(img)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("plain Image: %v", err)
	}
	gz, _ := vmkerneltest.Compress("gz", img)
	got, err = vmkernel.ARM64Image(gz)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("gzip Image: %v", err)
	}
	notImg, _ := vmkerneltest.Compress("gz", []byte("hello"))
	for name, b := range map[string][]byte{"x86 bzImage": vmkerneltest.FakeBzImage(vmkerneltest.FakeVmlinux(true)), "gzip of junk": notImg, "empty": nil} {
		if _, err := vmkernel.ARM64Image(b); err == nil || !strings.Contains(err.Error(), "arm64") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
