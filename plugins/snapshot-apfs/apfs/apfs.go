// Package apfs is the snapshot-apfs backend: each snapshot is a complete
// directory tree (snapshots/<id>/fs). Prepare clones the parent's tree file
// by file with internal/clonetree — clonefile(2) on darwin's APFS, FICLONE
// reflinks on Linux (xfs reflink=1, btrfs), a plain copy where neither
// works — so containers from one image share its blocks. Views are the
// parent's directory, bound read-only. Layers are applied with whiteouts
// deleting (the tree is the whole filesystem).
//
// Mounts are binds of the snapshot directory: a darwin sandbox runs in it,
// a VM shares it, and on Linux a bind mount presents it.
package apfs

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/clonetree"
	"github.com/berth-dev/berth/sdk/archive"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/snapshot/dirsnap"
)

// Version is the plugin's version, reported in Info.
const Version = "0.1.0"

// New returns the apfs snapshotter with the platform's cloner, unconfigured.
func New(log hclog.Logger) *dirsnap.Snapshotter { return NewWithCloner(nil, log) }

// NewWithCloner returns the snapshotter cloning files with c (nil: the
// platform's), the seam tests use.
func NewWithCloner(c clonetree.Cloner, log hclog.Logger) *dirsnap.Snapshotter {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return dirsnap.New(&backend{cloner: c, log: log}, log)
}

type backend struct {
	cloner clonetree.Cloner
	log    hclog.Logger
}

func (b *backend) Info() plugin.Info {
	return plugin.HostInfo(plugin.LayerSnapshot, "apfs", Version,
		snapshot.CapMountBind, snapshot.CapApplyGzip, snapshot.CapApplyZstd, snapshot.CapCleanup)
}

// Check accepts any host: where the filesystem cannot clone, files are
// copied (correct, only slower and without sharing).
func (b *backend) Check(string) error { return nil }

// Populate clones the parent's tree into a new active snapshot.
func (b *backend) Populate(_ context.Context, s dirsnap.Snap) error {
	if s.Kind != snapshot.KindActive || len(s.ParentFS) == 0 {
		return nil
	}
	if err := os.Remove(s.FS); err != nil {
		return err
	}
	st, err := clonetree.Tree(s.ParentFS[0], s.FS, clonetree.Options{Cloner: b.cloner})
	if err != nil {
		return fmt.Errorf("clone the parent's tree: %w", err)
	}
	b.log.Debug("cloned parent tree", "cloned", st.Cloned, "copied", st.Copied, "copied_bytes", st.CopiedBytes, "linked", st.Linked)
	return nil
}

func (b *backend) Whiteouts() archive.WhiteoutMode { return archive.WhiteoutDelete }

func (b *backend) Mounts(s dirsnap.Snap) []mount.Mount {
	if s.Kind == snapshot.KindView {
		src := s.FS
		if len(s.ParentFS) > 0 {
			src = s.ParentFS[0]
		}
		return []mount.Mount{{Type: "bind", Source: src, Options: []string{"ro", "rbind"}}}
	}
	return []mount.Mount{{Type: "bind", Source: s.FS, Options: []string{"rw", "rbind"}}}
}
