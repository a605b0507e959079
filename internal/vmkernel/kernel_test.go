package vmkernel_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/deb"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

// names returns the module names in order.
func names(mods []vmkernel.Module) []string {
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = m.Name
	}
	return out
}

// assertChain checks that chain appears in order within got.
func assertChain(t *testing.T, got []string, chain ...string) {
	t.Helper()
	last := -1
	for _, m := range chain {
		i := slices.Index(got, m)
		if i < 0 {
			t.Errorf("chain %v: %s missing from %v", chain, m, got)
			return
		}
		if i < last {
			t.Errorf("chain %v: %s comes too early in %v", chain, m, got)
		}
		last = i
	}
}

// TestModulesForQemuSet resolves the qemu module set on the real Debian
// kernel: the dependency chains measured in the research file come out in
// that order, crc32c_generic (ext4's softdep "crypto-crc32c", an alias)
// before ext4, each module once, every file a plain ELF.
func TestModulesForQemuSet(t *testing.T) {
	k := vmkerneltest.Kernel(t)
	mods, err := k.ModulesFor(vmkernel.QemuModules...)
	if err != nil {
		t.Fatal(err)
	}
	got := names(mods)
	t.Logf("load order: %v", got)
	for _, chain := range [][]string{
		{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci"},
		{"virtio_ring", "virtio", "virtio_mmio"},
		{"virtio", "virtio_console"},
		{"virtio", "virtio_blk"},
		{"failover", "net_failover", "virtio_net"},
		{"netfs", "fscache", "9p"},
		{"9pnet", "9pnet_virtio"},
		{"9pnet", "9p"},
		{"crc16", "jbd2", "ext4"},
		{"mbcache", "ext4"},
		{"crc32c_generic", "ext4"},
		{"virtio", "virtio_balloon"},
	} {
		assertChain(t, got, chain...)
	}
	if c := slices.Compact(slices.Sorted(slices.Values(got))); len(c) != len(got) {
		t.Errorf("a module appears twice: %v", got)
	}
	for _, m := range mods {
		f, err := os.Open(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		magic := make([]byte, 4)
		_, err = io.ReadFull(f, magic)
		f.Close()
		if err != nil || string(magic) != "\x7fELF" {
			t.Errorf("%s is not a plain ELF module (%q, %v)", m.Path, magic, err)
		}
	}
	if _, err := k.ModulesFor("no_such_module"); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("unknown module: err = %v, want one naming it", err)
	}
}

// TestModuleIndexMatchesDepmod runs kmod's depmod over the store's modules
// and checks that the index Berth wrote agrees with depmod's
// modules.dep (same transitive dependencies per module) and that Berth's
// reader resolves depmod's files to the same set in a valid order.
func TestModuleIndexMatchesDepmod(t *testing.T) {
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		for _, p := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
			if _, e := os.Stat(p); e == nil {
				depmod, err = p, nil
			}
		}
	}
	if err != nil {
		t.Skip("depmod (kmod) is not installed (scripts/install-deps.sh installs it)")
	}
	k := vmkerneltest.Kernel(t)
	base := t.TempDir()
	modDir := filepath.Join(base, "lib", "modules", k.Release)
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(k.Dir, "modules", "kernel"), filepath.Join(modDir, "kernel")); err != nil {
		t.Fatal(err)
	}
	builtin, err := os.ReadFile(filepath.Join(k.Dir, "modules.builtin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(modDir, "modules.builtin"), builtin, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(depmod, "-b", base, k.Release).CombinedOutput(); err != nil {
		t.Fatalf("depmod: %v\n%s", err, out)
	}
	theirs := parseDep(t, filepath.Join(modDir, "modules.dep"))
	ours := parseDep(t, filepath.Join(k.Dir, "modules.dep"))
	if len(theirs) != len(ours) {
		t.Errorf("depmod lists %d modules, Berth %d", len(theirs), len(ours))
	}
	for mod, deps := range theirs {
		if !slices.Equal(slices.Sorted(slices.Values(deps)), slices.Sorted(slices.Values(ours[mod]))) {
			t.Errorf("%s: depmod deps %v, Berth %v", mod, deps, ours[mod])
		}
	}
	// Berth's reader on depmod's own files.
	ix, err := vmkernel.LoadModuleIndex(modDir)
	if err != nil {
		t.Fatal(err)
	}
	fromDepmod, err := ix.Resolve(vmkernel.QemuModules...)
	if err != nil {
		t.Fatal(err)
	}
	fromStore, err := k.ModulesFor(vmkernel.QemuModules...)
	if err != nil {
		t.Fatal(err)
	}
	var a []string
	for _, m := range fromDepmod {
		a = append(a, m.Name)
	}
	if !slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(names(fromStore)))) {
		t.Errorf("resolving depmod's files gives %v, the store %v", a, names(fromStore))
	}
	// depmod orders independent modules differently; the dependencies hold.
	assertChain(t, a, "crc32c_generic", "ext4")
	assertChain(t, a, "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci")
	assertChain(t, a, "virtio_pci_legacy_dev", "virtio_pci")
}

// parseDep reads a modules.dep into module path → dependency paths.
func parseDep(t *testing.T, p string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s: bad line %q", p, line)
		}
		out[mod] = strings.Fields(deps)
	}
	return out
}

// TestVmlinuxMatchesXZ checks the store's vmlinux: it carries the PVH note
// and is byte for byte what xz(1) makes of the bzImage's payload.
func TestVmlinuxMatchesXZ(t *testing.T) {
	k := vmkerneltest.Kernel(t)
	f, err := os.Open(k.Image())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := vmkernel.VerifyPVH(f); err != nil {
		t.Fatal(err)
	}
	xzTool, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("xz(1) is not installed: cannot cross-check the extraction")
	}
	bz := vmlinuzFromDeb(t, vmkerneltest.Deb(t, "amd64"))
	payload := bzPayloadForTest(t, bz)
	cmd := exec.Command(xzTool, "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(payload)
	want := sha256.New()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = want, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xz: %v %s", err, stderr.String())
	}
	got := sha256.New()
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(got, f); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the store's vmlinux differs from xz -dc of the bzImage payload")
	}
}

// vmlinuzFromDeb reads boot/vmlinuz-* out of a kernel .deb (stopping there).
func vmlinuzFromDeb(t *testing.T, debPath string) []byte {
	t.Helper()
	f, err := os.Open(debPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var img []byte
	_, err = deb.Read(f, func(e deb.Entry, r io.Reader) error {
		if strings.HasPrefix(e.Name, "boot/vmlinuz-") {
			var err error
			img, err = io.ReadAll(r)
			if err != nil {
				return err
			}
			return deb.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if img == nil {
		t.Fatalf("%s has no boot/vmlinuz-*", debPath)
	}
	return img
}

// bzPayloadForTest finds the payload the way the boot protocol documents
// it, independently of the package's code.
func bzPayloadForTest(t *testing.T, bz []byte) []byte {
	t.Helper()
	setup := int(bz[0x1f1])
	if setup == 0 {
		setup = 4
	}
	off := (setup+1)*512 + int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	return bz[off : off+n]
}

// TestARM64Kernel checks the real cloud-arm64 package: its Image carries
// the arm64 magic and the Virtualization.framework module set resolves
// (ext4 is built in there, so it is not loaded).
func TestARM64Kernel(t *testing.T) {
	k := vmkerneltest.KernelArch(t, "arm64")
	img, err := os.ReadFile(k.Image())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vmkernel.ARM64Image(img); err != nil {
		t.Fatal(err)
	}
	if string(img[0x38:0x3c]) != "ARM\x64" {
		t.Fatalf("no ARM64 magic at 0x38: %q", img[0x38:0x3c])
	}
	mods, err := k.ModulesFor(vmkernel.VZModules...)
	if err != nil {
		t.Fatal(err)
	}
	got := names(mods)
	t.Logf("%s load order: %v", k.Release, got)
	assertChain(t, got, "virtio_ring", "virtio", "virtio_pci")
	assertChain(t, got, "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport")
	assertChain(t, got, "fuse", "virtiofs")
	assertChain(t, got, "failover", "net_failover", "virtio_net")
	for _, m := range []string{"virtio_console", "virtio_blk", "virtio_balloon"} {
		if !slices.Contains(got, m) {
			t.Errorf("%s missing from %v", m, got)
		}
	}
}
