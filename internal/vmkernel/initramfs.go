package vmkernel

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// InitramfsSpec says what goes into a guest initramfs (layout in VM-ARCH.md).
type InitramfsSpec struct {
	// Agent is the host path of the static guest agent; it becomes /init.
	Agent string
	// SandboxInit is the host path of the static sandbox init; when set it
	// becomes /sbin/berth-sandbox-init.
	SandboxInit string
	// Modules are loaded by the agent in this order; they become
	// /modules/NN-<name>.ko (NN keeps the order lexical).
	Modules []Module
	// Files are extra files.
	Files []InitramfsFile
	// Arch, when set ("amd64", "arm64"), is the guest's architecture:
	// Agent and SandboxInit must then be ELF executables for it (an agent
	// of the host's architecture in an arm64 guest would end in a kernel
	// panic with no word about why).
	Arch string
	// StripModuleSignatures removes the appended PKCS#7 signature from
	// each module. Loading then skips signature checks (25-30% faster under
	// TCG) but taints the kernel; Debian's kernels do not force signatures.
	StripModuleSignatures bool
}

// InitramfsFile is an extra file: Data, or the content of the host file
// Source when Data is nil. Path is absolute in the guest ("/etc/hosts");
// its parent directories are created (0755).
type InitramfsFile struct {
	Path   string
	Source string
	Data   []byte
	Mode   os.FileMode // permission bits; 0 means 0644
}

// InitramfsDirs are the directories every initramfs has: mount points the
// agent uses (/proc /sys /dev /tmp /run /newroot, /mnt) and /modules, /sbin.
var InitramfsDirs = []string{"dev", "mnt", "modules", "newroot", "proc", "run", "sbin", "sys", "tmp"}

// BuildInitramfs writes an uncompressed cpio (newc) initramfs for spec to w.
// The output is deterministic: entries sorted by name, owned by 0:0, mtime
// 0, inode numbers in order, permissions from the spec (never from the
// host). /dev/console is a character device 5:1.
func BuildInitramfs(w io.Writer, spec InitramfsSpec) error {
	if spec.Agent == "" {
		return fmt.Errorf("initramfs: no agent")
	}
	if spec.Arch != "" {
		for _, p := range []string{spec.Agent, spec.SandboxInit} {
			if p == "" {
				continue
			}
			if err := CheckELFArch(p, spec.Arch); err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
		}
	}
	type entry struct {
		rec  cpio.Record
		open func() (io.ReaderAt, int64, error)
	}
	entries := map[string]*entry{}
	addDir := func(name string) {
		if _, ok := entries[name]; !ok {
			perm := uint64(0o755)
			if name == "tmp" {
				perm = 0o1777
			}
			entries[name] = &entry{rec: cpio.Directory(name, perm)}
		}
	}
	addParents := func(name string) error {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if e, ok := entries[d]; ok && e.rec.Info.Mode&cpio.S_IFMT != cpio.S_IFDIR {
				return fmt.Errorf("initramfs: /%s: /%s is not a directory", name, d)
			}
			addDir(d)
		}
		return nil
	}
	addHostFile := func(name, src string, perm uint64) error {
		if _, ok := entries[name]; ok {
			return fmt.Errorf("initramfs: /%s given twice", name)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("initramfs: /%s: %w", name, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("initramfs: /%s: %s is not a regular file", name, src)
		}
		if err := addParents(name); err != nil {
			return err
		}
		entries[name] = &entry{
			rec: cpio.Record{Info: cpio.Info{Name: name, Mode: cpio.S_IFREG | perm, FileSize: uint64(fi.Size())}},
			open: func() (io.ReaderAt, int64, error) {
				f, err := os.Open(src)
				if err != nil {
					return nil, 0, err
				}
				st, err := f.Stat()
				if err != nil {
					f.Close()
					return nil, 0, err
				}
				return f, st.Size(), nil
			},
		}
		return nil
	}
	for _, d := range InitramfsDirs {
		addDir(d)
	}
	entries["dev/console"] = &entry{rec: cpio.CharDev("dev/console", 0o600, 5, 1)}
	if err := addHostFile("init", spec.Agent, 0o755); err != nil {
		return err
	}
	if spec.SandboxInit != "" {
		if err := addHostFile("sbin/berth-sandbox-init", spec.SandboxInit, 0o755); err != nil {
			return err
		}
	}
	width := max(2, len(fmt.Sprint(len(spec.Modules))))
	for i, m := range spec.Modules {
		if m.Name == "" || strings.ContainsAny(m.Name, "/\x00") {
			return fmt.Errorf("initramfs: bad module name %q", m.Name)
		}
		name := fmt.Sprintf("modules/%0*d-%s.ko", width, i, m.Name)
		if !spec.StripModuleSignatures {
			if err := addHostFile(name, m.Path, 0o644); err != nil {
				return err
			}
			continue
		}
		data, err := os.ReadFile(m.Path)
		if err != nil {
			return fmt.Errorf("initramfs: /%s: %w", name, err)
		}
		data = StripModuleSignature(data)
		if err := addParents(name); err != nil {
			return err
		}
		entries[name] = &entry{
			rec:  cpio.Record{Info: cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o644, FileSize: uint64(len(data))}},
			open: func() (io.ReaderAt, int64, error) { return bytes.NewReader(data), int64(len(data)), nil },
		}
	}
	for _, f := range spec.Files {
		name, err := guestName(f.Path)
		if err != nil {
			return err
		}
		perm := uint64(f.Mode.Perm())
		if perm == 0 {
			perm = 0o644
		}
		if f.Data == nil {
			if err := addHostFile(name, f.Source, perm); err != nil {
				return err
			}
			continue
		}
		if _, ok := entries[name]; ok {
			return fmt.Errorf("initramfs: /%s given twice", name)
		}
		if err := addParents(name); err != nil {
			return err
		}
		data := f.Data
		entries[name] = &entry{
			rec:  cpio.Record{Info: cpio.Info{Name: name, Mode: cpio.S_IFREG | perm, FileSize: uint64(len(data))}},
			open: func() (io.ReaderAt, int64, error) { return bytes.NewReader(data), int64(len(data)), nil },
		}
	}

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	cw := cpio.Newc.Writer(w)
	for i, n := range names {
		e := entries[n]
		rec := e.rec
		rec.Info.Ino = uint64(i + 1)
		rec.Info.UID, rec.Info.GID, rec.Info.MTime = 0, 0, 0
		rec.Info.NLink = 1
		if rec.Info.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			rec.Info.NLink = 2
		}
		if e.open != nil {
			ra, size, err := e.open()
			if err != nil {
				return fmt.Errorf("initramfs: /%s: %w", n, err)
			}
			if uint64(size) != rec.Info.FileSize {
				if c, ok := ra.(io.Closer); ok {
					c.Close()
				}
				return fmt.Errorf("initramfs: /%s changed size while building (%d → %d bytes)", n, rec.Info.FileSize, size)
			}
			rec.ReaderAt = ra // WriteRecord closes it
		}
		if err := cw.WriteRecord(rec); err != nil {
			if c, ok := rec.ReaderAt.(io.Closer); ok {
				c.Close()
			}
			return fmt.Errorf("initramfs: writing /%s: %w", n, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("initramfs: trailer: %w", err)
	}
	return nil
}

// WriteInitramfs builds the initramfs for spec into path (temp file, fsync,
// rename: readers never see a partial archive) and returns the archive's
// sha256 (hex). Equal specs give equal digests.
func WriteInitramfs(path string, spec InitramfsSpec) (string, error) {
	h := sha256.New()
	err := atomicfile.Write(path, 0o644, true, func(f *os.File) error {
		return BuildInitramfs(io.MultiWriter(f, h), spec)
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// moduleSigMagic ends a module with an appended signature
// (include/linux/module_signature.h).
const moduleSigMagic = "~Module signature appended~\n"

// StripModuleSignature returns ko without its appended signature (ko itself
// when it has none or the trailer is malformed).
func StripModuleSignature(ko []byte) []byte {
	const infoLen = 12 // struct module_signature; sig_len is its last 4 bytes (big endian)
	if !bytes.HasSuffix(ko, []byte(moduleSigMagic)) {
		return ko
	}
	end := len(ko) - len(moduleSigMagic)
	if end < infoLen {
		return ko
	}
	info := ko[end-infoLen : end]
	sigLen := int(binary.BigEndian.Uint32(info[8:]))
	start := end - infoLen - sigLen
	if sigLen <= 0 || start < 0 {
		return ko
	}
	return ko[:start]
}

// guestName turns an absolute guest path into a cpio entry name.
func guestName(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("initramfs: file path %q is not absolute", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("initramfs: file path %q contains \"..\"", p)
		}
	}
	c := strings.TrimPrefix(path.Clean(p), "/")
	if c == "" || c == "." {
		return "", fmt.Errorf("initramfs: file path %q names the root", p)
	}
	return c, nil
}

// elfMachines maps a GOARCH to its ELF machine.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// CheckELFArch reports whether the file at path is an ELF executable for
// arch (GOARCH: "amd64" or "arm64"); the error names the file, what it is
// and what was wanted.
func CheckELFArch(path, arch string) error {
	want, ok := elfMachines[arch]
	if !ok {
		return fmt.Errorf("%s: architecture %q: want amd64 or arm64", path, arch)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable for %s: %w", path, arch, err)
	}
	defer f.Close()
	if f.Machine != want || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("%s: an ELF executable for %v, want %s (%v)", path, f.Machine, arch, want)
	}
	return nil
}
