package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-dev/berth/internal/hypervisor"
)

// RefreshDisks tells the guest that its disks may have new backing files
// (a VM restored from a template, issue 10: disks are not part of the
// migration stream, so the restore command line points the template's
// placeholder disks at the container's images): a block_resize of every
// disk to its current size raises virtio-blk's config-change interrupt,
// on which the guest re-reads the capacity. Call it once the VM runs.
func (m *vm) RefreshDisks(ctx context.Context) error {
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			Image struct {
				VirtualSize int64 `json:"virtual-size"`
			} `json:"image"`
		} `json:"inserted"`
	}
	if err := m.run(ctx, "query-block", nil, &blocks); err != nil {
		return fmt.Errorf("refresh disks: %w", err)
	}
	for _, b := range blocks {
		if !strings.HasPrefix(b.Device, "disk") || b.Inserted == nil {
			continue
		}
		args := map[string]any{"device": b.Device, "size": b.Inserted.Image.VirtualSize}
		if err := m.run(ctx, "block_resize", args, nil); err != nil {
			return fmt.Errorf("refresh disk %s: %w", b.Device, err)
		}
	}
	return nil
}

var versionMemo sync.Map // binary path → version string

// HypervisorVersion is the first line of `qemu-system-… --version` (run
// once per process and binary): a template saved by one qemu version is
// not restored by another.
func (d *driver) HypervisorVersion() (string, error) {
	if v, ok := versionMemo.Load(d.bin); ok {
		return v.(string), nil
	}
	out, err := exec.Command(d.bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", d.bin, err)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	versionMemo.Store(d.bin, v)
	return v, nil
}

// emptyRAMFile makes a sparse file of cfg's RAM size in cfg.RunDir for a
// private memory backend.
func emptyRAMFile(cfg hypervisor.Config) (string, error) {
	p := filepath.Join(cfg.RunDir, "ram.restore")
	os.Remove(p)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	err = f.Truncate(cfg.MemoryBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return "", err
	}
	return p, nil
}
