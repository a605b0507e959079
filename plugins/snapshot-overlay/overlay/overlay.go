// Package overlay is the snapshot-overlay backend: each snapshot is an
// overlayfs upper directory (snapshots/<id>/fs, with snapshots/<id>/work)
// and its ancestors' fs directories are its lowerdirs, nearest first.
//
// Mounts:
//   - an active snapshot with a parent: overlay, upperdir + workdir +
//     lowerdir=<parent fs>:<grandparent fs>:…
//   - an active snapshot without a parent: a read-write bind of its fs
//     (overlayfs needs a lowerdir)
//   - a view of one layer (or of none): a read-only bind of that fs
//   - a view of several layers: overlay of lowerdirs only (read-only)
//
// Deep chains: descriptors carry absolute lowerdirs; they exceed the page
// mount(2) accepts past ~60 layers, and sdk/snapshot/mountutil mounts them
// with lowerdirs relative to the common snapshots/ directory (what
// containerd does). Layers are applied straight into the upper directory
// with overlayfs whiteouts (0:0 character devices, trusted.overlay.opaque).
package overlay

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/archive"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/dirsnap"
)

// Version is the plugin's version, reported in Info.
const Version = "0.1.0"

// New returns the overlay snapshotter, unconfigured.
func New(log hclog.Logger) *dirsnap.Snapshotter { return dirsnap.New(backend{}, log) }

type backend struct{}

func (backend) Info() plugin.Info {
	var caps []string
	if runtime.GOOS == "linux" {
		caps = []string{snapshot.CapMountOverlay, snapshot.CapMountBind, snapshot.CapApplyGzip, snapshot.CapApplyZstd, snapshot.CapCleanup}
	}
	return plugin.HostInfo(plugin.LayerSnapshot, "overlay", Version, caps...)
}

// Check refuses hosts without overlayfs.
func (backend) Check(string) error {
	if runtime.GOOS != "linux" {
		return errdefs.NotImplemented("snapshot-overlay serves Linux only (this is %s); use snapshot-apfs", runtime.GOOS)
	}
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return errdefs.NotImplemented("snapshot-overlay: cannot read /proc/filesystems: %v", err)
	}
	if !strings.Contains(string(b), "\toverlay\n") {
		return errdefs.NotImplemented("snapshot-overlay: the kernel has no overlayfs (modprobe overlay)")
	}
	return nil
}

// Populate makes the overlay work dir; the upper dir starts empty.
func (backend) Populate(_ context.Context, s dirsnap.Snap) error {
	if s.Kind == snapshot.KindActive {
		if err := os.Mkdir(s.Work, 0o711); err != nil {
			return fmt.Errorf("make overlay work dir: %w", err)
		}
	}
	return nil
}

func (backend) Whiteouts() archive.WhiteoutMode { return archive.WhiteoutOverlay }

func (backend) Mounts(s dirsnap.Snap) []mount.Mount {
	if s.Kind == snapshot.KindView {
		switch len(s.ParentFS) {
		case 0:
			return []mount.Mount{{Type: "bind", Source: s.FS, Options: []string{"ro", "rbind"}}}
		case 1:
			return []mount.Mount{{Type: "bind", Source: s.ParentFS[0], Options: []string{"ro", "rbind"}}}
		}
		return []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(s.ParentFS, ":")}}}
	}
	if len(s.ParentFS) == 0 {
		return []mount.Mount{{Type: "bind", Source: s.FS, Options: []string{"rw", "rbind"}}}
	}
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + s.Work,
		"upperdir=" + s.FS,
		"lowerdir=" + strings.Join(s.ParentFS, ":"),
	}}}
}
