package vmkernel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// storeEntries lists a store directory, to prove nothing is left behind.
func storeEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != ".lock" {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestStoreInstallFakeKernel installs a small package built from real
// modules (zstd-compressed .ko.zst in a zstd data tarball, so the host-side
// decompression is exercised): layout, module closure, default pointer,
// idempotent reinstall.
func TestStoreInstallFakeKernel(t *testing.T) {
	cached := vmkerneltest.Kernel(t)
	debPath := vmkerneltest.FakeKernelDeb(t, t.TempDir(), vmkerneltest.FakeKernel{
		Compression: "zst", ModuleCompression: "zst", Modules: cached})
	s := &vmkernel.Store{Dir: t.TempDir()}
	ctx := context.Background()
	var progress []string
	k, err := s.Install(ctx, vmkernel.InstallOptions{Deb: debPath, Progress: func(m string) { progress = append(progress, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "9.9.9-1-amd64" || k.Arch != "amd64" || k.Version != "9.9.9-1" || !k.Default || k.ImageFile != "vmlinux" {
		t.Errorf("kernel %+v", k)
	}
	if len(progress) == 0 {
		t.Error("no progress reported")
	}
	img, err := os.ReadFile(k.Image())
	if err != nil || !bytes.Equal(img, vmkerneltest.FakeVmlinux(true)) {
		t.Fatalf("vmlinux is not the package's decompressed ELF (%v)", err)
	}
	if k.Config() == "" {
		t.Error("config missing")
	}
	if !slices.Equal(k.Modules, cached.Modules) {
		t.Errorf("kept modules %v, want the cache kernel's %v", k.Modules, cached.Modules)
	}
	mods, err := k.ModulesFor(vmkernel.QemuModules...)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := cached.ModulesFor(vmkernel.QemuModules...)
	if !slices.Equal(names(mods), names(want)) {
		t.Errorf("load order %v, want %v", names(mods), names(want))
	}
	for i, m := range mods {
		a, _ := os.ReadFile(m.Path)
		b, _ := os.ReadFile(want[i].Path)
		if !bytes.Equal(a, b) || !strings.HasSuffix(m.Path, ".ko") {
			t.Errorf("%s: not the plain module (%s)", m.Name, m.Path)
		}
	}
	if got := storeEntries(t, s.Dir); !slices.Equal(got, []string{"9.9.9-1-amd64-amd64", "default-amd64"}) {
		t.Errorf("store holds %v", got)
	}

	// Same content again, packaged differently: the hash says it is the same.
	modComp := "gz"
	if _, err := exec.LookPath("xz"); err == nil {
		modComp = "xz" // .ko.xz, as Debian 13 ships modules
	}
	again := vmkerneltest.FakeKernelDeb(t, t.TempDir(), vmkerneltest.FakeKernel{Compression: "gz", ModuleCompression: modComp, Modules: cached})
	k2, err := s.Install(ctx, vmkernel.InstallOptions{Deb: again})
	if err != nil {
		t.Fatal(err)
	}
	if k2.ContentHash != k.ContentHash || k2.Source != k.Source {
		t.Errorf("reinstall of the same content: hash %s → %s, source %s → %s", k.ContentHash, k2.ContentHash, k.Source, k2.Source)
	}

	// Different content under the same release replaces it whole.
	bare := vmkerneltest.FakeKernelDeb(t, t.TempDir(), vmkerneltest.FakeKernel{})
	k3, err := s.Install(ctx, vmkernel.InstallOptions{Deb: bare})
	if err != nil {
		t.Fatal(err)
	}
	if k3.ContentHash == k.ContentHash || len(k3.Modules) != 0 {
		t.Errorf("replacement: hash %s modules %v", k3.ContentHash, k3.Modules)
	}
	if _, err := k3.ModulesFor("ext4"); err == nil {
		t.Error("ModulesFor on a kernel without modules succeeded")
	}
	if got := storeEntries(t, s.Dir); len(got) != 2 {
		t.Errorf("after replacement the store holds %v", got)
	}
}

func TestStoreDefaultsListRemove(t *testing.T) {
	s := &vmkernel.Store{Dir: t.TempDir()}
	ctx := context.Background()
	dir := t.TempDir()
	install := func(fk vmkerneltest.FakeKernel, def bool) *vmkernel.Kernel {
		t.Helper()
		k, err := s.Install(ctx, vmkernel.InstallOptions{Deb: vmkerneltest.FakeKernelDeb(t, dir, fk), Default: def})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if _, err := s.Get("", "amd64"); !errdefs.IsNotFound(err) {
		t.Fatalf("empty store Get: %v", err)
	}
	a := install(vmkerneltest.FakeKernel{Release: "1.0-amd64"}, false)
	b := install(vmkerneltest.FakeKernel{Release: "2.0-amd64"}, false)
	arm := install(vmkerneltest.FakeKernel{Arch: "arm64", Release: "1.0-cloud-arm64", Compression: "none"}, false)
	if !a.Default || b.Default || !arm.Default {
		t.Errorf("defaults: first amd64 %v, second %v, first arm64 %v", a.Default, b.Default, arm.Default)
	}
	img, err := os.ReadFile(arm.Image())
	if err != nil || arm.ImageFile != "Image" || string(img[0x38:0x3c]) != "ARM\x64" {
		t.Errorf("arm64 Image %s: %v", arm.Image(), err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range list {
		got = append(got, k.Arch+"/"+k.Release+map[bool]string{true: "*"}[k.Default])
	}
	if want := []string{"amd64/1.0-amd64*", "amd64/2.0-amd64", "arm64/1.0-cloud-arm64*"}; !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if err := s.SetDefault(ctx, "2.0-amd64", "amd64"); err != nil {
		t.Fatal(err)
	}
	if k, err := s.Get("", "amd64"); err != nil || k.Release != "2.0-amd64" || !k.Default {
		t.Fatalf("default after SetDefault: %+v %v", k, err)
	}
	if k, err := s.Get("1.0-amd64", "amd64"); err != nil || k.Default {
		t.Fatalf("Get 1.0: %+v %v", k, err)
	}
	if _, err := s.Get("3.0-amd64", "amd64"); !errdefs.IsNotFound(err) {
		t.Errorf("Get of a missing release: %v", err)
	}
	if _, err := s.Get("../../etc", "amd64"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Get of a path: %v", err)
	}
	// Removing the default leaves the arch without one; removing twice is fine.
	for range 2 {
		if err := s.Remove(ctx, "2.0-amd64", "amd64"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get("", "amd64"); !errdefs.IsNotFound(err) {
		t.Errorf("default after removing it: %v", err)
	}
	if _, err := s.Get("1.0-amd64", "amd64"); err != nil {
		t.Errorf("the other kernel went too: %v", err)
	}
	for _, r := range [][2]string{{"1.0-amd64", "amd64"}, {"1.0-cloud-arm64", "arm64"}} {
		if err := s.Remove(ctx, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if got := storeEntries(t, s.Dir); len(got) != 0 {
		t.Errorf("store not empty after removing everything: %v", got)
	}
}

// TestStoreInstallRefuses: bad packages and options fail with a clear
// error and leave the store as it was.
func TestStoreInstallRefuses(t *testing.T) {
	s := &vmkernel.Store{Dir: t.TempDir()}
	ctx := context.Background()
	dir := t.TempDir()
	good := vmkerneltest.FakeKernelDeb(t, dir, vmkerneltest.FakeKernel{})
	meta, err := vmkerneltest.BuildDeb("Package: linux-image-amd64\nVersion: 6.1\nArchitecture: amd64\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n", "gz", mustTarGz(t))
	if err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(dir, "meta.deb")
	if err := os.WriteFile(metaPath, meta, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		opts vmkernel.InstallOptions
		want string
	}{
		"no source":     {vmkernel.InstallOptions{}, "exactly one"},
		"two sources":   {vmkernel.InstallOptions{Deb: good, URL: "http://127.0.0.1:1/x.deb"}, "exactly one"},
		"bad arch":      {vmkernel.InstallOptions{Deb: good, Arch: "riscv64"}, "riscv64"},
		"arch mismatch": {vmkernel.InstallOptions{Deb: good, Arch: "arm64"}, "not arm64"},
		"sha mismatch":  {vmkernel.InstallOptions{Deb: good, SHA256: strings.Repeat("0", 64)}, "sha256"},
		"missing file":  {vmkernel.InstallOptions{Deb: filepath.Join(dir, "nope.deb")}, "nope.deb"},
		"not a deb":     {vmkernel.InstallOptions{Deb: "/proc/self/exe"}, "not a .deb"},
		"no pvh":        {vmkernel.InstallOptions{Deb: vmkerneltest.FakeKernelDeb(t, t.TempDir(), vmkerneltest.FakeKernel{NoPVH: true})}, "no PVH entry note"},
		"metapackage":   {vmkernel.InstallOptions{Deb: metaPath}, "metapackage"},
		"ftp url":       {vmkernel.InstallOptions{URL: "ftp://127.0.0.1/x.deb"}, "only http"},
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Install(cancelled, vmkernel.InstallOptions{Deb: good}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("cancelled install: %v", err)
	}
	if got := storeEntries(t, s.Dir); len(got) != 0 {
		t.Fatalf("a cancelled install left: %v", got)
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := s.Install(ctx, c.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if got := storeEntries(t, s.Dir); len(got) != 0 {
				t.Fatalf("left behind: %v", got)
			}
		})
	}
}

func mustTarGz(t *testing.T) []byte {
	t.Helper()
	b, err := vmkerneltest.Tar("gz", vmkerneltest.TarEntry{Name: "./usr/share/doc/x", Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStoreInstallURL downloads a package from a loopback HTTP server,
// checking its sha256; a 404 is a clear error.
func TestStoreInstallURL(t *testing.T) {
	debPath := vmkerneltest.FakeKernelDeb(t, t.TempDir(), vmkerneltest.FakeKernel{Arch: "arm64"})
	data, err := os.ReadFile(debPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pool/k.deb" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.Copy(w, bytes.NewReader(data))
	}))
	defer srv.Close()
	s := &vmkernel.Store{Dir: t.TempDir()}
	k, err := s.Install(context.Background(), vmkernel.InstallOptions{URL: srv.URL + "/pool/k.deb", SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	if k.Arch != "arm64" || k.Source != srv.URL+"/pool/k.deb" || k.DebSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("kernel %+v", k)
	}
	if _, err := s.Install(context.Background(), vmkernel.InstallOptions{URL: srv.URL + "/missing.deb"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
}

// TestStoreConcurrentInstalls: several installs of one package at once
// (as parallel test processes do) all succeed with one result.
func TestStoreConcurrentInstalls(t *testing.T) {
	debPath := vmkerneltest.FakeKernelDeb(t, t.TempDir(), vmkerneltest.FakeKernel{})
	dir := t.TempDir()
	var wg sync.WaitGroup
	hashes := make([]string, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &vmkernel.Store{Dir: dir} // separate values share only the directory
			k, err := s.Install(context.Background(), vmkernel.InstallOptions{Deb: debPath})
			errs[i] = err
			if err == nil {
				hashes[i] = k.ContentHash
			}
		}()
	}
	wg.Wait()
	for i := range 4 {
		if errs[i] != nil || hashes[i] != hashes[0] {
			t.Errorf("install %d: %v (hash %s vs %s)", i, errs[i], hashes[i], hashes[0])
		}
	}
	if got := storeEntries(t, dir); len(got) != 2 {
		t.Errorf("store holds %v", got)
	}
}

// TestStoreInstallOverBrokenDir: a kernel directory without kernel.json
// (damaged by hand) is replaced by the next install.
func TestStoreInstallOverBrokenDir(t *testing.T) {
	s := &vmkernel.Store{Dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(s.Dir, "9.9.9-1-amd64-amd64", "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Fatalf("List with a broken dir: %v %v", list, err)
	}
	k, err := s.Install(context.Background(), vmkernel.InstallOptions{Deb: vmkerneltest.FakeKernelDeb(t, t.TempDir(), vmkerneltest.FakeKernel{})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.Image()); err != nil {
		t.Fatal(err)
	}
}

// TestStoreInstallPackage drives the apt path with a stand-in apt-get on
// PATH (tests send no traffic off the machine): the metapackage is
// followed to the versioned package it depends on; a package apt does not
// know fails with apt's message.
func TestStoreInstallPackage(t *testing.T) {
	repo := t.TempDir()
	kernelDeb := vmkerneltest.FakeKernelDeb(t, repo, vmkerneltest.FakeKernel{})
	meta, err := vmkerneltest.BuildDeb("Package: linux-image-amd64\nVersion: 9.9.9-1\nArchitecture: amd64\nDepends: linux-image-9.9.9-1-amd64 (= 9.9.9-1)\n", "gz", mustTarGz(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "linux-image-amd64_9.9.9-1_amd64.deb"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "apt.log")
	script := `#!/bin/sh
# stand-in for: apt-get download -q NAME:ARCH
echo "$@" >> ` + log + `
name=${3%%:*}; arch=${3##*:}
for f in ` + repo + `/${name}_*_${arch}.deb; do
  [ -e "$f" ] && exec cp "$f" .
done
echo "E: Unable to locate package $3" >&2
exit 100
`
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	s := &vmkernel.Store{Dir: t.TempDir()}
	k, err := s.Install(context.Background(), vmkernel.InstallOptions{Package: "linux-image-amd64", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if k.Package != "linux-image-9.9.9-1-amd64" || k.Source != filepath.Base(kernelDeb) {
		t.Errorf("installed %+v", k)
	}
	calls, _ := os.ReadFile(log)
	if string(calls) != "download -q linux-image-amd64:amd64\ndownload -q linux-image-9.9.9-1-amd64:amd64\n" {
		t.Errorf("apt-get calls:\n%s", calls)
	}
	_, err = s.Install(context.Background(), vmkernel.InstallOptions{Package: "linux-image-cloud-arm64", Arch: "arm64"})
	if err == nil || !strings.Contains(err.Error(), "Unable to locate package linux-image-cloud-arm64:arm64") ||
		(runtime.GOARCH == "amd64" && !strings.Contains(err.Error(), "dpkg --add-architecture arm64")) {
		t.Errorf("unknown package: %v", err)
	}
	if got := storeEntries(t, s.Dir); len(got) != 2 {
		t.Errorf("store holds %v", got)
	}
	// The installed kernel reads back from its directory.
	back, err := vmkernel.OpenKernel(k.Dir)
	if err != nil || back.ContentHash != k.ContentHash {
		t.Errorf("OpenKernel: %+v %v", back, err)
	}
	if _, err := vmkernel.OpenKernel(t.TempDir()); err == nil {
		t.Error("OpenKernel of an empty dir succeeded")
	}
}
