//go:build linux || darwin

package main

// VM templates (issue 10): a container's VM starts by restoring a
// pre-booted template (internal/vmtemplate) when one matches its boot
// config, and boots cold otherwise, saying why in the supervisor log.
// With the setting templates = true (config.hcl), the plugin builds
// templates in the background: the first Create with a boot config no
// template serves starts the build (that container boots cold); later
// ones restore. The plugin notes its choice (or the reason for none) in
// the task dir's template.json; the supervisor follows it. Templates live in <plugin state>/templates,
// which `berth system templates ls|rm|rebuild` reads and edits directly.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/schema"
)

// AnnotationTemplate set to "off" on a container makes its VM boot cold
// (benchmarks compare both; debugging a template).
const AnnotationTemplate = "berth.dev/vm-template"

// templatesDir is the template store of the plugin whose state dir is
// pluginState.
func templatesDir(pluginState string) string { return filepath.Join(pluginState, "templates") }

// taskTemplates is the template store seen from a task dir
// (<plugin state>/tasks/<id>).
func taskTemplates(taskDir string, log hclog.Logger) *vmtemplate.Store {
	return &vmtemplate.Store{Dir: templatesDir(filepath.Dir(filepath.Dir(taskDir))), Log: log}
}

// templateConfig is the VM config a template for boot is built from: what
// the supervisor's bootVM sets, minus the per-container paths and TAPs
// (only the disk and NIC counts matter).
func templateConfig(boot bootConfig, disks, nics int) hypervisor.Config {
	return hypervisor.Config{Kernel: boot.Kernel, Initrd: boot.Initrd, Cmdline: boot.Cmdline,
		CPUs: boot.CPUs, MemoryBytes: boot.MemoryBytes, Balloon: true, Disks: make([]hypervisor.Disk, disks),
		NICs: make([]hypervisor.NIC, nics)}
}

// startVM starts the task's VM from a template when one serves cfg, else
// boots it; on a template start s.vmCfg gets the VM's RAM file.
func (s *supervisor) startVM(ctx context.Context, drv hypervisor.Driver, cfg hypervisor.Config) (hypervisor.Machine, error) {
	m, err := s.startFromTemplate(ctx, drv, cfg)
	if err == nil {
		return m, nil
	}
	s.log.Info("booting cold", "reason", err)
	return drv.Start(ctx, cfg)
}

// taskTemplateFile is the task dir's note of the template its VM
// starts from (written by the plugin at Create).
const taskTemplateFile = "template.json"

type taskTemplate struct {
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"` // why none, when ID is empty
}

// startFromTemplate restores the template the plugin chose for the task,
// or says why it cannot. A corrupt template is removed (the plugin builds
// it again at the next Create).
func (s *supervisor) startFromTemplate(ctx context.Context, drv hypervisor.Driver, cfg hypervisor.Config) (hypervisor.Machine, error) {
	var tt taskTemplate
	if err := readJSON(filepath.Join(s.dir, taskTemplateFile), &tt); err != nil {
		return nil, errors.New("no vm template chosen for the task")
	}
	if tt.ID == "" {
		return nil, errors.New(tt.Reason)
	}
	store := taskTemplates(s.dir, s.log)
	tpl, err := store.Load(tt.ID)
	if errdefs.IsInvalidArgument(err) {
		s.log.Error("vm template unusable; removing it (the plugin builds it again)", "template", tt.ID, "error", err)
		_ = store.Remove(tt.ID)
	}
	if err != nil {
		return nil, err
	}
	tcfg := cfg
	if tpl.Inputs.Kind == vmtemplate.KindRAMFile {
		// A clone of the template's RAM file, mapped shared (fast
		// checkpoints). Not a private mapping of the template's file: the VM
		// has a balloon, and qemu 7.2's free-page reporting punches holes
		// into a private mapping's FILE (fixed in 8.1), which would damage
		// the template (vmtemplate.Start refuses it).
		dir := store.CloneDir()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		tcfg.MemoryFile = filepath.Join(dir, filepath.Base(cfg.RunDir)+".ram")
	}
	// (KindStateRAM, vz: the RAM is in the saved state, which Start
	// clones into the VM's RunDir and removes after the restore.)
	m, st, err := tpl.Start(ctx, drv, tcfg)
	if err != nil {
		// Not removed: the files passed Load's checks, and a machine that
		// does not match (errdefs.ErrInvalidArgument) is this task's
		// config, not the template's fault.
		s.log.Error("vm template start failed", "template", tpl.ID, "error", err)
		return nil, err
	}
	if tcfg.MemoryFile != "" {
		go func() { _ = m.Wait(); _ = os.Remove(tcfg.MemoryFile) }()
	}
	s.vmCfg = st.Config
	s.fromTemplate = true
	s.log.Info("vm started from template", "template", tpl.ID, "ram_clone", st.CloneMethod, "clone", st.Clone.Round(time.Millisecond),
		"restore", st.Restore.Round(time.Millisecond), "since_start", time.Since(s.started).Round(time.Millisecond))
	return m, nil
}

// restoreVM restores a checkpoint; one saved with file-backed RAM gets a
// clone of the checkpoint's RAM file.
func (s *supervisor) restoreVM(ctx context.Context, drv hypervisor.Driver, cfg hypervisor.Config, dir string) (hypervisor.Machine, error) {
	ck, err := hypervisor.ReadCheckpoint(dir)
	if err != nil || !ck.SharedRAM {
		return drv.Restore(ctx, cfg, dir)
	}
	cdir := taskTemplates(s.dir, s.log).CloneDir()
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return nil, err
	}
	cfg.MemoryFile = filepath.Join(cdir, filepath.Base(cfg.RunDir)+".ram")
	if _, err := vmtemplate.Clone(filepath.Join(dir, checkpointRAM), cfg.MemoryFile); err != nil {
		return nil, fmt.Errorf("restore: the checkpoint's RAM file: %w", err)
	}
	m, err := drv.Restore(ctx, cfg, dir)
	if err != nil {
		_ = os.Remove(cfg.MemoryFile)
		return nil, err
	}
	go func() { _ = m.Wait(); _ = os.Remove(cfg.MemoryFile) }()
	s.vmCfg = cfg
	return m, nil
}

// checkpointRAM is the RAM file's name in a checkpoint's vm dir when the
// VM ran with file-backed RAM (started from a template).
const checkpointRAM = "ram"

// saveRAM keeps the RAM file of a VM with file-backed RAM (saved and
// paused) in the checkpoint's vm dir: a hard link when the VM ends now
// (its RAM file never changes again; no copy when the checkpoint dir is on
// the RAM file's filesystem), else a clone (reflink or copy).
func (s *supervisor) saveRAM(vmDir string, leaveRunning bool) error {
	if s.vmCfg.MemoryFile == "" || s.vmCfg.MemoryPrivate {
		return nil // the RAM is in the saved state
	}
	dst := filepath.Join(vmDir, checkpointRAM)
	if !leaveRunning {
		_ = os.Remove(dst)
		if err := os.Link(s.vmCfg.MemoryFile, dst); err == nil {
			return nil
		}
	}
	if _, err := vmtemplate.Clone(s.vmCfg.MemoryFile, dst); err != nil {
		return fmt.Errorf("keep the VM's RAM file: %w", err)
	}
	return nil
}

// personalize gives a VM restored from a template its own identity before
// the container is created: entropy, clock, hostname and machine id, its
// rootfs disk's size.
func (s *supervisor) personalize(ctx context.Context, agent *vmagent.Client) error {
	if !s.fromTemplate {
		return nil
	}
	host := s.spec.ID
	if len(host) > 12 {
		host = host[:12]
	}
	if s.spec.Network != nil && s.spec.Network.Hostname != "" {
		host = s.spec.Network.Hostname
	} else if s.spec.OCI != nil && s.spec.OCI.Hostname != "" {
		host = s.spec.OCI.Hostname
	}
	id := vmtemplate.Identity{Hostname: host}
	for i := range min(len(s.vmCfg.Disks), 26) {
		id.Disks = append(id.Disks, vmtemplate.GuestDisk{Device: "/dev/vd" + string(rune('a'+i))})
	}
	if err := vmtemplate.Personalize(ctx, agent, id); err != nil {
		return fmt.Errorf("prepare the VM restored from a template: %w%s", err, s.consoleTail())
	}
	return nil
}

// maxTemplates bounds the templates kept (one per VM size in use; each
// holds the guest RAM it touched, ~136 MB for the default VM).
const maxTemplates = 4

// templateBuilds dedups background builds in the plugin process.
var templateBuilds sync.Map // template id → struct{}

// templatesEnabled reads the plugin's "templates" setting (default off:
// config.hcl turns it on).
func templatesEnabled(c schema.Config) bool {
	var v struct {
		Templates *bool `json:"templates"`
	}
	_ = json.Unmarshal(c.JSON, &v)
	return v.Templates != nil && *v.Templates
}

// chooseTemplate notes in the task dir which template the task's VM
// starts from, or why none: templates off, a restore, bind mounts (9p
// blocks saving), other than one disk, socket NICs on vz, or none built
// yet (templates with and without a NIC, and with a TAP or a socket NIC,
// are separate) — then it starts
// building one in the background (that task boots cold).
func (r *runtime) chooseTemplate(dir string, boot bootConfig, spec isolation.Spec) {
	tt := taskTemplate{}
	defer func() { _ = writeJSON(filepath.Join(dir, taskTemplateFile), tt) }()
	r.mu.Lock()
	on := r.templates
	r.mu.Unlock()
	switch {
	case !on:
		tt.Reason = "vm templates are off (templates = false)"
		return
	case boot.Restore != "":
		tt.Reason = "a restore"
		return
	case spec.Annotations[AnnotationTemplate] == "off":
		tt.Reason = "templates off for this container (" + AnnotationTemplate + "=off)"
		return
	case len(bindMounts(spec)) > 0:
		tt.Reason = "bind mounts (9p shares cannot be saved)"
		return
	case len(spec.Rootfs) != 1:
		tt.Reason = fmt.Sprintf("%d rootfs disks (templates have one)", len(spec.Rootfs))
		return
	}
	// A task with a bridge attachment starts from a template with one
	// placeholder NIC, one without from a template without: a placeholder
	// needs a backend with the same offloads on restore (a TAP), which a
	// task without a network does not have. A task on a user-mode network
	// (a socket NIC) starts from a template whose placeholder is a socket
	// NIC (no vnet header: vmtemplate.NICSocket, another ID).
	nics := nicsFor(spec) // network.go
	cfg := templateConfig(boot, 1, len(nics))
	copy(cfg.NICs, nics) // InputsFor takes their kind; Build only that and the count
	drv, err := newDriver(boot, r.log)
	if err != nil {
		tt.Reason = err.Error()
		return
	}
	// On vz (Platform.RAMInState) InputsFor picks vmtemplate.KindStateRAM:
	// the template's saved state carries the guest RAM.
	in, err := vmtemplate.InputsFor(drv, cfg)
	if err != nil {
		tt.Reason = err.Error()
		return
	}
	stateDir, runDir, err := r.dirs()
	if err != nil {
		tt.Reason = err.Error()
		return
	}
	store := &vmtemplate.Store{Dir: templatesDir(stateDir), Log: r.log}
	sweepClones(store, runDir)
	_, err = store.Get(in)
	if err == nil {
		tt.ID = in.ID()
		r.log.Info("task starts from vm template", "task", spec.ID, "template", tt.ID)
		return
	}
	tt.Reason = err.Error()
	if errdefs.IsInvalidArgument(err) {
		r.log.Error("vm template unusable; building it again", "template", in.ID(), "error", err)
	}
	r.buildTemplate(store, drv, in, cfg, boot, runDir)
}

// buildTemplate builds in's template in the background unless a build of
// it runs; then it removes the RAM clones of VMs that are gone and the
// templates the new one supersedes (same size, devices and machine, other kernel,
// initramfs, command line or hypervisor).
func (r *runtime) buildTemplate(store *vmtemplate.Store, drv hypervisor.Driver, in vmtemplate.Inputs, cfg hypervisor.Config, boot bootConfig, runDir string) {
	id := in.ID()
	if _, busy := templateBuilds.LoadOrStore(id, struct{}{}); busy {
		return
	}
	go func() {
		defer templateBuilds.Delete(id)
		_, _ = store.Prune(listIDs(store)...) // leftovers of interrupted builds
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		r.log.Info("building vm template", "template", id, "cpus", boot.CPUs, "memory", boot.MemoryBytes)
		tpl, err := store.Build(ctx, drv, in, cfg, vmtemplate.BuildOptions{Timeout: max(boot.BootTimeout, 60*time.Second)})
		if err != nil {
			if !errors.Is(err, vmtemplate.ErrBusy) {
				r.log.Error("vm template build failed; containers boot cold", "template", id, "error", err)
			}
			return
		}
		r.log.Info("vm template built", "template", id, "took", tpl.BuildTook.Round(time.Millisecond).String())
		pruneTemplates(r.log, store, tpl.ID, in)
	}()
}

// listIDs is every template dir's ID (so Prune keeps them all).
func listIDs(store *vmtemplate.Store) []string {
	entries, _ := store.List()
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.ID)
	}
	return ids
}

// sweepClones removes the RAM clones of VMs that are gone: a clone is
// named after its task's VM run dir (<runtime>/<name>), which the
// supervisor makes before the clone and removes (as Delete does for a
// dead supervisor's) after the VM ended. A supervisor killed with its VM
// leaves its clone (on /dev/shm: RAM) until then.
func sweepClones(store *vmtemplate.Store, runDir string) {
	for _, f := range store.SweepClones(func(name string) bool {
		_, err := os.Stat(filepath.Join(runDir, name))
		return err == nil
	}) {
		store.Log.Info("removed the RAM clone of a VM that is gone", "file", f)
	}
}

// pruneTemplates drops, after keep was built for in, the templates it
// supersedes (same size, devices, machine and kind, other kernel, initramfs,
// command line or hypervisor) and the oldest beyond maxTemplates.
func pruneTemplates(log hclog.Logger, store *vmtemplate.Store, keep string, in vmtemplate.Inputs) {
	entries, _ := store.List()
	var kept []vmtemplate.Entry
	for _, e := range entries {
		if e.ID == keep || e.Manifest == nil {
			continue
		}
		o := e.Manifest.Inputs
		if o.CPUs == in.CPUs && o.MemoryMiB == in.MemoryMiB && o.Disks == in.Disks && o.NICs == in.NICs && o.NICKind == in.NICKind && o.Platform == in.Platform && o.Kind == in.Kind {
			log.Info("removing superseded vm template", "template", e.ID, "by", keep)
			_ = store.Remove(e.ID)
			continue
		}
		kept = append(kept, e)
	}
	// Each VM size has its own template: keep the newest few.
	slices.SortFunc(kept, func(a, b vmtemplate.Entry) int { return b.Manifest.Created.Compare(a.Manifest.Created) })
	for _, e := range kept[min(len(kept), maxTemplates-1):] {
		log.Info("removing the oldest vm template", "template", e.ID, "keep", maxTemplates)
		_ = store.Remove(e.ID)
	}
}
