package vmkernel

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// Module is one kernel module file ready for finit_module: plain ELF (never
// compressed: the guest kernel may not decompress modules).
type Module struct {
	Name string // normalized module name ("9pnet_virtio", "crc32c_generic")
	Path string // absolute path of the .ko on the host
}

// QemuModules are the modules a qemu guest on x86 needs (VM-ARCH.md):
// virtio over PCI (q35) and MMIO (microvm), the agent's virtio-serial port,
// the rootfs disk (ext4 on virtio-blk), the balloon, 9p bind mounts, the NIC
// and overlay.
var QemuModules = []string{"virtio_pci", "virtio_mmio", "virtio_console", "virtio_blk", "ext4",
	"virtio_balloon", "9p", "9pnet_virtio", "virtio_net", "overlay"}

// VZModules are the modules a Virtualization.framework guest (arm64) needs:
// virtio-pci, console, vsock for the agent, virtio-blk + ext4, virtiofs,
// the NIC and the balloon.
var VZModules = []string{"virtio_pci", "virtio_console", "vmw_vsock_virtio_transport", "virtio_blk",
	"ext4", "virtiofs", "virtio_net", "virtio_balloon"}

// StoreModules are the modules (with their dependencies and soft
// dependencies) a kernel store keeps from a package: QemuModules, VZModules
// and a few filesystems later work may want. Names a kernel lacks are skipped.
var StoreModules = uniqueSorted(append(append(slices.Clone(QemuModules), VZModules...),
	"erofs", "squashfs", "vsock", "fuse", "vmw_vsock_virtio_transport_common",
	// The ACPI power button as an input device: the agent powers off on
	// KEY_POWER, so qemu's system_powerdown shuts a guest down cleanly.
	"button", "evdev"))

func uniqueSorted(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// ModInfo describes one module as modules.dep, modules.softdep and
// modules.alias (or the module's own .modinfo section) do.
type ModInfo struct {
	Name string
	// Path is relative to the kernel's modules directory
	// ("kernel/fs/ext4/ext4.ko").
	Path string
	// Depends lists hard dependencies, in the order they should be loaded.
	Depends []string
	// SoftPre and SoftPost are soft dependencies (module names or aliases)
	// loaded before and after the module when they exist.
	SoftPre, SoftPost []string
	// Aliases the module answers to ("crypto-crc32c", "fs-ext4").
	Aliases []string
}

// ModuleName normalizes a module or file name the way kmod does: the base
// name without ".ko" and compression suffixes, with '-' as '_'.
func ModuleName(s string) string {
	s = path.Base(s)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, suf)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// ParseModInfo reads the .modinfo section of the plain (uncompressed) ELF
// module ko. relPath is recorded as the module's Path and gives its name
// when the section has none.
func ParseModInfo(relPath string, ko []byte) (ModInfo, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return ModInfo{}, fmt.Errorf("module %s: not an ELF file: %w", relPath, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return ModInfo{}, fmt.Errorf("module %s: no .modinfo section", relPath)
	}
	data, err := sec.Data()
	if err != nil {
		return ModInfo{}, fmt.Errorf("module %s: .modinfo: %w", relPath, err)
	}
	mi := ModInfo{Path: relPath}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = ModuleName(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, ModuleName(d))
				}
			}
		case "softdep":
			pre, post := parseSoftdep(strings.Fields(v))
			mi.SoftPre = append(mi.SoftPre, pre...)
			mi.SoftPost = append(mi.SoftPost, post...)
		case "alias":
			mi.Aliases = append(mi.Aliases, v)
		}
	}
	if mi.Name == "" {
		mi.Name = ModuleName(relPath)
	}
	// A module's own depends= carries no order; sort for determinism.
	slices.Sort(mi.Depends)
	return mi, nil
}

func parseSoftdep(fields []string) (pre, post []string) {
	var cur *[]string
	for _, f := range fields {
		switch f {
		case "pre:":
			cur = &pre
		case "post:":
			cur = &post
		default:
			if cur != nil {
				*cur = append(*cur, f)
			}
		}
	}
	return pre, post
}

// ModuleIndex answers which module files to load, in which order, for a set
// of wanted modules. It is built from parsed modules (NewModuleIndex) or read
// from depmod-format files (LoadModuleIndex).
type ModuleIndex struct {
	mods    map[string]*ModInfo
	aliases map[string][]string // alias → module names (exact aliases)
	globs   [][2]string         // wildcard aliases: pattern, module
	builtin map[string]bool
}

// NewModuleIndex indexes mods. builtin names modules built into the kernel
// (they need no loading); builtinAliases maps aliases of built-in code to
// their module names.
func NewModuleIndex(mods []ModInfo, builtin []string, builtinAliases map[string]string) *ModuleIndex {
	ix := &ModuleIndex{mods: map[string]*ModInfo{}, aliases: map[string][]string{}, builtin: map[string]bool{}}
	for i := range mods {
		m := mods[i]
		ix.mods[m.Name] = &m
	}
	for _, b := range builtin {
		ix.builtin[ModuleName(b)] = true
	}
	for _, m := range ix.mods {
		for _, a := range m.Aliases {
			ix.addAlias(a, m.Name)
		}
	}
	for a, m := range builtinAliases {
		ix.addAlias(a, ModuleName(m))
	}
	for a := range ix.aliases {
		slices.Sort(ix.aliases[a])
		ix.aliases[a] = slices.Compact(ix.aliases[a])
	}
	slices.SortFunc(ix.globs, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	return ix
}

func (ix *ModuleIndex) addAlias(alias, mod string) {
	if strings.ContainsAny(alias, "*?[") {
		ix.globs = append(ix.globs, [2]string{alias, mod})
		return
	}
	ix.aliases[alias] = append(ix.aliases[alias], mod)
}

// Names lists the indexed (loadable) modules, sorted.
func (ix *ModuleIndex) Names() []string {
	names := make([]string, 0, len(ix.mods))
	for n := range ix.mods {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Info returns the indexed module called name.
func (ix *ModuleIndex) Info(name string) (ModInfo, bool) {
	m, ok := ix.mods[ModuleName(name)]
	if !ok {
		return ModInfo{}, false
	}
	return *m, true
}

// lookup resolves a module name or alias. It returns the module to load,
// or builtin=true when built-in code provides it.
func (ix *ModuleIndex) lookup(name string) (mod string, builtin bool, ok bool) {
	n := ModuleName(name)
	if _, found := ix.mods[n]; found {
		return n, false, true
	}
	if ix.builtin[n] {
		return "", true, true
	}
	cands := ix.aliases[name]
	if len(cands) == 0 {
		for _, g := range ix.globs {
			if m, _ := path.Match(g[0], name); m {
				cands = append(cands, g[1])
			}
		}
	}
	var loadable []string
	for _, c := range cands {
		if ix.builtin[c] {
			return "", true, true
		}
		if _, found := ix.mods[c]; found {
			loadable = append(loadable, c)
		}
	}
	if len(loadable) == 0 {
		return "", false, false
	}
	// Prefer the portable implementation (crc32c_generic over crc32c_intel,
	// which needs SSE4.2), else the first by name.
	slices.Sort(loadable)
	for _, c := range loadable {
		if strings.HasSuffix(c, "_generic") {
			return c, false, true
		}
	}
	return loadable[0], false, true
}

// Resolve returns the modules to load for names, in load order: every
// module after its hard dependencies and its "pre" soft dependencies, before
// its "post" ones, each once. Names may be module names or aliases; names
// built into the kernel are skipped. A wanted name or hard dependency the
// kernel lacks is an error; a missing soft dependency is skipped.
func (ix *ModuleIndex) Resolve(names ...string) ([]ModInfo, error) {
	return ix.resolve(true, names...)
}

func (ix *ModuleIndex) resolve(soft bool, names ...string) ([]ModInfo, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var out []ModInfo
	var visit func(name string, chain []string) error
	visit = func(mod string, chain []string) error {
		switch state[mod] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, mod), " → "))
		}
		m := ix.mods[mod]
		state[mod] = visiting
		chain = append(chain, mod)
		for _, s := range m.SoftPre {
			if !soft {
				break
			}
			if dep, _, ok := ix.lookup(s); ok && dep != "" && state[dep] == 0 {
				if err := visit(dep, chain); err != nil {
					return err
				}
			}
		}
		for _, d := range m.Depends {
			dep, builtin, ok := ix.lookup(d)
			if !ok {
				return fmt.Errorf("module %s needs %s, which the kernel does not have", mod, d)
			}
			if builtin {
				continue
			}
			if err := visit(dep, chain); err != nil {
				return err
			}
		}
		state[mod] = done
		out = append(out, *m)
		for _, s := range m.SoftPost {
			if !soft {
				break
			}
			if dep, _, ok := ix.lookup(s); ok && dep != "" && state[dep] == 0 {
				if err := visit(dep, nil); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, n := range names {
		mod, builtin, ok := ix.lookup(n)
		if !ok {
			return nil, fmt.Errorf("module %q: not found in this kernel (neither a module, an alias nor built in)", n)
		}
		if builtin {
			continue
		}
		if err := visit(mod, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Subset returns an index of the modules needed by names (Resolve's
// closure), keeping aliases of those modules and every built-in.
func (ix *ModuleIndex) Subset(names ...string) (*ModuleIndex, error) {
	mods, err := ix.Resolve(names...)
	if err != nil {
		return nil, err
	}
	sub := &ModuleIndex{mods: map[string]*ModInfo{}, aliases: map[string][]string{}, builtin: ix.builtin}
	for _, m := range mods {
		sub.mods[m.Name] = ix.mods[m.Name]
	}
	for a, ms := range ix.aliases {
		for _, m := range ms {
			if sub.mods[m] != nil || ix.builtin[m] {
				sub.aliases[a] = append(sub.aliases[a], m)
			}
		}
	}
	for _, g := range ix.globs {
		if sub.mods[g[1]] != nil {
			sub.globs = append(sub.globs, g)
		}
	}
	return sub, nil
}

// Files written and read by WriteFiles and LoadModuleIndex (depmod's names
// and formats, so kmod's tools read them too).
const (
	fileModulesDep     = "modules.dep"
	fileModulesSoftdep = "modules.softdep"
	fileModulesAlias   = "modules.alias"
	fileModulesBuiltin = "modules.builtin"
)

// WriteFiles writes modules.dep, modules.softdep, modules.alias and
// modules.builtin for the index into dir, sorted, in depmod's formats:
// modules.dep lists each module's transitive hard dependencies, the one to
// load last first (modprobe loads the list from its end).
func (ix *ModuleIndex) WriteFiles(dir string) error {
	var dep, soft, alias, builtin bytes.Buffer
	for _, n := range ix.Names() {
		m := ix.mods[n]
		order, err := ix.hardOrder(n)
		if err != nil {
			return err
		}
		fmt.Fprintf(&dep, "%s:", m.Path)
		for i := len(order) - 2; i >= 0; i-- { // the last is the module itself
			fmt.Fprintf(&dep, " %s", ix.mods[order[i]].Path)
		}
		dep.WriteByte('\n')
		if len(m.SoftPre)+len(m.SoftPost) > 0 {
			fmt.Fprintf(&soft, "softdep %s", n)
			if len(m.SoftPre) > 0 {
				fmt.Fprintf(&soft, " pre: %s", strings.Join(m.SoftPre, " "))
			}
			if len(m.SoftPost) > 0 {
				fmt.Fprintf(&soft, " post: %s", strings.Join(m.SoftPost, " "))
			}
			soft.WriteByte('\n')
		}
	}
	var lines []string
	for a, ms := range ix.aliases {
		for _, m := range ms {
			lines = append(lines, fmt.Sprintf("alias %s %s\n", a, m))
		}
	}
	for _, g := range ix.globs {
		lines = append(lines, fmt.Sprintf("alias %s %s\n", g[0], g[1]))
	}
	slices.Sort(lines)
	for _, l := range lines {
		alias.WriteString(l)
	}
	var bl []string
	for b := range ix.builtin {
		bl = append(bl, b)
	}
	slices.Sort(bl)
	for _, b := range bl {
		fmt.Fprintf(&builtin, "%s\n", b)
	}
	for name, buf := range map[string]*bytes.Buffer{fileModulesDep: &dep, fileModulesSoftdep: &soft,
		fileModulesAlias: &alias, fileModulesBuiltin: &builtin} {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// hardOrder is the load order of name's hard-dependency closure, name last.
func (ix *ModuleIndex) hardOrder(name string) ([]string, error) {
	mods, err := ix.resolve(false, name)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = m.Name
	}
	return out, nil
}

// LoadModuleIndex reads modules.dep (required), modules.softdep,
// modules.alias and modules.builtin (optional) from dir, as written by
// WriteFiles or by depmod.
func LoadModuleIndex(dir string) (*ModuleIndex, error) {
	depPath := filepath.Join(dir, fileModulesDep)
	f, err := os.Open(depPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mods []ModInfo
	byName := map[string]int{}
	if err := eachLine(f, func(n int, line string) error {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return fmt.Errorf("%s:%d: not \"module: deps\": %q", depPath, n, line)
		}
		mi := ModInfo{Path: normalizeKoPath(strings.TrimSpace(mod)), Name: ModuleName(mod)}
		fields := strings.Fields(deps)
		// depmod order: the dependency to load last comes first.
		for i := len(fields) - 1; i >= 0; i-- {
			mi.Depends = append(mi.Depends, ModuleName(fields[i]))
		}
		byName[mi.Name] = len(mods)
		mods = append(mods, mi)
		return nil
	}); err != nil {
		return nil, err
	}
	softPath := filepath.Join(dir, fileModulesSoftdep)
	if err := eachLineOf(softPath, func(n int, line string) error {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "softdep" {
			return fmt.Errorf("%s:%d: not \"softdep MODULE pre: … post: …\": %q", softPath, n, line)
		}
		i, ok := byName[ModuleName(fields[1])]
		if !ok {
			return nil // softdep of a module not in this tree
		}
		pre, post := parseSoftdep(fields[2:])
		mods[i].SoftPre = append(mods[i].SoftPre, pre...)
		mods[i].SoftPost = append(mods[i].SoftPost, post...)
		return nil
	}); err != nil {
		return nil, err
	}
	var builtin []string
	if err := eachLineOf(filepath.Join(dir, fileModulesBuiltin), func(_ int, line string) error {
		builtin = append(builtin, ModuleName(strings.TrimSpace(line)))
		return nil
	}); err != nil {
		return nil, err
	}
	builtinSet := map[string]bool{}
	for _, b := range builtin {
		builtinSet[b] = true
	}
	builtinAliases := map[string]string{}
	aliasPath := filepath.Join(dir, fileModulesAlias)
	if err := eachLineOf(aliasPath, func(n int, line string) error {
		fields := strings.Fields(line)
		if len(fields) != 3 || fields[0] != "alias" {
			return fmt.Errorf("%s:%d: not \"alias ALIAS MODULE\": %q", aliasPath, n, line)
		}
		mod := ModuleName(fields[2])
		if i, ok := byName[mod]; ok {
			mods[i].Aliases = append(mods[i].Aliases, fields[1])
		} else if builtinSet[mod] {
			builtinAliases[fields[1]] = mod
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return NewModuleIndex(mods, builtin, builtinAliases), nil
}

// normalizeKoPath names the plain .ko a possibly compressed module path
// stands for (stores keep modules decompressed).
func normalizeKoPath(p string) string {
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		p = strings.TrimSuffix(p, suf)
	}
	return p
}

func eachLineOf(p string, fn func(int, string) error) error {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return eachLine(f, fn)
}

// eachLine calls fn for each non-empty, non-comment line of r.
func eachLine(r io.Reader, fn func(int, string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return sc.Err()
}
