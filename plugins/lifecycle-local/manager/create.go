package manager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/spec"
)

// LabelContainer marks a container's rootfs snapshot with its container ID.
const LabelContainer = "org.berth.container"

// undoTimeout bounds the cleanup of a failed operation; it runs on its
// own context, since the caller's may be what was cancelled.
const undoTimeout = time.Minute

// undoStack collects the inverse of each step taken; run undoes them in
// reverse order and reports what could not be undone.
type undoStack []struct {
	what string
	fn   func(context.Context) error
}

func (u *undoStack) push(what string, fn func(context.Context) error) {
	*u = append(*u, struct {
		what string
		fn   func(context.Context) error
	}{what, fn})
}

func (u undoStack) run() error {
	ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i].fn(ctx); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("undo %s: %w", u[i].what, err))
		}
	}
	return errors.Join(errs...)
}

// Create implements lifecycle.Manager: resolve image → unpack it if the
// snapshotter lacks it → snapshot Prepare → resources CreateGroup →
// isolation Create. The record is written first (marked Creating, so the
// name is taken and a crash is cleaned up at the next start) and
// completed last; any failure undoes every step.
func (m *Manager) Create(ctx context.Context, name string, cfg lifecycle.Config) (lifecycle.Container, error) {
	st, layers, err := m.env()
	if err != nil {
		return lifecycle.Container{}, err
	}
	if cfg.Image == "" {
		return lifecycle.Container{}, errdefs.InvalidArgument("create: no image given")
	}
	id := newID()
	if name == "" {
		name = id[:12]
	} else if err := checkName(name); err != nil {
		return lifecycle.Container{}, err
	}
	mode, err := pickMode(layers.Modes(), cfg.Isolation)
	if err != nil {
		return lifecycle.Container{}, fmt.Errorf("create %s: %w", name, err)
	}
	if mode.Snapshotter == "" {
		return lifecycle.Container{}, errdefs.InvalidArgument("create %s: isolation mode %q has no snapshotter bound in config.hcl", name, mode.Name)
	}

	unlock := m.lock(id)
	defer unlock()
	rec := store.Record{
		Container: lifecycle.Container{
			ID: id, Name: name, Config: cfg, Isolation: mode.Name, SnapshotKey: id,
			State: lifecycle.StateCreated, CreatedAt: time.Now().UTC(),
		},
		Creating:    true,
		Snapshotter: mode.Snapshotter,
		LogPath:     m.logPath(id),
	}
	if err := st.Create(rec); err != nil {
		return lifecycle.Container{}, err
	}
	var undo undoStack
	fail := func(err error) (lifecycle.Container, error) {
		if uerr := undo.run(); uerr != nil {
			// The record stays, marked Creating: reconciliation undoes the
			// rest at the plugin's next start, and the name stays taken
			// until then.
			m.log.Error("create failed and its undo failed too; reconciliation retries at the next start", "container_id", id, "error", err, "undo_error", uerr)
			return lifecycle.Container{}, fmt.Errorf("create %s: %w (and undoing it: %v)", name, err, uerr)
		}
		if derr := st.Delete(id); derr != nil {
			return lifecycle.Container{}, fmt.Errorf("create %s: %w (and removing its record: %v)", name, err, derr)
		}
		return lifecycle.Container{}, fmt.Errorf("create %s: %w", name, err)
	}

	images, err := layers.Images()
	if err != nil {
		return fail(err)
	}
	img, err := images.Resolve(ctx, cfg.Image)
	if err != nil {
		return fail(fmt.Errorf("image %s: %w", cfg.Image, err))
	}
	if err := images.AddLease(ctx, id, img.Digest); err != nil {
		return fail(fmt.Errorf("image %s: hold it for the container: %w", cfg.Image, err))
	}
	undo.push("image lease", func(ctx context.Context) error { return images.DeleteLease(ctx, id) })
	sn, err := layers.Snapshotter(mode.Snapshotter)
	if err != nil {
		return fail(err)
	}
	chain, err := m.unpack(ctx, sn, mode.Snapshotter, images, img)
	if err != nil {
		return fail(fmt.Errorf("image %s: %w", cfg.Image, err))
	}
	rootfs, err := sn.Prepare(ctx, id, chain, snapshot.WithLabels(map[string]string{LabelContainer: id}))
	if err != nil {
		return fail(fmt.Errorf("prepare rootfs snapshot on %s: %w", mode.Snapshotter, err))
	}
	undo.push("rootfs snapshot", func(ctx context.Context) error { return sn.Remove(ctx, id) })

	var placement resources.Placement
	group := ""
	// A VM container's group holds its VM (vmgroup.go): sized once the
	// isolation plugin says how big the VM is.
	inVM := runsInVM(layers, mode.Name)
	groupLimits := cfg.Limits
	if inVM {
		groupLimits = VMHostLimits(cfg.Limits, 0)
	}
	res, err := layers.Resources()
	switch {
	case err == nil:
		placement, err = res.CreateGroup(ctx, id, groupLimits)
		if err != nil {
			return fail(fmt.Errorf("resource group: %w", err))
		}
		group = id
		undo.push("resource group", func(ctx context.Context) error { return res.Delete(ctx, id) })
	case errdefs.IsNotFound(err) && limitsOnlyDevices(cfg.Limits):
		m.log.Debug("no resources plugin configured; the container runs without a resource group", "container_id", id)
	default:
		return fail(fmt.Errorf("resource limits need the resources plugin: %w", err))
	}

	built, err := m.prepareVolumes(ctx, st, id, cfg, img.Volumes, rootfs, &undo)
	if err != nil {
		return fail(err)
	}
	oci, err := spec.Build(img.Config, built, spec.Extra{ContainerID: id})
	if err != nil {
		return fail(errdefs.InvalidArgument("%v", err))
	}
	oci.Linux.CgroupsPath = placement.CgroupPath
	if inVM {
		oci.Linux.Resources = VMGuestResources(oci.Linux.Resources, cfg.Limits)
	}
	if err := os.MkdirAll(filepath.Dir(rec.LogPath), 0o700); err != nil {
		return fail(err)
	}
	netAtt, attached, err := m.attachNetwork(ctx, layers, mode, id, name, cfg)
	if err != nil {
		return fail(fmt.Errorf("network: %w", err))
	}
	if attached {
		undo.push("network endpoint", func(ctx context.Context) error { return detachNetwork(ctx, layers, id) })
	}
	task := isolation.Spec{ID: id, OCI: oci, Rootfs: rootfs, Placement: placement, VM: cfg.VM, LogPath: rec.LogPath, Network: netAtt}
	// A mode that boots a kernel writes its console beside the output log
	// (berth logs --boot); the others ignore the annotation.
	task.Annotations = map[string]string{isolation.AnnotationBootLog: m.bootLogPath(id)}
	if cfg.OpenStdin {
		task.Annotations[isolation.AnnotationOpenStdin] = "open"
	}
	iso, err := layers.Isolation(mode.Name)
	if err != nil {
		return fail(err)
	}
	info, err := iso.Create(ctx, task)
	if err != nil {
		return fail(fmt.Errorf("isolation %s: %w", mode.Name, err))
	}
	undo.push("isolation task", func(ctx context.Context) error { _, err := iso.Delete(ctx, id); return err })
	if inVM {
		// The recorded sizing makes restarts and restores boot the same VM.
		if task.VM, err = vmSizeOf(mode.Name, info); err != nil {
			return fail(err)
		}
		if group != "" {
			if err := res.Update(ctx, id, VMHostLimits(cfg.Limits, task.VM.MemoryBytes)); err != nil {
				return fail(fmt.Errorf("size the VM's host resource group: %w", err))
			}
		}
	}
	undo.push("log file", func(context.Context) error {
		return errors.Join(removeIfExists(rec.LogPath), removeIfExists(m.bootLogPath(id)))
	})

	rec, err = st.Update(id, func(r *store.Record) error {
		r.Creating = false
		r.Container.ImageDigest = img.Digest
		r.ImageChainID = chain
		r.Group = group
		r.Task = &task
		return nil
	})
	if err != nil {
		return fail(err)
	}
	m.log.Info("container created", "container_id", id, "name", name, "image", cfg.Image, "isolation", mode.Name)
	m.emit(lifecycle.EventCreate, rec, map[string]string{"image": cfg.Image})
	return rec.Container, nil
}

// limitsOnlyDevices reports whether limits set nothing but device rules,
// which the OCI spec carries to the isolation plugin anyway.
func limitsOnlyDevices(l resources.Limits) bool {
	l.Devices = nil
	return reflect.ValueOf(l).IsZero()
}

// unpack makes sure snapshotter sn holds every layer of img as a committed
// snapshot named by its chain ID, unpacking what is missing, and returns
// the top chain ID ("" for an image without layers). Unpacking is what the
// image service does on pull; doing it here too means a container can be
// created from an image pulled before this snapshotter was configured.
func (m *Manager) unpack(ctx context.Context, sn snapshot.Snapshotter, snName string, images ImageSource, img Image) (string, error) {
	chains := ChainIDs(img.Layers)
	if len(chains) == 0 {
		return "", nil
	}
	// Find the highest layer already there.
	start := len(chains)
	for start > 0 {
		if _, err := sn.Stat(ctx, chains[start-1]); err == nil {
			break
		} else if !errdefs.IsNotFound(err) {
			return "", fmt.Errorf("stat snapshot %s on %s: %w", chains[start-1], snName, err)
		}
		start--
	}
	for i := start; i < len(chains); i++ {
		parent := ""
		if i > 0 {
			parent = chains[i-1]
		}
		if err := m.applyLayer(ctx, sn, images, img.Layers[i], chains[i], parent); err != nil {
			return "", fmt.Errorf("unpack layer %d (%s) into %s: %w", i+1, img.Layers[i].Digest, snName, err)
		}
	}
	return chains[len(chains)-1], nil
}

func (m *Manager) applyLayer(ctx context.Context, sn snapshot.Snapshotter, images ImageSource, layer snapshot.Layer, chain, parent string) error {
	key := "extract-" + newID()[:16] + "-" + chain
	if _, err := sn.Prepare(ctx, key, parent); err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			cctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
			defer cancel()
			if err := sn.Remove(cctx, key); err != nil && !errdefs.IsNotFound(err) {
				m.log.Warn("remove extraction snapshot", "key", key, "error", err)
			}
		}
	}()
	blob, err := images.OpenBlob(ctx, layer.Digest)
	if err != nil {
		return err
	}
	defer blob.Close()
	if _, err := sn.Apply(ctx, key, layer, blob); err != nil {
		return err
	}
	err = sn.Commit(ctx, chain, key)
	if errdefs.IsAlreadyExists(err) {
		return nil // unpacked concurrently by someone else; ours is removed
	}
	if err != nil {
		return err
	}
	committed = true
	return nil
}

// ChainIDs returns the OCI chain IDs of layers: the first layer's diff ID,
// then sha256(parent chain ID + " " + diff ID) for each next layer.
func ChainIDs(layers []snapshot.Layer) []string {
	out := make([]string, len(layers))
	for i, l := range layers {
		if i == 0 {
			out[i] = l.DiffID
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + l.DiffID))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// teardown removes what a container holds in the layers, in the reverse
// order of Create: task, group, rootfs snapshot, then its files. Each step
// tolerates what is already gone, so teardown can be retried.
func (m *Manager) teardown(ctx context.Context, layers Layers, rec store.Record) error {
	id := rec.Container.ID
	if iso, err := layers.Isolation(rec.Container.Isolation); err == nil {
		if _, err := iso.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete isolation task: %w", err)
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	if err := detachNetwork(ctx, layers, id); err != nil {
		return fmt.Errorf("release the network endpoint: %w", err)
	}
	if rec.Group != "" {
		res, err := layers.Resources()
		if err != nil {
			return fmt.Errorf("delete resource group: %w", err)
		}
		if err := res.Delete(ctx, rec.Group); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete resource group: %w", err)
		}
	}
	if rec.Snapshotter != "" {
		sn, err := layers.Snapshotter(rec.Snapshotter)
		if err != nil {
			return fmt.Errorf("remove rootfs snapshot: %w", err)
		}
		if err := sn.Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove rootfs snapshot on %s: %w", rec.Snapshotter, err)
		}
	}
	if imgs, err := layers.Images(); err == nil {
		if err := imgs.DeleteLease(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("release the image lease: %w", err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("release the image lease: %w", err)
	}
	if rec.LogPath != "" {
		if err := removeIfExists(rec.LogPath); err != nil {
			return err
		}
	}
	if err := removeIfExists(m.bootLogPath(id)); err != nil {
		return err
	}
	return os.RemoveAll(m.checkpointDir(id))
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
