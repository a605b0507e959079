package vmtemplate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// DefaultReady is the guest agent's console line once it serves the host
// (plugins/isolation-vm/guest); a template is saved after it appears and
// before any host ever connected, so every restore finds the agent
// waiting for its first host.
const DefaultReady = "serving the host"

// BuildOptions tune Build.
type BuildOptions struct {
	// Ready is the console text that says the guest is ready to be saved
	// (default DefaultReady).
	Ready string
	// Timeout bounds the boot (default 120 s).
	Timeout time.Duration
}

// Build boots base (kernel, initrd, cmdline, size, balloon; its Disks and
// NICs give only the counts: each disk becomes an empty placeholder, each
// NIC a virtio-net with PlaceholderMAC(i) on a TAP the hypervisor creates
// for the build and removes when it ends — Linux, root; on vz, whose NICs
// take no TAP, a NAT NIC with that MAC; for in.NICKind NICSocket a socket
// NIC on a unix stream socket the build listens on (and drains) itself; ConsoleLog, RunDir and MemoryFile
// are the template's own) on drv, waits for the agent, saves it — with
// guest RAM in the template's RAM file, or for in.Kind KindStateRAM
// without a MemoryFile, the RAM in the saved state — and stores it as the
// template for in. ErrBusy when another process is building it; an
// existing valid template is returned as is. On error nothing is left.
func (s *Store) Build(ctx context.Context, drv hypervisor.Driver, in Inputs, base hypervisor.Config, opts BuildOptions) (_ *Template, err error) {
	id := in.ID()
	if opts.Ready == "" {
		opts.Ready = DefaultReady
	}
	if opts.Timeout == 0 {
		opts.Timeout = 120 * time.Second
	}
	unlock, err := s.lock(id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t, err := s.Get(in); err == nil {
		return t, nil
	}
	start := time.Now()
	tmp, err := os.MkdirTemp(s.Dir, ".build-"+id+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// Unix socket paths are short: the VM's sockets go to a short dir.
	runDir, err := os.MkdirTemp("", "berth-tpl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(runDir)

	cfg := base
	cfg.Shares, cfg.NICs = nil, nil
	cfg.Disks = nil
	for i := range base.Disks {
		p := filepath.Join(tmp, fmt.Sprintf("placeholder%d.raw", i))
		// Empty: the guest sees a zero-capacity disk at boot, so it reads
		// nothing from it (no partition scan) that could linger in its
		// cache once the disk is the container's.
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return nil, err
		}
		cfg.Disks = append(cfg.Disks, hypervisor.Disk{Path: p, Format: "raw"})
	}
	vzNICs := drv.Platform().Name == "vz"
	var sockets *placeholderSockets
	if in.NICKind == NICSocket && len(base.NICs) > 0 {
		if vzNICs {
			return nil, errdefs.NotImplemented("vm template %s: socket NIC placeholders on vz", id)
		}
		if sockets, err = listenPlaceholders(runDir, len(base.NICs)); err != nil {
			return nil, fmt.Errorf("vm template %s: %w", id, err)
		}
		// Closed after the VM is killed (deferred earlier = runs later).
		defer sockets.Close()
	}
	for i := range base.NICs {
		if sockets != nil {
			cfg.NICs = append(cfg.NICs, hypervisor.NIC{Socket: sockets.Path(i), MAC: PlaceholderMAC(i)})
			continue
		}
		if vzNICs {
			cfg.NICs = append(cfg.NICs, hypervisor.NIC{MAC: PlaceholderMAC(i)})
			continue
		}
		// Not on any bridge, and not persistent: qemu creates it (with a
		// vnet header, as the containers' TAPs have: the offloads the guest
		// negotiates are in the saved state and must be there on restore)
		// and the kernel removes it when qemu's fd closes.
		cfg.NICs = append(cfg.NICs, hypervisor.NIC{TAP: buildTAP(id, i), MAC: PlaceholderMAC(i)})
	}
	cfg.ConsoleLog = filepath.Join(tmp, ConsoleFile)
	cfg.RunDir = runDir
	switch in.Kind {
	case KindRAMFile:
		cfg.MemoryFile = filepath.Join(tmp, RAMFile)
	case KindStateRAM:
		cfg.MemoryFile, cfg.MemoryPrivate = "", false
	default:
		return nil, errdefs.InvalidArgument("vm template %s: unknown kind %q", id, in.Kind)
	}

	bctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	m, err := drv.Start(bctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("vm template %s: boot: %w", id, err)
	}
	defer func() { m.Kill(); m.Wait() }()
	ended := make(chan struct{})
	go func() { m.Wait(); close(ended) }()
	if err := waitConsole(bctx, cfg.ConsoleLog, opts.Ready, ended); err != nil {
		return nil, fmt.Errorf("vm template %s: %w (console: %s)", id, err, consoleTail(cfg.ConsoleLog))
	}
	vmDir := filepath.Join(tmp, VMDir)
	if err := m.Save(bctx, vmDir); err != nil {
		return nil, fmt.Errorf("vm template %s: %w", id, err)
	}
	m.Kill()
	m.Wait()
	ck, err := hypervisor.ReadCheckpoint(vmDir)
	if err != nil {
		return nil, err
	}
	statePath := filepath.Join(vmDir, ck.State)
	if err := syncFile(statePath); err != nil {
		return nil, err
	}
	sum, err := FileSHA256(statePath)
	if err != nil {
		return nil, err
	}
	man := Manifest{ID: id, Inputs: in, Kernel: base.Kernel, Initrd: base.Initrd, Created: time.Now().UTC(),
		BuildTook: time.Since(start), StateSHA256: sum}
	if fi, err := os.Stat(statePath); err == nil {
		man.StateBytes = fi.Size()
	}
	if in.Kind == KindRAMFile {
		if err := syncFile(cfg.MemoryFile); err != nil {
			return nil, err
		}
		if man.RAMModified, man.RAMSample, err = RAMFingerprint(cfg.MemoryFile); err != nil {
			return nil, err
		}
		man.RAMBytes = base.MemoryBytes
	}
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := hypervisor.WriteFileAtomic(filepath.Join(tmp, ManifestFile), b); err != nil {
		return nil, err
	}
	dst := filepath.Join(s.Dir, id)
	if err := s.Remove(id); err != nil { // a corrupt one
		return nil, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, err
	}
	_ = hypervisor.SyncDir(s.Dir)
	s.log().Info("vm template built", "id", id, "took", time.Since(start).Round(time.Millisecond))
	return &Template{Manifest: man, Dir: dst}, nil
}

// buildTAP names the TAP of placeholder NIC i while template id builds
// (at most 15 characters; the build holds id's lock).
func buildTAP(id string, i int) string {
	return fmt.Sprintf("btpl%.8s%d", id, i)
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// waitConsole polls the console log for text until ctx ends or the VM
// ends.
func waitConsole(ctx context.Context, path, text string, ended <-chan struct{}) error {
	for {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), text) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("guest not ready (%q not on the console): %w", text, ctx.Err())
		case <-ended:
			return errors.New("the VM ended while booting")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func consoleTail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-4):], " | ")
}

// StartInfo describes a start from a template.
type StartInfo struct {
	// Config is the config the VM runs with (MemoryFile/MemoryPrivate set).
	Config hypervisor.Config
	// CloneMethod is "private" (the template's RAM file mapped
	// copy-on-write, nothing copied), "reflink" or "copy".
	CloneMethod string
	Clone       time.Duration
	Restore     time.Duration
}

// Start restores t as the VM cfg describes: cfg.Disks are the container's
// images in the placeholders' places, cfg.NICs the container's TAPs in the
// placeholder NICs' (the guest's NIC keeps PlaceholderMAC(i) until the
// agent sets cfg.NICs[i].MAC: vmagent.NetworkInterface.FormerMAC). With cfg.MemoryFile empty the VM maps
// the template's RAM file privately (copy-on-write: no copy, pages shared
// with the other VMs of the template until written; a Save of the VM then
// carries its RAM). With cfg.MemoryFile set, the template's RAM file is
// cloned there and mapped shared (fast Saves; the caller removes the clone
// once the VM ended). cfg must match the template's inputs (same kernel,
// initrd, size, disk count). The VM runs when Start returns and, where the
// machine supports it, has been told its disks changed; call Personalize
// with its agent before creating the container.
func (t *Template) Start(ctx context.Context, drv hypervisor.Driver, cfg hypervisor.Config) (hypervisor.Machine, StartInfo, error) {
	st := StartInfo{CloneMethod: "private"}
	if t.Inputs.Kind == KindStateRAM {
		return t.startStateRAM(ctx, drv, cfg)
	}
	if cfg.MemoryFile == "" && cfg.Balloon {
		// qemu 7.2 discards freed pages of a file-backed block with
		// fallocate(PUNCH_HOLE) even on a private mapping (fixed in 8.1):
		// the balloon's free-page reporting would punch holes into the
		// template's RAM file, under every VM started from it.
		return nil, st, errdefs.InvalidArgument("vm template %s: a private mapping of the template's RAM file with a balloon would let the hypervisor punch holes into it: give a MemoryFile to clone into, or no balloon", t.ID)
	}
	if len(cfg.Disks) != t.Inputs.Disks {
		return nil, st, errdefs.InvalidArgument("vm template %s: start: %d disks, the template has %d", t.ID, len(cfg.Disks), t.Inputs.Disks)
	}
	if len(cfg.NICs) != t.Inputs.NICs {
		return nil, st, errdefs.InvalidArgument("vm template %s: start: %d NICs, the template has %d", t.ID, len(cfg.NICs), t.Inputs.NICs)
	}
	if err := t.checkNICs(cfg.NICs); err != nil {
		return nil, st, err
	}
	cloned := cfg.MemoryFile != ""
	if cloned {
		c0 := time.Now()
		method, err := Clone(t.RAM(), cfg.MemoryFile)
		if err != nil {
			return nil, st, fmt.Errorf("vm template %s: clone RAM: %w", t.ID, err)
		}
		st.CloneMethod, st.Clone = method, time.Since(c0)
		cfg.MemoryPrivate = false
	} else {
		cfg.MemoryFile, cfg.MemoryPrivate = t.RAM(), true
	}
	undo := func() {
		if cloned {
			os.Remove(cfg.MemoryFile)
		}
	}
	r0 := time.Now()
	m, err := drv.Restore(ctx, cfg, filepath.Join(t.Dir, VMDir))
	if err != nil {
		undo()
		return nil, st, fmt.Errorf("vm template %s: %w", t.ID, err)
	}
	st.Restore = time.Since(r0)
	if r, ok := m.(DiskRefresher); ok {
		if err := r.RefreshDisks(ctx); err != nil {
			m.Kill()
			m.Wait()
			undo()
			return nil, st, fmt.Errorf("vm template %s: %w", t.ID, err)
		}
	}
	st.Config = cfg
	return m, st, nil
}

// checkArgs checks cfg's device counts against t's.
func (t *Template) checkArgs(cfg hypervisor.Config) error {
	if len(cfg.Disks) != t.Inputs.Disks {
		return errdefs.InvalidArgument("vm template %s: start: %d disks, the template has %d", t.ID, len(cfg.Disks), t.Inputs.Disks)
	}
	if len(cfg.NICs) != t.Inputs.NICs {
		return errdefs.InvalidArgument("vm template %s: start: %d NICs, the template has %d", t.ID, len(cfg.NICs), t.Inputs.NICs)
	}
	return t.checkNICs(cfg.NICs)
}

// StateCloneDir is the dir inside a VM's RunDir that Start of a
// KindStateRAM template clones the saved state into (removed once the
// restore has read it).
const StateCloneDir = "template-state"

// startStateRAM is Start for KindStateRAM: clone the saved state dir into
// cfg.RunDir, restore from the clone (the hypervisor reads all of it
// before Restore returns: qemu waits for the incoming migration to
// complete, vz's RestoreMachineStateFromURL is synchronous), remove it.
func (t *Template) startStateRAM(ctx context.Context, drv hypervisor.Driver, cfg hypervisor.Config) (hypervisor.Machine, StartInfo, error) {
	var st StartInfo
	if cfg.MemoryFile != "" {
		return nil, st, errdefs.InvalidArgument("vm template %s: its guest RAM is in the saved state: start it without a memory file (%s)", t.ID, cfg.MemoryFile)
	}
	if err := t.checkArgs(cfg); err != nil {
		return nil, st, err
	}
	if cfg.RunDir == "" {
		return nil, st, errdefs.InvalidArgument("vm template %s: start: no RunDir to clone the saved state into", t.ID)
	}
	dst := filepath.Join(cfg.RunDir, StateCloneDir)
	defer os.RemoveAll(dst)
	c0 := time.Now()
	method, err := cloneDir(filepath.Join(t.Dir, VMDir), dst)
	if err != nil {
		return nil, st, fmt.Errorf("vm template %s: clone the saved state: %w", t.ID, err)
	}
	st.CloneMethod, st.Clone = method, time.Since(c0)
	r0 := time.Now()
	m, err := drv.Restore(ctx, cfg, dst)
	if err != nil {
		return nil, st, fmt.Errorf("vm template %s: %w", t.ID, err)
	}
	st.Restore = time.Since(r0)
	if r, ok := m.(DiskRefresher); ok {
		if err := r.RefreshDisks(ctx); err != nil {
			m.Kill()
			m.Wait()
			return nil, st, fmt.Errorf("vm template %s: %w", t.ID, err)
		}
	}
	st.Config = cfg
	return m, st, nil
}

// cloneDir makes dst (replaced) hold a clone of each regular file of src
// (cloneReadOnly), and returns the method of the largest file's clone.
func cloneDir(src, dst string) (string, error) {
	des, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dst); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return "", err
	}
	method, largest := "", int64(-1)
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			return "", err
		}
		m, err := cloneReadOnly(filepath.Join(src, de.Name()), filepath.Join(dst, de.Name()))
		if err != nil {
			os.RemoveAll(dst)
			return "", err
		}
		if fi.Size() > largest {
			method, largest = m, fi.Size()
		}
	}
	return method, nil
}

// Agent is what Personalize needs of the guest agent (*vmagent.Client).
type Agent interface {
	AddEntropy(ctx context.Context, b []byte) error
	SyncClock(ctx context.Context, t time.Time) error
	SetHostname(ctx context.Context, hostname, machineID string) error
	RefreshDisk(ctx context.Context, device string, minBytes uint64) (uint64, error)
}

var _ Agent = (*vmagent.Client)(nil)

// Identity is what makes a restored guest its own.
type Identity struct {
	// Hostname of the VM (required).
	Hostname string
	// Disks are the guest devices of the container's disks ("/dev/vda")
	// with the size each must show (bytes; 0: any non-zero).
	Disks []GuestDisk
}

// GuestDisk is a disk as the guest names it.
type GuestDisk struct {
	Device string
	Bytes  uint64
}

// Personalize makes a guest restored from a template its own before any
// workload runs: fresh entropy (RNDADDENTROPY then RNDRESEEDCRNG: every
// clone starts with the template's CRNG state), the host's wall clock
// (the clone wakes at the template's save time), a hostname and a new
// machine id, and its disks' new capacities with their caches dropped.
func Personalize(ctx context.Context, a Agent, id Identity) error {
	seed := make([]byte, 64)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	if err := a.AddEntropy(ctx, seed); err != nil {
		return err
	}
	if err := a.SyncClock(ctx, time.Now()); err != nil {
		return err
	}
	mid := make([]byte, 16)
	_, _ = rand.Read(mid)
	if err := a.SetHostname(ctx, id.Hostname, hex.EncodeToString(mid)); err != nil {
		return err
	}
	for _, d := range id.Disks {
		if _, err := a.RefreshDisk(ctx, d.Device, d.Bytes); err != nil {
			return err
		}
	}
	return nil
}
