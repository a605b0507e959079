package vmkernel_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

func modNames(mods []vmkernel.ModInfo) []string {
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = m.Name
	}
	return out
}

// synthetic is a small index with the shapes real kernels have: a chain,
// a softdep through an alias with two providers, a built-in, a post
// softdep.
func synthetic() *vmkernel.ModuleIndex {
	return vmkernel.NewModuleIndex([]vmkernel.ModInfo{
		{Name: "ring", Path: "kernel/ring.ko"},
		{Name: "virtio", Path: "kernel/virtio.ko", Depends: []string{"ring"}},
		{Name: "blk", Path: "kernel/blk.ko", Depends: []string{"virtio", "ring"}},
		{Name: "fs", Path: "kernel/fs.ko", Depends: []string{"jbd"}, SoftPre: []string{"crypto-sum"}, SoftPost: []string{"fs_extra"}},
		{Name: "jbd", Path: "kernel/jbd.ko", Depends: []string{"builtin_crc"}},
		{Name: "fs_extra", Path: "kernel/fs_extra.ko"},
		{Name: "sum_intel", Path: "kernel/sum-intel.ko", Aliases: []string{"crypto-sum", "sum"}},
		{Name: "sum_generic", Path: "kernel/sum_generic.ko", Aliases: []string{"crypto-sum", "sum"}},
		{Name: "a", Path: "kernel/a.ko", Depends: []string{"b"}},
		{Name: "b", Path: "kernel/b.ko", Depends: []string{"a"}},
		{Name: "broken", Path: "kernel/broken.ko", Depends: []string{"gone"}},
		{Name: "pci_dev", Path: "kernel/pci_dev.ko", Aliases: []string{"pci:v00001AF4d*"}},
		{Name: "optional", Path: "kernel/optional.ko", SoftPre: []string{"nothing-provides-this"}},
	}, []string{"kernel/lib/builtin_crc.ko", "builtin-fs"}, map[string]string{"fs-builtin": "builtin-fs"})
}

func TestResolve(t *testing.T) {
	ix := synthetic()
	cases := []struct {
		name  string
		want  []string
		error string
	}{
		{"blk", []string{"ring", "virtio", "blk"}, ""},
		{"blk virtio ring", []string{"ring", "virtio", "blk"}, ""},
		{"fs", []string{"sum_generic", "jbd", "fs", "fs_extra"}, ""},
		{"sum", []string{"sum_generic"}, ""},                // an alias, the generic provider
		{"sum-intel", []string{"sum_intel"}, ""},            // '-' and '_' are one
		{"builtin_crc builtin-fs fs-builtin", nil, ""},      // built in: nothing to load
		{"pci:v00001AF4d00001000", []string{"pci_dev"}, ""}, // a wildcard alias
		{"optional", []string{"optional"}, ""},              // a missing softdep is skipped
		{"a", nil, "cycle"},
		{"broken", nil, "needs gone"},
		{"nonexistent", nil, `"nonexistent"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ix.Resolve(strings.Fields(c.name)...)
			if c.error != "" {
				if err == nil || !strings.Contains(err.Error(), c.error) {
					t.Fatalf("err = %v, want one saying %q", err, c.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(modNames(got), c.want) {
				t.Fatalf("got %v, want %v", modNames(got), c.want)
			}
		})
	}
}

// TestModuleFilesRoundTrip writes the depmod-format files for a subset and
// reads them back: the same resolution comes out.
func TestModuleFilesRoundTrip(t *testing.T) {
	sub, err := synthetic().Subset("blk", "fs")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"blk", "fs", "fs_extra", "jbd", "ring", "sum_generic", "virtio"}; !slices.Equal(sub.Names(), want) {
		t.Fatalf("subset %v, want %v", sub.Names(), want)
	}
	dir := t.TempDir()
	if err := sub.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	dep, _ := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if !strings.Contains(string(dep), "kernel/blk.ko: kernel/virtio.ko kernel/ring.ko\n") {
		t.Errorf("modules.dep (depmod order: load last first):\n%s", dep)
	}
	soft, _ := os.ReadFile(filepath.Join(dir, "modules.softdep"))
	if string(soft) != "softdep fs pre: crypto-sum post: fs_extra\n" {
		t.Errorf("modules.softdep:\n%s", soft)
	}
	back, err := vmkernel.LoadModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{{"blk"}, {"fs"}, {"sum"}, {"builtin-fs"}, {"fs-builtin"}} {
		a, err1 := sub.Resolve(want...)
		b, err2 := back.Resolve(want...)
		if err1 != nil || err2 != nil || !slices.Equal(modNames(a), modNames(b)) {
			t.Errorf("%v: written %v (%v), read back %v (%v)", want, modNames(a), err1, modNames(b), err2)
		}
	}
}

func TestLoadModuleIndexRefuses(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"no modules.dep": {},
		"bad dep line":   {"modules.dep": "kernel/a.ko kernel/b.ko\n"},
		"bad softdep":    {"modules.dep": "kernel/a.ko:\n", "modules.softdep": "options a x=1\n"},
		"bad alias":      {"modules.dep": "kernel/a.ko:\n", "modules.alias": "alias onlytwo\n"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, content := range files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := vmkernel.LoadModuleIndex(dir); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestParseModInfoReal reads .modinfo from real Debian modules.
func TestParseModInfoReal(t *testing.T) {
	k := vmkerneltest.Kernel(t)
	ix, err := k.ModuleIndex()
	if err != nil {
		t.Fatal(err)
	}
	for name, check := range map[string]func(vmkernel.ModInfo) bool{
		"ext4": func(m vmkernel.ModInfo) bool {
			return slices.Contains(m.SoftPre, "crypto-crc32c") && len(m.Depends) == 3
		},
		"crc32c_generic": func(m vmkernel.ModInfo) bool { return slices.Contains(m.Aliases, "crypto-crc32c") },
		"virtio_pci":     func(m vmkernel.ModInfo) bool { return slices.Contains(m.Depends, "virtio_pci_modern_dev") },
	} {
		info, ok := ix.Info(name)
		if !ok {
			t.Fatalf("%s not in the store", name)
		}
		data, err := os.ReadFile(filepath.Join(k.Dir, "modules", info.Path))
		if err != nil {
			t.Fatal(err)
		}
		mi, err := vmkernel.ParseModInfo(info.Path, data)
		if err != nil {
			t.Fatal(err)
		}
		if mi.Name != name || !check(mi) {
			t.Errorf("%s: %+v", name, mi)
		}
	}
	if _, err := vmkernel.ParseModInfo("x.ko", []byte("not elf")); err == nil {
		t.Error("a non-ELF module was accepted")
	}
}
