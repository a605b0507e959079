// Package vmtemplate starts VMs from pre-booted templates (issue 10): a
// template is a VM booted once with the guest agent up and no container
// rootfs, paused and saved with its RAM in a file; a container's VM is then
// a restore of that save from a clone of the RAM file, with the template's
// placeholder disks pointed at the container's images on the restore
// command line (disks are not part of the saved state).
//
// A template is identified by Inputs (content hashes of kernel and
// initramfs, kernel command line, VM size, devices, platform, hypervisor
// version): any change gives another ID, so a stale template is never
// used, only left for Prune/Remove. Layout of Store.Dir:
//
//	<id>/template.json   Manifest: inputs, state hash, sizes, build time
//	<id>/ram             guest RAM (memory-backend-file share=on)
//	<id>/vm/             hypervisor.Machine.Save's dir (state, machine.json)
//	<id>/console.log     the template boot's serial console
//	<id>/placeholder<N>.raw  empty placeholder disks the template booted with
//
// NICs work like disks: a template with Inputs.NICs placeholder virtio-net
// devices (PlaceholderMAC(i), on a TAP qemu made for the build and removed
// with it) is restored with each netdev pointed at the container's TAP;
// the device state, MAC included, comes from the saved VM, so the guest's
// NIC has the template's MAC until the agent gives it the container's
// (vmagent.NetworkInterface.FormerMAC). Templates for socket NICs
// (user-mode networks, Inputs.NICKind NICSocket) build on unix sockets the
// build listens on and restore with each netdev on the container's network
// socket: a TAP's vnet header and a stream socket's lack of one are
// different device features, so the kinds have different IDs.
//
// A template of KindStateRAM (drivers whose Platform.RAMInState: vz,
// whose saved state contains guest RAM; or forced on qemu) has no ram
// file: Build boots without a MemoryFile and saves the whole guest into
// vm/, and Start clones vm/ into the new VM's RunDir (reflink/clonefile,
// else a hard link: nothing writes a saved state; else a copy), restores
// from the clone and removes it once the restore has read it.
//
// Templates are built in a temporary dir and renamed into place; a
// per-ID lock file (flock) keeps two builders apart. Everything here is
// platform-neutral; hypervisor specifics sit behind hypervisor.Driver and
// the optional DiskRefresher/Versioner interfaces.
package vmtemplate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// FormatVersion is bumped when the template layout or the way templates
// are booted changes; it is part of every ID.
const FormatVersion = 1

// Names inside a template's dir.
const (
	ManifestFile = "template.json"
	RAMFile      = "ram"
	VMDir        = "vm"
	ConsoleFile  = "console.log"
)

// PlaceholderMAC is the MAC of a template's placeholder NIC i (locally
// administered, unicast; the same in every template): a VM restored from
// a template has it until the agent sets the container's.
func PlaceholderMAC(i int) string {
	return net.HardwareAddr{0x02, 0xb5, 0xff, 0x00, byte(i >> 8), byte(i)}.String()
}

// Inputs identify a template: everything that shapes the saved guest.
type Inputs struct {
	Format       int      `json:"format"`
	KernelSHA256 string   `json:"kernel_sha256"`
	InitrdSHA256 string   `json:"initrd_sha256"`
	Cmdline      []string `json:"cmdline"`
	CPUs         int      `json:"cpus"`
	MemoryMiB    int64    `json:"memory_mib"`
	Disks        int      `json:"disks"`
	// NICs is the number of placeholder virtio-net devices (omitted when
	// 0, so templates without NICs keep their IDs).
	NICs       int    `json:"nics,omitempty"`
	Balloon    bool   `json:"balloon"`
	Platform   string `json:"platform"` // hypervisor.Platform.Name
	Arch       string `json:"arch"`
	Accel      string `json:"accel"`
	Hypervisor string `json:"hypervisor"` // version string
	// Kind is how the template keeps guest RAM: KindRAMFile (omitted, so
	// RAM-file templates keep their IDs) or KindStateRAM.
	Kind string `json:"kind,omitempty"`
	// NICKind is what backs the placeholder NICs: NICTAP (omitted, so TAP
	// templates keep their IDs) or NICSocket. A placeholder's backend on
	// restore must offer what the guest negotiated at build (a TAP has a
	// vnet header, a stream socket none), so the kinds never mix.
	NICKind string `json:"nic_kind,omitempty"`
}

// Placeholder NIC kinds (Inputs.NICKind).
const (
	// NICTAP: placeholders on TAPs (hypervisor.NIC.TAP; vz: NAT NICs).
	NICTAP = ""
	// NICSocket: placeholders on unix stream sockets (hypervisor.NIC.Socket,
	// user-mode networks: qemu -netdev stream). The build listens on a
	// socket of its own; a restore connects to the container's network.
	NICSocket = "socket"
)

// Template kinds (Inputs.Kind).
const (
	// KindRAMFile: guest RAM in the template's ram file (memory-backend-file
	// + x-ignore-shared on qemu), cloned or mapped privately per VM; the
	// saved state holds device state only.
	KindRAMFile = ""
	// KindStateRAM: guest RAM inside the saved state (vz's
	// SaveMachineStateToPath; a plain migration to file on qemu); each VM
	// restores from a clone of the saved state.
	KindStateRAM = "state-ram"
)

// ID is the template's name: a hash of the inputs.
func (in Inputs) ID() string {
	b, _ := json.Marshal(in)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// Versioner is implemented by drivers that can name their hypervisor's
// version (qemu: the binary's --version line).
type Versioner interface {
	HypervisorVersion() (string, error)
}

// DiskRefresher is implemented by machines that can tell a restored guest
// its disks changed (qemu: block_resize → virtio config-change interrupt).
type DiskRefresher interface {
	RefreshDisks(ctx context.Context) error
}

// InputsFor describes the template that can serve cfg on drv: cfg's kernel
// and initramfs (hashed), command line, size, disk and NIC counts,
// balloon, and the kind (KindStateRAM when drv's Platform.RAMInState, else
// KindRAMFile; a caller may set Kind to KindStateRAM on any driver) and
// the NIC kind (NICSocket when cfg's NICs are socket NICs, else NICTAP).
// Configs with shares (9p blocks migration), with TAP and socket NICs
// mixed, or with socket NICs on vz (its placeholders are NAT NICs; a
// restore with a file-handle attachment in their place is unverified)
// cannot be served (ErrNotImplemented).
func InputsFor(drv hypervisor.Driver, cfg hypervisor.Config) (Inputs, error) {
	if len(cfg.Shares) > 0 {
		return Inputs{}, errdefs.NotImplemented("vm template: %d directory share(s): a VM with 9p shares cannot be saved", len(cfg.Shares))
	}
	nicKind, err := nicKindOf(cfg.NICs)
	if err != nil {
		return Inputs{}, err
	}
	p := drv.Platform()
	if nicKind == NICSocket && p.Name == "vz" {
		return Inputs{}, errdefs.NotImplemented("vm template: socket NICs on vz: template placeholders there are NAT NICs, and a restore with a file-handle attachment in their place is unverified")
	}
	in := Inputs{Format: FormatVersion, Cmdline: slices.Clone(cfg.Cmdline), CPUs: cfg.CPUs,
		MemoryMiB: cfg.MemoryBytes >> 20, Disks: len(cfg.Disks), NICs: len(cfg.NICs), Balloon: cfg.Balloon,
		Platform: p.Name, Arch: p.Arch, Accel: p.Accel, NICKind: nicKind}
	if p.RAMInState {
		in.Kind = KindStateRAM
	}
	if in.KernelSHA256, err = FileSHA256(cfg.Kernel); err != nil {
		return in, fmt.Errorf("vm template: kernel: %w", err)
	}
	if cfg.Initrd != "" {
		if in.InitrdSHA256, err = FileSHA256(cfg.Initrd); err != nil {
			return in, fmt.Errorf("vm template: initrd: %w", err)
		}
	}
	if v, ok := drv.(Versioner); ok {
		if in.Hypervisor, err = v.HypervisorVersion(); err != nil {
			return in, fmt.Errorf("vm template: %w", err)
		}
	}
	return in, nil
}

// nicKindOf is the placeholder kind that serves nics: NICSocket when they
// are socket NICs, NICTAP when none is; both mixed are refused.
func nicKindOf(nics []hypervisor.NIC) (string, error) {
	kind := NICTAP
	for i, n := range nics {
		k := NICTAP
		if n.Socket != "" {
			k = NICSocket
		}
		if i > 0 && k != kind {
			return "", errdefs.NotImplemented("vm template: NIC %d is %s but NIC 0 is %s: a template's placeholder NICs are all of one kind", i, nicKindName(k), nicKindName(kind))
		}
		kind = k
	}
	return kind, nil
}

func nicKindName(k string) string {
	if k == NICSocket {
		return "a socket NIC"
	}
	return "a TAP NIC"
}

// checkNICs checks that nics match the placeholder kind of t.
func (t *Template) checkNICs(nics []hypervisor.NIC) error {
	k, err := nicKindOf(nics)
	if err != nil {
		return err
	}
	if len(nics) > 0 && k != t.Inputs.NICKind {
		return errdefs.InvalidArgument("vm template %s: start: the NICs are %ss, the template's placeholders are %ss", t.ID, nicKindName(k), nicKindName(t.Inputs.NICKind))
	}
	return nil
}

type hashKey struct {
	path  string
	size  int64
	mtime int64
}

var hashMemo sync.Map // hashKey → hex sha256

// FileSHA256 hashes a file's content, remembered per process while its
// path, size and mtime stay the same.
func FileSHA256(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	k := hashKey{path, fi.Size(), fi.ModTime().UnixNano()}
	if v, ok := hashMemo.Load(k); ok {
		return v.(string), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	hashMemo.Store(k, sum)
	return sum, nil
}

// Manifest is template.json.
type Manifest struct {
	ID     string `json:"id"`
	Inputs Inputs `json:"inputs"`
	// Kernel and Initrd are the paths the template booted (for display).
	Kernel      string        `json:"kernel"`
	Initrd      string        `json:"initrd"`
	Created     time.Time     `json:"created"`
	BuildTook   time.Duration `json:"build_took"`
	StateSHA256 string        `json:"state_sha256"` // the saved state (with the RAM for KindStateRAM)
	StateBytes  int64         `json:"state_bytes,omitempty"`
	RAMBytes    int64         `json:"ram_bytes"` // the ram file's size; 0 for KindStateRAM
	// RAMModified is the RAM file's mtime (Unix ns) after the build, and
	// RAMSample the sha256 of RAMSampleBlocks 4 KiB blocks spread over it:
	// a cheap check (hashing 256 MiB per start is not) that catches a
	// rewritten, truncated or grossly damaged RAM file, not every flipped bit.
	RAMModified int64  `json:"ram_modified"`
	RAMSample   string `json:"ram_sample"`
}

// Template is one usable template.
type Template struct {
	Manifest
	Dir string
}

// RAM is the template's guest RAM file.
func (t *Template) RAM() string { return filepath.Join(t.Dir, RAMFile) }

// Store holds templates in Dir.
type Store struct {
	Dir string
	Log hclog.Logger
}

func (s *Store) log() hclog.Logger {
	if s.Log == nil {
		return hclog.NewNullLogger()
	}
	return s.Log
}

// Entry is one template dir as List finds it: Err says why it cannot
// serve (corrupt, half-written).
type Entry struct {
	ID        string
	Dir       string
	Manifest  *Manifest
	DiskBytes int64 // allocated bytes of the dir's files
	Err       error
}

// List returns every template dir in the store, sorted by ID, each
// checked as Get would check it. A missing store is empty.
func (s *Store) List() ([]Entry, error) {
	des, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if !de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		e := Entry{ID: de.Name(), Dir: filepath.Join(s.Dir, de.Name())}
		t, err := s.load(de.Name())
		if err != nil {
			e.Err = err
		} else {
			e.Manifest = &t.Manifest
		}
		e.DiskBytes = duBytes(e.Dir)
		out = append(out, e)
	}
	return out, nil
}

func duBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, _ := d.Info(); info != nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					n += int64(st.Blocks) * 512
				}
			}
		}
		return nil
	})
	return n
}

// Get returns the template for in, checked: ErrNotFound when none was
// built, ErrInvalidArgument naming the file when it is corrupt (the
// caller should Remove it and boot cold).
func (s *Store) Get(in Inputs) (*Template, error) {
	t, err := s.load(in.ID())
	if err != nil {
		return nil, err
	}
	if !equalInputs(t.Inputs, in) {
		return nil, errdefs.InvalidArgument("vm template %s: %s records other inputs", t.ID, filepath.Join(t.Dir, ManifestFile))
	}
	return t, nil
}

func equalInputs(a, b Inputs) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Load returns the template id, checked as Get checks it (but without
// comparing inputs: the caller computed id from them).
func (s *Store) Load(id string) (*Template, error) {
	if id == "" || id != filepath.Base(id) || strings.HasPrefix(id, ".") {
		return nil, errdefs.InvalidArgument("vm template %q: not a template id", id)
	}
	return s.load(id)
}

// load reads and checks the template dir id.
func (s *Store) load(id string) (*Template, error) {
	dir := filepath.Join(s.Dir, id)
	mpath := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(mpath)
	if errors.Is(err, os.ErrNotExist) {
		if _, derr := os.Stat(dir); derr == nil {
			return nil, errdefs.InvalidArgument("vm template %s: %s missing", id, mpath)
		}
		return nil, errdefs.NotFound("vm template %s: not built", id)
	}
	if err != nil {
		return nil, errdefs.InvalidArgument("vm template %s: %v", id, err)
	}
	t := &Template{Dir: dir}
	if err := json.Unmarshal(b, &t.Manifest); err != nil {
		return nil, errdefs.InvalidArgument("vm template %s: %s malformed: %v", id, mpath, err)
	}
	if t.ID != id || t.Inputs.ID() != id {
		return nil, errdefs.InvalidArgument("vm template %s: %s names template %s", id, mpath, t.ID)
	}
	ck, err := hypervisor.ReadCheckpoint(filepath.Join(dir, VMDir))
	if err != nil {
		return nil, errdefs.InvalidArgument("vm template %s: %v", id, err)
	}
	sum, err := FileSHA256(filepath.Join(dir, VMDir, ck.State))
	if err != nil {
		return nil, errdefs.InvalidArgument("vm template %s: %v", id, err)
	}
	if sum != t.StateSHA256 {
		return nil, errdefs.InvalidArgument("vm template %s: saved state %s is corrupt (sha256 %s, recorded %s)",
			id, filepath.Join(dir, VMDir, ck.State), sum[:16], t.StateSHA256[:min(16, len(t.StateSHA256))])
	}
	if t.Inputs.Kind == KindStateRAM {
		return t, nil // no ram file: the RAM is in the state just checked
	}
	if t.Inputs.Kind != KindRAMFile {
		return nil, errdefs.InvalidArgument("vm template %s: %s: unknown kind %q", id, mpath, t.Inputs.Kind)
	}
	fi, err := os.Stat(t.RAM())
	if err != nil {
		return nil, errdefs.InvalidArgument("vm template %s: %v", id, err)
	}
	if fi.Size() != t.RAMBytes || fi.Size() != t.Inputs.MemoryMiB<<20 {
		return nil, errdefs.InvalidArgument("vm template %s: RAM file %s is %d bytes, want %d", id, t.RAM(), fi.Size(), t.Inputs.MemoryMiB<<20)
	}
	if fi.ModTime().UnixNano() != t.RAMModified {
		return nil, errdefs.InvalidArgument("vm template %s: RAM file %s was modified after the build (%s)", id, t.RAM(), fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	if sum, err := ramSample(t.RAM(), fi.Size()); err != nil || sum != t.RAMSample {
		return nil, errdefs.InvalidArgument("vm template %s: RAM file %s is corrupt (sampled blocks differ: %v)", id, t.RAM(), err)
	}
	return t, nil
}

// Remove deletes the template id (idempotent).
func (s *Store) Remove(id string) error {
	if id == "" || id != filepath.Base(id) || strings.HasPrefix(id, ".") {
		return errdefs.InvalidArgument("vm template %q: not a template id", id)
	}
	dir := filepath.Join(s.Dir, id)
	// Rename first so a concurrent Get never sees a half-removed dir.
	tmp := filepath.Join(s.Dir, ".rm-"+id+"-"+fmt.Sprint(time.Now().UnixNano()))
	if err := os.Rename(dir, tmp); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove vm template %s: %w", id, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove vm template %s: %w", id, err)
	}
	return nil
}

// Prune removes every template whose ID is not in keep, and leftovers of
// interrupted builds and removals. It returns the IDs removed.
func (s *Store) Prune(keep ...string) ([]string, error) {
	des, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, de := range des {
		n := de.Name()
		switch {
		case strings.HasPrefix(n, ".rm-"):
			errs = append(errs, os.RemoveAll(filepath.Join(s.Dir, n)))
		case strings.HasPrefix(n, ".build-"):
			// A build in progress holds its ID's lock.
			id := strings.SplitN(strings.TrimPrefix(n, ".build-"), "-", 2)[0]
			if unlock, err := s.lock(id); err == nil {
				errs = append(errs, os.RemoveAll(filepath.Join(s.Dir, n)))
				unlock()
			}
		case de.IsDir() && !strings.HasPrefix(n, ".") && !slices.Contains(keep, n):
			if err := s.Remove(n); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, n)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// ErrBusy is returned by Build when another process builds the same
// template.
var ErrBusy = errdefs.Unavailable("vm template: being built by another process")

// lock takes the ID's build lock without waiting (ErrBusy when held).
func (s *Store) lock(id string) (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, "."+id+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// SweepClones removes RAM clones in CloneDir (files "<name>.ram") whose
// VM is gone by the caller's account (alive(name) false): left behind
// when a supervisor was killed with its VM.
func (s *Store) SweepClones(alive func(name string) bool) []string {
	dir := s.CloneDir()
	des, _ := os.ReadDir(dir)
	var removed []string
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".ram")
		if !ok || alive(name) {
			continue
		}
		if os.Remove(filepath.Join(dir, de.Name())) == nil {
			removed = append(removed, de.Name())
		}
	}
	return removed
}

// RAMSampleBlocks is how many 4 KiB blocks of a template's RAM file its
// manifest's RAMSample covers.
const RAMSampleBlocks = 256

// ramSample hashes RAMSampleBlocks 4 KiB blocks evenly spread over the
// file (1 MiB read, from the page cache usually).
func ramSample(path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 4096)
	step := max(size/RAMSampleBlocks, 4096) &^ 4095
	for off := int64(0); off+4096 <= size; off += step {
		if _, err := f.ReadAt(buf, off); err != nil {
			return "", err
		}
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// RAMFingerprint is what a manifest records of a RAM file: its mtime (Unix
// ns) and the sha256 of its sampled blocks.
func RAMFingerprint(path string) (modified int64, sample string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, "", err
	}
	sample, err = ramSample(path, fi.Size())
	return fi.ModTime().UnixNano(), sample, err
}
