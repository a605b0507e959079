package qemu

// Boot assets for the VM tests, built once per test binary from the cached
// Debian kernel package: vmlinux (PVH ELF out of the XZ bzImage), and an
// initramfs with the static test guest as /init plus the virtio modules of
// both machine types. Stopgap until internal/vmkernel/vmkerneltest exists.

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

const kernelDeb = "/var/cache/berth/debs/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb"

// testModules are loaded by the test guest (dependencies are resolved).
var testModules = []string{"virtio_mmio", "virtio_pci", "virtio_console", "virtio_blk", "virtio_balloon", "button", "evdev"}

type assets struct{ kernel, initrd string }

var (
	assetsOnce sync.Once
	assetsVal  assets
	assetsErr  error
	assetsDir  string
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		startHelper() // never returns
	}
	code := m.Run()
	if assetsDir != "" {
		os.RemoveAll(assetsDir)
	}
	os.Exit(code)
}

// bootAssets returns the kernel and initramfs, skipping the test when the
// host cannot run VMs (not root, no qemu, no kernel package).
func bootAssets(t *testing.T) assets {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("VM tests run as root (qemu, /dev/kvm)")
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("the test kernel is Debian amd64")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/install-deps.sh)")
	}
	if _, err := os.Stat(kernelDeb); err != nil {
		t.Skipf("kernel package missing: %v", err)
	}
	assetsOnce.Do(func() {
		if keep := os.Getenv("BERTH_TEST_ASSETS_DIR"); keep != "" { // kept for reuse (debugging)
			assetsVal = assets{kernel: filepath.Join(keep, "vmlinux"), initrd: filepath.Join(keep, "initrd.cpio")}
			if _, err := os.Stat(assetsVal.initrd); err == nil {
				return
			}
			os.MkdirAll(keep, 0o755)
			assetsVal, assetsErr = buildAssets(keep)
			return
		}
		assetsDir, assetsErr = os.MkdirTemp("", "berth-hv-assets-")
		if assetsErr == nil {
			assetsVal, assetsErr = buildAssets(assetsDir)
		}
	})
	if assetsErr != nil {
		t.Fatalf("boot assets: %v", assetsErr)
	}
	return assetsVal
}

func buildAssets(dir string) (assets, error) {
	a := assets{kernel: filepath.Join(dir, "vmlinux"), initrd: filepath.Join(dir, "initrd.cpio")}
	root := filepath.Join(dir, "deb")
	if out, err := exec.Command("dpkg-deb", "-x", kernelDeb, root).CombinedOutput(); err != nil {
		return a, fmt.Errorf("dpkg-deb: %v: %s", err, out)
	}
	bz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(bz) != 1 {
		return a, fmt.Errorf("no vmlinuz in %s", kernelDeb)
	}
	img, err := os.ReadFile(bz[0])
	if err != nil {
		return a, err
	}
	off := bytes.Index(img, []byte{0xfd, '7', 'z', 'X', 'Z', 0})
	if off < 0 {
		return a, fmt.Errorf("%s: no XZ stream", bz[0])
	}
	out, err := os.Create(a.kernel)
	if err != nil {
		return a, err
	}
	xz := exec.Command("xz", "-dc", "--single-stream")
	xz.Stdin, xz.Stdout = bytes.NewReader(img[off:]), out
	err = xz.Run()
	out.Close()
	if err != nil {
		return a, fmt.Errorf("xz: %v", err)
	}

	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", initBin, "./internal/testguest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return a, fmt.Errorf("build test guest: %v: %s", err, out)
	}
	mods, err := resolveModules(root, testModules)
	if err != nil {
		return a, err
	}
	files := []cpioFile{{name: "dev", mode: 0o40755}, {name: "dev/console", mode: 0o20600, rdev: [2]uint32{5, 1}},
		{name: "init", mode: 0o100755, src: initBin}, {name: "modules", mode: 0o40755}}
	for i, m := range mods {
		files = append(files, cpioFile{name: fmt.Sprintf("modules/%02d-%s", i, filepath.Base(m)), mode: 0o100644, src: m})
	}
	return a, writeCpio(a.initrd, files)
}

// resolveModules returns the .ko paths of names and their dependencies,
// dependencies first, from each module's .modinfo "depends=" (the package
// has no modules.dep: depmod makes it at install; softdeps are not needed).
func resolveModules(root string, names []string) ([]string, error) {
	byName := map[string]string{}
	filepath.WalkDir(filepath.Join(root, "lib", "modules"), func(p string, e os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			byName[strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")] = p
		}
		return nil
	})
	var out []string
	seen := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		p, ok := byName[name]
		if !ok {
			return fmt.Errorf("module %s not in the kernel package", name)
		}
		f, err := elf.Open(p)
		if err != nil {
			return err
		}
		sec := f.Section(".modinfo")
		var info []byte
		if sec != nil {
			info, err = sec.Data()
		}
		f.Close()
		if err != nil {
			return err
		}
		for _, kv := range bytes.Split(info, []byte{0}) {
			if dep, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(dep) > 0 {
				for _, d := range strings.Split(string(dep), ",") {
					if err := visit(d); err != nil {
						return err
					}
				}
			}
		}
		out = append(out, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type cpioFile struct {
	name string
	mode uint32
	rdev [2]uint32
	src  string
}

// writeCpio writes an uncompressed newc archive, every entry owned by 0:0.
func writeCpio(path string, files []cpioFile) error {
	var buf bytes.Buffer
	pad := func() {
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
	}
	entry := func(ino int, f cpioFile, data []byte) {
		fmt.Fprintf(&buf, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, f.mode, 0, 0, 1, 0, len(data), 0, 0, f.rdev[0], f.rdev[1], len(f.name)+1, 0)
		buf.WriteString(f.name)
		buf.WriteByte(0)
		pad()
		buf.Write(data)
		pad()
	}
	for i, f := range files {
		var data []byte
		if f.src != "" {
			b, err := os.ReadFile(f.src)
			if err != nil {
				return err
			}
			data = b
		}
		entry(i+1, f, data)
	}
	entry(0, cpioFile{name: "TRAILER!!!"}, nil)
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
