package vmkernel_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

// initramfsFixture writes small host files standing in for the agent, the
// sandbox init and two modules.
func initramfsFixture(t *testing.T) vmkernel.InitramfsSpec {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return vmkernel.InitramfsSpec{
		Agent:       write("agent", "AGENT-BINARY", 0o700), // host mode must not leak
		SandboxInit: write("sandbox-init", "SANDBOX-INIT", 0o755),
		Modules: []vmkernel.Module{
			{Name: "virtio_ring", Path: write("virtio_ring.ko", "ring", 0o600)},
			{Name: "virtio", Path: write("virtio.ko", "virtio!", 0o644)},
		},
		Files: []vmkernel.InitramfsFile{
			{Path: "/etc/berth/agent.json", Data: []byte(`{"x":1}`), Mode: 0o600},
			{Path: "/etc/hostname", Source: write("hostname", "guest\n", 0o666)},
		},
	}
}

var time0 = time.Unix(1, 0)

type cpioEntry struct {
	mode, uid, gid, mtime, rmajor, rminor uint64
	data                                  string
}

func readCpio(t *testing.T, data []byte) ([]string, map[string]cpioEntry) {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	var names []string
	ents := map[string]cpioEntry{}
	for _, r := range recs {
		if r.Name == cpio.Trailer {
			continue
		}
		var content []byte
		if r.ReaderAt != nil {
			content, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, r.Name)
		ents[r.Name] = cpioEntry{r.Mode, r.UID, r.GID, r.MTime, r.Rmajor, r.Rminor, string(content)}
	}
	return names, ents
}

func TestBuildInitramfsLayout(t *testing.T) {
	spec := initramfsFixture(t)
	var buf bytes.Buffer
	if err := vmkernel.BuildInitramfs(&buf, spec); err != nil {
		t.Fatal(err)
	}
	names, ents := readCpio(t, buf.Bytes())
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %v", names)
	}
	want := map[string]cpioEntry{
		"init":                      {mode: cpio.S_IFREG | 0o755, data: "AGENT-BINARY"},
		"sbin/berth-sandbox-init":   {mode: cpio.S_IFREG | 0o755, data: "SANDBOX-INIT"},
		"modules/00-virtio_ring.ko": {mode: cpio.S_IFREG | 0o644, data: "ring"},
		"modules/01-virtio.ko":      {mode: cpio.S_IFREG | 0o644, data: "virtio!"},
		"dev/console":               {mode: cpio.S_IFCHR | 0o600, rmajor: 5, rminor: 1},
		"etc/berth/agent.json":      {mode: cpio.S_IFREG | 0o600, data: `{"x":1}`},
		"etc/hostname":              {mode: cpio.S_IFREG | 0o644, data: "guest\n"},
		"tmp":                       {mode: cpio.S_IFDIR | 0o1777},
		"etc":                       {mode: cpio.S_IFDIR | 0o755},
		"etc/berth":                 {mode: cpio.S_IFDIR | 0o755},
	}
	for _, d := range []string{"dev", "mnt", "modules", "newroot", "proc", "run", "sbin", "sys"} {
		want[d] = cpioEntry{mode: cpio.S_IFDIR | 0o755}
	}
	for name, w := range want {
		got, ok := ents[name]
		if !ok {
			t.Errorf("missing /%s", name)
			continue
		}
		if got != w {
			t.Errorf("/%s = %+v, want %+v", name, got, w)
		}
	}
	if len(ents) != len(want) {
		t.Errorf("entries %v, want exactly %d", names, len(want))
	}
}

func TestBuildInitramfsDeterministic(t *testing.T) {
	spec := initramfsFixture(t)
	var a, b bytes.Buffer
	if err := vmkernel.BuildInitramfs(&a, spec); err != nil {
		t.Fatal(err)
	}
	// Host mtimes and modes change; the output must not.
	for _, p := range []string{spec.Agent, spec.Modules[0].Path} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, time0, time0); err != nil {
			t.Fatal(err)
		}
	}
	if err := vmkernel.BuildInitramfs(&b, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds of the same spec differ")
	}
	if a.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-aligned", a.Len())
	}
}

// TestBuildInitramfsGNUCpio lists and extracts the archive with GNU cpio.
func TestBuildInitramfsGNUCpio(t *testing.T) {
	cpioTool, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("GNU cpio is not installed (scripts/install-deps.sh installs it)")
	}
	spec := initramfsFixture(t)
	var buf bytes.Buffer
	if err := vmkernel.BuildInitramfs(&buf, spec); err != nil {
		t.Fatal(err)
	}
	list := exec.Command(cpioTool, "-t", "-v", "--quiet")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	for _, want := range []string{"init", "dev/console", "modules/01-virtio.ko", "sbin/berth-sandbox-init"} {
		if !strings.Contains(string(out), " "+want+"\n") {
			t.Errorf("cpio -t does not list %s:\n%s", want, out)
		}
	}
	if !strings.Contains(string(out), "crw-------") || !strings.Contains(string(out), "5,   1") && !strings.Contains(string(out), "5, 1") {
		t.Errorf("cpio -t does not show /dev/console as char 5,1:\n%s", out)
	}
	if os.Geteuid() != 0 {
		return // extracting a device node needs root
	}
	dir := t.TempDir()
	extract := exec.Command(cpioTool, "-i", "-d", "--quiet", "--no-absolute-filenames")
	extract.Dir = dir
	extract.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil || string(got) != "AGENT-BINARY" {
		t.Fatalf("extracted init = %q, %v", got, err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "dev/console"))
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("extracted dev/console is %v, %v; want a char device", fi, err)
	}
}

func TestBuildInitramfsRefuses(t *testing.T) {
	base := initramfsFixture(t)
	cases := map[string]func(s *vmkernel.InitramfsSpec){
		"no agent":         func(s *vmkernel.InitramfsSpec) { s.Agent = "" },
		"missing agent":    func(s *vmkernel.InitramfsSpec) { s.Agent = "/nonexistent/agent" },
		"missing module":   func(s *vmkernel.InitramfsSpec) { s.Modules[0].Path = "/nonexistent/x.ko" },
		"module name path": func(s *vmkernel.InitramfsSpec) { s.Modules[0].Name = "../x" },
		"relative file":    func(s *vmkernel.InitramfsSpec) { s.Files[0].Path = "etc/x" },
		"climbing file":    func(s *vmkernel.InitramfsSpec) { s.Files[0].Path = "/etc/../../x" },
		"file over init":   func(s *vmkernel.InitramfsSpec) { s.Files[0].Path = "/init" },
		"file over dir":    func(s *vmkernel.InitramfsSpec) { s.Files[0].Path = "/tmp" },
		"file under file":  func(s *vmkernel.InitramfsSpec) { s.Files[0].Path = "/init/x" },
		"directory source": func(s *vmkernel.InitramfsSpec) { s.Files[1].Source = os.TempDir() },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			s := base
			s.Modules = slices.Clone(base.Modules)
			s.Files = slices.Clone(base.Files)
			mutate(&s)
			if err := vmkernel.BuildInitramfs(io.Discard, s); err == nil {
				t.Fatal("BuildInitramfs accepted it")
			}
		})
	}
}

func TestStripModuleSignature(t *testing.T) {
	k := vmkerneltest.Kernel(t)
	mods, err := k.ModulesFor("ext4")
	if err != nil {
		t.Fatal(err)
	}
	const magic = "~Module signature appended~\n"
	for _, m := range mods {
		signed, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(signed, []byte(magic)) {
			t.Fatalf("%s: Debian modules are signed, this one is not", m.Name)
		}
		plain := vmkernel.StripModuleSignature(signed)
		if len(plain) >= len(signed)-len(magic) || bytes.Contains(plain[len(plain)-64:], []byte("Module signature")) {
			t.Errorf("%s: %d → %d bytes", m.Name, len(signed), len(plain))
		}
		if _, err := vmkernel.ParseModInfo(m.Name+".ko", plain); err != nil {
			t.Errorf("%s: stripped module is no longer a module: %v", m.Name, err)
		}
		if again := vmkernel.StripModuleSignature(plain); !bytes.Equal(again, plain) {
			t.Errorf("%s: stripping twice changed it", m.Name)
		}
	}
	// A trailer claiming more signature than there is leaves the file alone.
	bogus := append([]byte("\x7fELF....."), make([]byte, 8)...)
	bogus = append(bogus, 0, 0, 0, 0xff)
	bogus = append(bogus, magic...)
	if got := vmkernel.StripModuleSignature(bogus); !bytes.Equal(got, bogus) {
		t.Error("a malformed trailer was cut")
	}
}

func TestWriteInitramfs(t *testing.T) {
	spec := initramfsFixture(t)
	p := filepath.Join(t.TempDir(), "initrd")
	digest, err := vmkernel.WriteInitramfs(p, spec)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != digest {
		t.Errorf("digest %s is not the file's", digest)
	}
	if again, _ := vmkernel.WriteInitramfs(p, spec); again != digest {
		t.Errorf("second write: %s vs %s", again, digest)
	}
	spec.Agent = "/nonexistent"
	if _, err := vmkernel.WriteInitramfs(filepath.Join(filepath.Dir(p), "bad"), spec); err == nil {
		t.Fatal("accepted a missing agent")
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

// TestBuildInitramfsArch: with Arch set, the agent and the sandbox init
// must be ELF executables of the guest's architecture (this test binary is
// one of the host's).
func TestBuildInitramfsArch(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if other == "" {
		t.Skipf("host architecture %s", runtime.GOARCH)
	}
	s := initramfsFixture(t)
	s.Agent, s.SandboxInit, s.Arch = self, self, runtime.GOARCH
	if err := vmkernel.BuildInitramfs(io.Discard, s); err != nil {
		t.Fatalf("%s binaries for an %s guest: %v", runtime.GOARCH, runtime.GOARCH, err)
	}
	s.Arch = other
	if err := vmkernel.BuildInitramfs(io.Discard, s); err == nil || !strings.Contains(err.Error(), self) || !strings.Contains(err.Error(), other) {
		t.Errorf("%s agent for an %s guest: %v, want an error naming the file and %s", runtime.GOARCH, other, err, other)
	}
	s = initramfsFixture(t) // "AGENT-BINARY" is no ELF file
	s.Arch = runtime.GOARCH
	if err := vmkernel.BuildInitramfs(io.Discard, s); err == nil || !strings.Contains(err.Error(), s.Agent) {
		t.Errorf("a non-ELF agent: %v, want an error naming it", err)
	}
	if err := vmkernel.CheckELFArch(self, "riscv64"); err == nil || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("CheckELFArch riscv64: %v", err)
	}
}
