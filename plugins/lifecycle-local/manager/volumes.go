package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/plugins/lifecycle-local/rootfs"
	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
)

// Volumes live beside the container store, owned by lifecycle-local: a
// volume is only ever used by the containers this plugin creates, whether
// one is in use is a question about its container records (answered in
// the same bbolt transaction that removes it), and its data must survive
// the containers, so the plugin's state dir is its home. Layout:
//
//	<state_dir>/volumes/<name>/_data   the data, bind-mounted into containers
//	<state_dir>/volumes/.new-*         a volume being made (removed at start)
//	<state_dir>/volumes/.old-*         a volume being removed (removed at start)
//	<state_dir>/mnt/rootfs-*           a stopped container's rootfs, mounted
//	                                   for cp, export or copy-up (unmounted at start)
//
// The metadata (labels, creation time, anonymous) is in the store's
// volumes bucket. Volume operations, and the volume step of Create, are
// serialised by Manager.volMu.

// volumeNamePattern is Docker's rule for volume names.
var volumeNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func checkVolumeName(name string) error {
	if !volumeNamePattern.MatchString(name) {
		return errdefs.InvalidArgument("invalid volume name %q: it needs two or more of [a-zA-Z0-9_.-], starting with a letter or digit", name)
	}
	return nil
}

func (m *Manager) volumesDir() string { return filepath.Join(m.stateDir, "volumes") }
func (m *Manager) volumeDir(name string) string {
	return filepath.Join(m.volumesDir(), name)
}

// VolumeData is the directory holding volume name's data below the
// plugin's state dir, the one containers get bind-mounted.
func VolumeData(stateDir, name string) string {
	return filepath.Join(stateDir, "volumes", name, "_data")
}

func (m *Manager) mntDir() string { return filepath.Join(m.stateDir, "mnt") }

// cleanupLeftovers removes what a process that died mid-operation left:
// rootfs mounts, half-made and half-removed volumes.
func (m *Manager) cleanupLeftovers() {
	if err := rootfs.Cleanup(m.mntDir()); err != nil {
		m.log.Warn("unmount leftover rootfs mounts", "dir", m.mntDir(), "error", err)
	}
	entries, _ := os.ReadDir(m.volumesDir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".new-") || strings.HasPrefix(e.Name(), ".old-") {
			if err := os.RemoveAll(filepath.Join(m.volumesDir(), e.Name())); err != nil {
				m.log.Warn("remove leftover volume directory", "dir", e.Name(), "error", err)
			}
		}
	}
}

func randomHex() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// ensureVolume returns volume name, making it (directory, then record)
// when it does not exist; created says whether it did. volMu held.
func (m *Manager) ensureVolume(st *store.Store, name string, labels map[string]string, anonymous bool) (store.Volume, bool, error) {
	if v, err := st.GetVolume(name); err == nil {
		return v, false, nil
	} else if !errdefs.IsNotFound(err) {
		return store.Volume{}, false, err
	}
	dir := m.volumeDir(name)
	made := false
	if _, err := os.Stat(filepath.Join(dir, "_data")); errors.Is(err, fs.ErrNotExist) {
		// Made aside and renamed into place, so a crash leaves either no
		// volume directory or a whole one.
		if err := os.MkdirAll(m.volumesDir(), 0o700); err != nil {
			return store.Volume{}, false, err
		}
		tmp, err := os.MkdirTemp(m.volumesDir(), ".new-")
		if err != nil {
			return store.Volume{}, false, err
		}
		if err := os.Mkdir(filepath.Join(tmp, "_data"), 0o755); err != nil {
			_ = os.RemoveAll(tmp)
			return store.Volume{}, false, err
		}
		if err := os.Rename(tmp, dir); err != nil {
			_ = os.RemoveAll(tmp)
			return store.Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
		}
		made = true
	} else if err != nil {
		return store.Volume{}, false, err
	} // else: the directory of a volume whose record was never written; adopted with its data
	v := store.Volume{Name: name, Labels: labels, CreatedAt: time.Now().UTC(), Anonymous: anonymous}
	if err := st.CreateVolume(v); err != nil {
		if made {
			_ = os.RemoveAll(dir)
		}
		return store.Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	m.log.Info("volume created", "volume", name, "anonymous", anonymous)
	return v, true, nil
}

// removeVolumeData removes a volume's directory: renamed aside first, so
// a name reused at once gets a fresh directory.
func (m *Manager) removeVolumeData(name string) error {
	dir := m.volumeDir(name)
	old := filepath.Join(m.volumesDir(), ".old-"+randomHex()[:16])
	if err := os.Rename(dir, old); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

func (m *Manager) volumeToAPI(v store.Volume, users []string) lifecycle.Volume {
	labels := v.Labels
	if v.Anonymous {
		labels = map[string]string{lifecycle.LabelAnonymousVolume: ""}
		for k, val := range v.Labels {
			labels[k] = val
		}
	}
	return lifecycle.Volume{
		Name: v.Name, Driver: lifecycle.VolumeDriverLocal, Mountpoint: VolumeData(m.stateDir, v.Name),
		Labels: labels, CreatedAt: v.CreatedAt, Anonymous: v.Anonymous, UsedBy: users,
	}
}

// CreateVolume implements lifecycle.Manager.
func (m *Manager) CreateVolume(_ context.Context, name string, labels map[string]string) (lifecycle.Volume, error) {
	st, _, err := m.env()
	if err != nil {
		return lifecycle.Volume{}, err
	}
	if name == "" {
		name = randomHex()
	} else if err := checkVolumeName(name); err != nil {
		return lifecycle.Volume{}, err
	}
	m.volMu.Lock()
	defer m.volMu.Unlock()
	v, _, err := m.ensureVolume(st, name, labels, false)
	if err != nil {
		return lifecycle.Volume{}, err
	}
	users, err := st.VolumeUsers()
	if err != nil {
		return lifecycle.Volume{}, err
	}
	return m.volumeToAPI(v, users[name]), nil
}

// ListVolumes implements lifecycle.Manager.
func (m *Manager) ListVolumes(context.Context) ([]lifecycle.Volume, error) {
	st, _, err := m.env()
	if err != nil {
		return nil, err
	}
	vs, err := st.ListVolumes()
	if err != nil {
		return nil, err
	}
	users, err := st.VolumeUsers()
	if err != nil {
		return nil, err
	}
	out := make([]lifecycle.Volume, 0, len(vs))
	for _, v := range vs {
		out = append(out, m.volumeToAPI(v, users[v.Name]))
	}
	return out, nil
}

// InspectVolume implements lifecycle.Manager.
func (m *Manager) InspectVolume(_ context.Context, name string) (lifecycle.Volume, error) {
	st, _, err := m.env()
	if err != nil {
		return lifecycle.Volume{}, err
	}
	v, err := st.GetVolume(name)
	if err != nil {
		return lifecycle.Volume{}, err
	}
	users, err := st.VolumeUsers()
	if err != nil {
		return lifecycle.Volume{}, err
	}
	return m.volumeToAPI(v, users[name]), nil
}

// RemoveVolume implements lifecycle.Manager: the record goes first (in the
// transaction that checks no container mounts the volume), then the data.
func (m *Manager) RemoveVolume(_ context.Context, name string, force bool) error {
	st, _, err := m.env()
	if err != nil {
		return err
	}
	m.volMu.Lock()
	defer m.volMu.Unlock()
	if err := st.DeleteVolume(name, ""); err != nil {
		if force && errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	m.log.Info("volume removed", "volume", name)
	return m.removeVolumeData(name)
}

// PruneVolumes implements lifecycle.Manager.
func (m *Manager) PruneVolumes(_ context.Context, all bool) (lifecycle.VolumePruneReport, error) {
	var rep lifecycle.VolumePruneReport
	st, _, err := m.env()
	if err != nil {
		return rep, err
	}
	m.volMu.Lock()
	defer m.volMu.Unlock()
	vs, err := st.ListVolumes()
	if err != nil {
		return rep, err
	}
	users, err := st.VolumeUsers()
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, v := range vs {
		if len(users[v.Name]) > 0 || (!all && !v.Anonymous) {
			continue
		}
		size := dirSize(m.volumeDir(v.Name))
		if err := st.DeleteVolume(v.Name, ""); err != nil {
			if !errdefs.IsNotFound(err) && !errdefs.IsInvalidState(err) {
				errs = append(errs, err)
			}
			continue
		}
		if err := m.removeVolumeData(v.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed = append(rep.Removed, v.Name)
		rep.ReclaimedBytes += size
	}
	m.log.Info("volumes pruned", "removed", len(rep.Removed), "bytes", rep.ReclaimedBytes)
	return rep, errors.Join(errs...)
}

// dirSize is the bytes of the regular files below dir.
func dirSize(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += uint64(info.Size())
			}
		}
		return nil
	})
	return n
}

// volumeMountOptions are the options a volume's bind mount keeps; the
// others (nocopy, volume-opt=…) are about the volume, not the mount.
var volumeMountOptions = []string{"rprivate", "private", "rshared", "shared", "rslave", "slave", "nosuid", "nodev", "noexec", "noatime", "relatime"}

// noCopy reports whether a volume mount asks not to be filled from the
// image (docker --mount volume-nocopy, -v name:/path:nocopy).
func noCopy(m lifecycle.Mount) bool {
	return slices.ContainsFunc(m.Options, func(o string) bool {
		return o == "nocopy" || o == "volume-nocopy" || o == "volume-nocopy=true" || o == "volume-nocopy=1"
	})
}

// prepareVolumes gives container id (its Create under way, its record
// written) the volumes its config names, and an anonymous one at each of
// the image's VOLUME paths the user mounts nothing at (Docker's way; they
// are added to the record's mounts): a missing named volume is made
// (Docker's "created on first use"), an empty source becomes a new
// anonymous volume whose name is written into the record at once (so a
// prune cannot take it), and a volume still empty gets a copy of what the
// image holds at the mount point. It returns the config for the runtime
// spec, with each volume turned into a bind of its data directory, and
// pushes the removal of the volumes it made onto undo.
func (m *Manager) prepareVolumes(ctx context.Context, st *store.Store, id string, cfg lifecycle.Config, imageVolumes []string, rootMounts []mount.Mount, undo *undoStack) (lifecycle.Config, error) {
	for _, p := range imageVolumes {
		p = path.Clean("/" + p)
		if p != "/" && !slices.ContainsFunc(cfg.Mounts, func(mt lifecycle.Mount) bool { return path.Clean(mt.Destination) == p }) {
			cfg.Mounts = append(slices.Clip(cfg.Mounts), lifecycle.Mount{Type: "volume", Destination: p})
		}
	}
	if !slices.ContainsFunc(cfg.Mounts, func(mt lifecycle.Mount) bool { return mt.Type == "volume" }) {
		return cfg, nil
	}
	m.volMu.Lock()
	defer m.volMu.Unlock()
	named := slices.Clone(cfg.Mounts)
	for i, mt := range named {
		if mt.Type != "volume" {
			continue
		}
		anonymous := mt.Source == ""
		if anonymous {
			named[i].Source = randomHex()
		} else if err := checkVolumeName(mt.Source); err != nil {
			return cfg, err
		}
	}
	if _, err := st.Update(id, func(r *store.Record) error { r.Container.Config.Mounts = named; return nil }); err != nil {
		return cfg, err
	}
	built := cfg
	built.Mounts = slices.Clone(named)
	var root string
	var release func() error
	defer func() {
		if release != nil {
			if err := release(); err != nil {
				m.log.Warn("unmount the rootfs used to fill volumes", "container_id", id, "error", err)
			}
		}
	}()
	for i, mt := range named {
		if mt.Type != "volume" {
			continue
		}
		_, created, err := m.ensureVolume(st, mt.Source, nil, cfg.Mounts[i].Source == "")
		if err != nil {
			return cfg, err
		}
		if created {
			name := mt.Source
			undo.push("volume "+name, func(context.Context) error {
				m.volMu.Lock()
				defer m.volMu.Unlock()
				if err := st.DeleteVolume(name, id); err != nil && !errdefs.IsNotFound(err) {
					return err
				}
				return m.removeVolumeData(name)
			})
		}
		data := VolumeData(m.stateDir, mt.Source)
		if !noCopy(mt) && isEmptyDir(data) {
			if root == "" {
				dir, rel, err := rootfs.Mount(rootMounts, m.mntDir(), true)
				if errdefs.IsNotImplemented(err) {
					m.log.Warn("volume not filled from the image: its rootfs cannot be mounted on the host", "container_id", id, "volume", mt.Source, "error", err)
					root = "-"
				} else if err != nil {
					return cfg, fmt.Errorf("fill volume %s from the image: %w", mt.Source, err)
				} else {
					root, release = dir, rel
				}
			}
			if root != "-" {
				if err := copyUp(ctx, root, mt.Destination, data); err != nil {
					return cfg, fmt.Errorf("fill volume %s from the image's %s: %w", mt.Source, mt.Destination, err)
				}
			}
		}
		opts := slices.DeleteFunc(slices.Clone(mt.Options), func(o string) bool { return !slices.Contains(volumeMountOptions, o) })
		built.Mounts[i] = lifecycle.Mount{Type: "bind", Source: data, Destination: mt.Destination, ReadOnly: mt.ReadOnly, Options: opts}
	}
	return built, nil
}

func isEmptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return err == io.EOF
}
