// Package vmkernel supplies the boot assets of VM isolation: a guest kernel
// taken from a Debian kernel package (.deb, read in Go on any OS), the ELF
// vmlinux extracted from an x86 bzImage for PVH boot, the modules the guest
// needs resolved through modules.dep/softdep/alias, and the initramfs
// (cpio newc) holding the agent and those modules.
//
// Kernels live in a Store (<state_dir>/kernels):
//
//	<dir>/<release>-<arch>/vmlinux (amd64) or Image (arm64)
//	                      /config, modules.dep, modules.softdep, modules.alias, modules.builtin
//	                      /modules/kernel/…/*.ko   (only StoreModules' closure, decompressed)
//	                      /kernel.json
//	<dir>/default-<arch>  symlink to the arch's default kernel directory
//
// A kernel directory is complete or absent: Install builds it in a temporary
// directory and renames it into place; a kernel directory is never modified
// after that (reinstalling replaces it whole).
package vmkernel

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/vmkernel/deb"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// KernelFormat is the version of the kernel directory layout Install
// writes. It changes when an install would keep different files (e.g.
// StoreModules grows); a kernel of an older format may lack modules.
const KernelFormat = 2

// Kernel is an installed kernel. Its files are read-only once installed.
type Kernel struct {
	// Format is the KernelFormat it was installed with (0: before formats).
	Format  int    `json:"format"`
	Release string `json:"release"` // "6.1.0-56-amd64"
	Arch    string `json:"arch"`    // "amd64" or "arm64"
	Package string `json:"package"` // Debian package it came from
	Version string `json:"version"` // the package's version
	// ImageFile is the boot image's file name in Dir: "vmlinux" (ELF with a
	// PVH note, for qemu -kernel) or "Image" (uncompressed arm64 Image).
	ImageFile string `json:"image"`
	// ContentHash ("sha256:…") covers the boot image and every kept module
	// (path and content): equal hashes mean equal boot assets.
	ContentHash string `json:"content_hash"`
	// Modules lists the names of the modules kept, sorted.
	Modules []string `json:"modules"`
	// Source is where the package came from (file name or URL).
	Source    string `json:"source"`
	DebSHA256 string `json:"deb_sha256"`

	// Dir is the kernel's directory (not stored in kernel.json).
	Dir string `json:"-"`
	// Default reports whether this is its arch's default kernel.
	Default bool `json:"-"`
}

// Image is the path of the boot image (vmlinux or Image).
func (k *Kernel) Image() string { return filepath.Join(k.Dir, k.ImageFile) }

// Config is the path of the kernel's build config ("" when the package had
// none).
func (k *Kernel) Config() string {
	p := filepath.Join(k.Dir, "config")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// ModuleIndex reads the kernel's module index.
func (k *Kernel) ModuleIndex() (*ModuleIndex, error) {
	ix, err := LoadModuleIndex(k.Dir)
	if err != nil {
		return nil, fmt.Errorf("kernel %s (%s): %w", k.Release, k.Arch, err)
	}
	return ix, nil
}

// ModulesFor returns the modules to load for names (module names or
// aliases), dependencies first, each once (see ModuleIndex.Resolve). Names
// built into the kernel are left out; a name the kernel lacks, or one the
// store did not keep (not in StoreModules' closure), is an error.
func (k *Kernel) ModulesFor(names ...string) ([]Module, error) {
	ix, err := k.ModuleIndex()
	if err != nil {
		return nil, err
	}
	mods, err := ix.Resolve(names...)
	if err != nil {
		return nil, fmt.Errorf("kernel %s (%s): %w", k.Release, k.Arch, err)
	}
	out := make([]Module, len(mods))
	for i, m := range mods {
		p := filepath.Join(k.Dir, "modules", filepath.FromSlash(m.Path))
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kernel %s (%s): module %s: %w", k.Release, k.Arch, m.Name, err)
		}
		out[i] = Module{Name: m.Name, Path: p}
	}
	return out, nil
}

// Store keeps installed kernels in Dir. Its methods are safe to call from
// several processes at once (an flock on Dir/.lock serializes changes).
type Store struct {
	Dir string
	Log hclog.Logger // nil: no logging
}

// DefaultDir is the store directory under a state dir.
func DefaultDir(stateDir string) string { return filepath.Join(stateDir, "kernels") }

// InstallOptions say which kernel package to install. Exactly one of Deb,
// URL and Package is set.
type InstallOptions struct {
	// Arch is "amd64" or "arm64". Empty means the package's own (Deb, URL)
	// or this machine's (Package). A package of another arch is refused.
	Arch string
	// Deb is the path of a local .deb (any OS).
	Deb string
	// URL is an http(s) URL of a .deb, e.g. a linux-image-<ver>-cloud-arm64
	// .deb from a Debian mirror's pool on macOS, where there is no apt.
	URL string
	// SHA256 (hex), when set, must match the .deb read from Deb or URL.
	SHA256 string
	// Package is a Debian package name fetched with `apt-get download`
	// (Debian/Ubuntu hosts only; another arch needs `dpkg
	// --add-architecture ARCH && apt-get update` first). A metapackage
	// such as linux-image-amd64 is resolved to the versioned
	// linux-image-<release> package it depends on.
	Package string
	// Default makes the kernel its arch's default. The first kernel of an
	// arch becomes the default anyway.
	Default bool
	// Progress, when set, receives one-line progress messages.
	Progress func(msg string)
}

var (
	reVmlinuz    = regexp.MustCompile(`^boot/vmlinuz-([A-Za-z0-9._+~-]+)$`)
	reConfig     = regexp.MustCompile(`^boot/config-([A-Za-z0-9._+~-]+)$`)
	reModuleTree = regexp.MustCompile(`^(?:usr/)?lib/modules/([A-Za-z0-9._+~-]+)/(.+)$`)
	reVersioned  = regexp.MustCompile(`^linux-image-[0-9]`)
)

func (s *Store) log() hclog.Logger {
	if s.Log == nil {
		return hclog.NewNullLogger()
	}
	return s.Log
}

// lock takes the store's exclusive lock; the returned func releases it.
func (s *Store) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock kernel store %s: %w", s.Dir, err)
		}
		return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
	case <-ctx.Done():
		// The pending flock returns once the holder lets go; closing f
		// then releases the lock we no longer want.
		go func() { <-done; f.Close() }()
		return nil, ctx.Err()
	}
}

// Install installs the kernel package opts names and returns it. Installing
// a kernel already present with the same content returns the installed one;
// a different build of the same release and arch replaces it.
func (s *Store) Install(ctx context.Context, opts InstallOptions) (*Kernel, error) {
	n := 0
	for _, v := range []string{opts.Deb, opts.URL, opts.Package} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errdefs.InvalidArgument("kernel install: give exactly one of a .deb file, a URL or a package name")
	}
	if opts.Arch != "" && opts.Arch != "amd64" && opts.Arch != "arm64" {
		return nil, errdefs.InvalidArgument("kernel install: arch %q: want amd64 or arm64", opts.Arch)
	}
	progress := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.log().Info(msg)
		if opts.Progress != nil {
			opts.Progress(msg)
		}
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()

	tmp, err := os.MkdirTemp(s.Dir, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	debPath, source := opts.Deb, opts.Deb
	switch {
	case opts.URL != "":
		source = opts.URL
		progress("downloading %s", opts.URL)
		if debPath, err = download(ctx, opts.URL, tmp); err != nil {
			return nil, err
		}
	case opts.Package != "":
		arch := opts.Arch
		if arch == "" {
			arch = hostArch()
		}
		if debPath, err = DownloadPackage(ctx, opts.Package, arch, tmp, opts.Progress); err != nil {
			return nil, err
		}
		source = filepath.Base(debPath)
	default:
		source = filepath.Base(opts.Deb)
	}
	sum, err := fileSHA256(debPath)
	if err != nil {
		return nil, fmt.Errorf("kernel install: %w", err)
	}
	if opts.SHA256 != "" && !strings.EqualFold(opts.SHA256, sum) {
		return nil, errdefs.InvalidArgument("kernel install: %s has sha256 %s, want %s", source, sum, opts.SHA256)
	}
	progress("extracting %s", filepath.Base(debPath))
	k, err := s.build(ctx, debPath, opts.Arch, filepath.Join(tmp, "k"))
	if err != nil {
		return nil, fmt.Errorf("kernel install %s: %w", source, err)
	}
	k.Source, k.DebSHA256 = source, sum
	if err := writeJSONAtomic(filepath.Join(tmp, "k", "kernel.json"), k); err != nil {
		return nil, err
	}
	if err := syncDir(filepath.Join(tmp, "k")); err != nil {
		return nil, err
	}

	final := filepath.Join(s.Dir, k.Release+"-"+k.Arch)
	if exists(final) {
		old, err := readKernel(final)
		if err == nil && old.ContentHash == k.ContentHash && old.Format == k.Format {
			progress("kernel %s (%s) is already installed", k.Release, k.Arch)
			return s.finish(old, opts.Default)
		}
		// A different build of the release, or a directory that is not a
		// kernel (no readable kernel.json): replace it whole.
		if err := os.Rename(final, filepath.Join(tmp, "old")); err != nil {
			return nil, err
		}
		progress("replacing kernel %s (%s)", k.Release, k.Arch)
	}
	if err := os.Rename(filepath.Join(tmp, "k"), final); err != nil {
		return nil, err
	}
	if err := syncDir(s.Dir); err != nil {
		return nil, err
	}
	k.Dir = final
	progress("installed kernel %s (%s) in %s", k.Release, k.Arch, final)
	return s.finish(k, opts.Default)
}

// finish sets the default pointer when asked or when the arch has none.
func (s *Store) finish(k *Kernel, makeDefault bool) (*Kernel, error) {
	cur, _ := s.defaultRelease(k.Arch)
	if makeDefault || cur == "" || !exists(filepath.Join(s.Dir, cur+"-"+k.Arch)) {
		if err := s.setDefault(k); err != nil {
			return nil, err
		}
		cur = k.Release
	}
	k.Default = cur == k.Release
	return k, nil
}

// build extracts the package at debPath into dir (created) and returns the
// kernel's metadata (Dir unset).
func (s *Store) build(ctx context.Context, debPath, wantArch, dir string) (*Kernel, error) {
	if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Open(debPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		vmlinuz, config []byte
		release         string
		modRelease      string
		mods            []ModInfo
		builtin         []string
		builtinAliases  = map[string]string{}
	)
	ctrl, err := deb.Read(f, func(e deb.Entry, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type != tar.TypeReg {
			return nil
		}
		if m := reVmlinuz.FindStringSubmatch(e.Name); m != nil {
			if vmlinuz != nil {
				return fmt.Errorf("more than one kernel image in the package")
			}
			release = m[1]
			vmlinuz, err = io.ReadAll(io.LimitReader(r, maxVmlinux))
			return err
		}
		if reConfig.MatchString(e.Name) {
			config, err = io.ReadAll(io.LimitReader(r, 16<<20))
			return err
		}
		m := reModuleTree.FindStringSubmatch(e.Name)
		if m == nil {
			return nil
		}
		if modRelease != "" && m[1] != modRelease {
			return fmt.Errorf("modules of two releases (%s, %s) in the package", modRelease, m[1])
		}
		modRelease = m[1]
		rel := m[2]
		switch {
		case rel == "modules.builtin":
			return eachLine(r, func(_ int, line string) error {
				builtin = append(builtin, ModuleName(line))
				return nil
			})
		case rel == "modules.builtin.modinfo":
			data, err := io.ReadAll(io.LimitReader(r, 64<<20))
			if err != nil {
				return err
			}
			for _, kv := range bytes.Split(data, []byte{0}) {
				mod, rest, ok := strings.Cut(string(kv), ".")
				if k, v, ok2 := strings.Cut(rest, "="); ok && ok2 && k == "alias" {
					builtinAliases[v] = ModuleName(mod)
				}
			}
			return nil
		case strings.HasPrefix(rel, "kernel/") && isModuleFile(rel):
			data, err := readModule(rel, r)
			if err != nil {
				return err
			}
			plain := normalizeKoPath(rel)
			mi, err := ParseModInfo(plain, data)
			if err != nil {
				return err
			}
			mods = append(mods, mi)
			p := filepath.Join(dir, "modules", filepath.FromSlash(plain))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			return os.WriteFile(p, data, 0o644)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if vmlinuz == nil {
		if reVersioned.MatchString(ctrl.Package) {
			return nil, fmt.Errorf("package %s has no /boot/vmlinuz-*", ctrl.Package)
		}
		return nil, fmt.Errorf("package %s has no kernel image (a metapackage? its Depends: %s)", ctrl.Package, ctrl.Depends)
	}
	arch := ctrl.Architecture
	if arch != "amd64" && arch != "arm64" {
		return nil, fmt.Errorf("package %s is for %q; only amd64 and arm64 kernels are supported", ctrl.Package, arch)
	}
	if wantArch != "" && wantArch != arch {
		return nil, errdefs.InvalidArgument("package %s is for %s, not %s", ctrl.Package, arch, wantArch)
	}
	if err := checkRelease(release); err != nil || strings.HasPrefix(release, ".") {
		return nil, fmt.Errorf("boot/vmlinuz-%s: bad release name", release)
	}
	if modRelease != "" && modRelease != release {
		return nil, fmt.Errorf("kernel image is %s but modules are %s", release, modRelease)
	}
	k := &Kernel{Format: KernelFormat, Release: release, Arch: arch, Package: ctrl.Package, Version: ctrl.Version}

	// Boot image.
	switch arch {
	case "amd64":
		k.ImageFile = "vmlinux"
		err = atomicfile.Write(filepath.Join(dir, k.ImageFile), 0o644, true, func(out *os.File) error {
			if err := DecompressBzImage(vmlinuz, out); err != nil {
				return err
			}
			return VerifyPVH(out)
		})
	case "arm64":
		k.ImageFile = "Image"
		var img []byte
		if img, err = ARM64Image(vmlinuz); err == nil {
			err = atomicfile.WriteFile(filepath.Join(dir, k.ImageFile), img, 0o644)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("boot/vmlinuz-%s: %w", release, err)
	}
	if config != nil {
		if err := atomicfile.WriteFile(filepath.Join(dir, "config"), config, 0o644); err != nil {
			return nil, err
		}
	}

	// Modules: keep StoreModules' closure, drop the rest.
	full := NewModuleIndex(mods, builtin, builtinAliases)
	var want []string
	for _, n := range StoreModules {
		if _, _, ok := full.lookup(n); ok {
			want = append(want, n)
		} else {
			s.log().Debug("kernel lacks module", "release", release, "module", n)
		}
	}
	sub, err := full.Subset(want...)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, n := range sub.Names() {
		mi, _ := sub.Info(n)
		keep[mi.Path] = true
		k.Modules = append(k.Modules, n)
	}
	for _, mi := range mods {
		if !keep[mi.Path] {
			if err := os.Remove(filepath.Join(dir, "modules", filepath.FromSlash(mi.Path))); err != nil {
				return nil, err
			}
		}
	}
	if err := pruneEmptyDirs(filepath.Join(dir, "modules")); err != nil {
		return nil, err
	}
	if err := sub.WriteFiles(dir); err != nil {
		return nil, err
	}
	k.ContentHash, err = contentHash(dir, k.ImageFile, sub)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func isModuleFile(p string) bool {
	for _, suf := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, suf) {
			return true
		}
	}
	return false
}

// contentHash hashes the boot image and each kept module (synced to disk
// on the way: the directory is about to be renamed into place).
func contentHash(dir, image string, ix *ModuleIndex) (string, error) {
	h := sha256.New()
	add := func(label, p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fh := sha256.New()
		if _, err := io.Copy(fh, f); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%x\n", label, fh.Sum(nil))
		return nil
	}
	if err := add("image", filepath.Join(dir, image)); err != nil {
		return "", err
	}
	for _, n := range ix.Names() {
		mi, _ := ix.Info(n)
		if err := add("module "+mi.Path, filepath.Join(dir, "modules", filepath.FromSlash(mi.Path))); err != nil {
			return "", err
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// List returns the installed kernels, sorted by arch then release.
func (s *Store) List() ([]*Kernel, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Kernel
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		k, err := readKernel(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			s.log().Warn("skipping unreadable kernel directory", "dir", e.Name(), "error", err)
			continue
		}
		def, _ := s.defaultRelease(k.Arch)
		k.Default = def == k.Release
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *Kernel) int {
		if c := strings.Compare(a.Arch, b.Arch); c != 0 {
			return c
		}
		return strings.Compare(a.Release, b.Release)
	})
	return out, nil
}

// Get returns the kernel release for arch; an empty release means the
// arch's default. Not installed is an errdefs NotFound error.
func (s *Store) Get(release, arch string) (*Kernel, error) {
	if arch == "" {
		arch = hostArch()
	}
	if release == "" {
		def, err := s.defaultRelease(arch)
		if err != nil || def == "" {
			return nil, errdefs.NotFound("no default %s kernel in %s (install one: berth system kernel install --arch %s)", arch, s.Dir, arch)
		}
		release = def
	}
	if err := checkRelease(release); err != nil {
		return nil, err
	}
	k, err := readKernel(filepath.Join(s.Dir, release+"-"+arch))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.NotFound("kernel %s (%s) is not installed in %s", release, arch, s.Dir)
	}
	if err != nil {
		return nil, err
	}
	def, _ := s.defaultRelease(arch)
	k.Default = def == k.Release
	return k, nil
}

// SetDefault makes an installed kernel its arch's default.
func (s *Store) SetDefault(ctx context.Context, release, arch string) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	k, err := s.Get(release, arch)
	if err != nil {
		return err
	}
	return s.setDefault(k)
}

func (s *Store) setDefault(k *Kernel) error {
	link := filepath.Join(s.Dir, "default-"+k.Arch)
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(k.Release+"-"+k.Arch, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(s.Dir)
}

// defaultRelease returns the release the arch's default pointer names ("" if
// none).
func (s *Store) defaultRelease(arch string) (string, error) {
	target, err := os.Readlink(filepath.Join(s.Dir, "default-"+arch))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(target, "-"+arch), nil
}

// Remove deletes an installed kernel; removing one that is not installed
// is not an error. Removing the default leaves the arch without a default.
// VMs already running from it keep their open files.
func (s *Store) Remove(ctx context.Context, release, arch string) error {
	if arch == "" {
		arch = hostArch()
	}
	if err := checkRelease(release); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(s.Dir, release+"-"+arch)
	if !exists(dir) {
		return nil
	}
	trash, err := os.MkdirTemp(s.Dir, ".rm-")
	if err != nil {
		return err
	}
	if err := os.Rename(dir, filepath.Join(trash, "k")); err != nil {
		os.Remove(trash)
		return err
	}
	if def, _ := s.defaultRelease(arch); def == release {
		if err := os.Remove(filepath.Join(s.Dir, "default-"+arch)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := syncDir(s.Dir); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

func checkRelease(r string) error {
	if r == "" || r == "." || r == ".." || strings.ContainsAny(r, "/\\\x00") {
		return errdefs.InvalidArgument("bad kernel release %q", r)
	}
	return nil
}

// OpenKernel reads the installed kernel in dir (a store's
// <release>-<arch> directory, or the directory of its boot image).
func OpenKernel(dir string) (*Kernel, error) {
	k, err := readKernel(dir)
	if err != nil {
		return nil, fmt.Errorf("kernel directory %s: %w", dir, err)
	}
	return k, nil
}

func readKernel(dir string) (*Kernel, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "kernel.json"), err)
	}
	if k.Release == "" || k.Arch == "" || k.ImageFile == "" {
		return nil, fmt.Errorf("%s: incomplete", filepath.Join(dir, "kernel.json"))
	}
	k.Dir = dir
	return &k, nil
}

// hostArch is this machine's arch in Debian's terms.
func hostArch() string {
	if runtime.GOARCH == "arm64" {
		return "arm64"
	}
	return "amd64"
}

// download fetches url into dir and returns the file's path.
func download(ctx context.Context, url, dir string) (string, error) {
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return "", errdefs.InvalidArgument("kernel install: URL %q: only http and https are supported", url)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", errdefs.InvalidArgument("kernel install: URL %q: %v", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s", url, resp.Status)
	}
	p := filepath.Join(dir, "download.deb")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	return p, f.Close()
}

// DownloadPackage fetches the kernel package pkg for arch with `apt-get
// download` into dir and returns the .deb's path there. A metapackage (such
// as linux-image-amd64) is followed to the versioned linux-image package it
// depends on; only that one is kept. Needs apt (Debian/Ubuntu); another
// arch needs `dpkg --add-architecture ARCH && apt-get update` first.
func DownloadPackage(ctx context.Context, pkg, arch, dir string, progressFn func(string)) (string, error) {
	progress := func(format string, args ...any) {
		if progressFn != nil {
			progressFn(fmt.Sprintf(format, args...))
		}
	}
	if arch != "amd64" && arch != "arm64" {
		return "", errdefs.InvalidArgument("kernel package %s: arch %q: want amd64 or arm64", pkg, arch)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", errdefs.NotImplemented("kernel install: no apt-get on this machine: give a .deb file or a URL instead of a package name")
	}
	for range 3 {
		progress("apt-get download %s:%s", pkg, arch)
		p, err := aptDownload(ctx, pkg, arch, dir)
		if err != nil {
			return "", err
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		ctrl, err := deb.Read(f, nil)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		if reVersioned.MatchString(ctrl.Package) {
			final := filepath.Join(dir, filepath.Base(p))
			if err := os.Rename(p, final); err != nil {
				return "", err
			}
			_ = os.Remove(filepath.Dir(p))
			return final, nil
		}
		next := kernelDependency(ctrl.Depends)
		if next == "" {
			return "", fmt.Errorf("package %s is neither a versioned kernel package nor depends on one (Depends: %s)", ctrl.Package, ctrl.Depends)
		}
		progress("%s depends on %s", ctrl.Package, next)
		_ = os.RemoveAll(filepath.Dir(p))
		pkg = next
	}
	return "", fmt.Errorf("package %s: too many metapackage levels", pkg)
}

// kernelDependency returns the first linux-image-<version> package named in
// a Depends field.
func kernelDependency(depends string) string {
	for _, clause := range strings.Split(depends, ",") {
		for _, alt := range strings.Split(clause, "|") {
			name := strings.TrimSpace(alt)
			if i := strings.IndexAny(name, " ("); i >= 0 {
				name = name[:i]
			}
			name, _, _ = strings.Cut(name, ":")
			if reVersioned.MatchString(name) {
				return name
			}
		}
	}
	return ""
}

func aptDownload(ctx context.Context, pkg, arch, dir string) (string, error) {
	sub, err := os.MkdirTemp(dir, ".apt-")
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(sub)
		}
	}()
	// apt's _apt user should be able to write the download directory;
	// otherwise apt downloads unsandboxed as root (and says so).
	_ = os.Chmod(sub, 0o777)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+":"+arch)
	cmd.Dir = sub
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		hint := ""
		if arch != hostArch() {
			hint = fmt.Sprintf(" (for another arch run: dpkg --add-architecture %s && apt-get update)", arch)
		}
		return "", fmt.Errorf("apt-get download %s:%s: %v: %s%s", pkg, arch, err, msg, hint)
	}
	debs, _ := filepath.Glob(filepath.Join(sub, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s:%s: expected one .deb, found %d", pkg, arch, len(debs))
	}
	ok = true
	return debs[0], nil
}
