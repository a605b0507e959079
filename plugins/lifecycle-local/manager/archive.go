package manager

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/plugins/lifecycle-local/rootfs"
	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// cp and export reach a container's files from the host:
//   - a container whose init process exists (running, paused, or created:
//     a sandbox's init has pivoted into the rootfs before Start) through
//     /proc/<pid>/root, which is the container's own view, volumes and
//     binds included;
//   - any other (stopped, never set up) through its rootfs snapshot,
//     mounted in a private directory below <state_dir>/mnt for the
//     duration of the call, with the container's lock held so it cannot
//     start meanwhile.
// VM containers are refused: their processes and filesystems are inside
// the guest.

// containerRoot is a container's "/" as a host path.
type containerRoot struct {
	path string
	// pid is the init process whose root path is, 0 for a mounted
	// snapshot.
	pid     int
	release func() error
}

// withRoot runs fn with the root of container ref; write mounts a
// snapshot read-write, and withBinds mounts the container's volumes and
// binds into it too (cp sees them, export does not).
func (m *Manager) withRoot(ctx context.Context, ref, what string, write, withBinds bool, fn func(rec store.Record, root containerRoot) error) error {
	rec, unlock, err := m.acquire(ref)
	if err != nil {
		return err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	_, layers, err := m.env()
	if err != nil {
		return err
	}
	name := rec.Container.Name
	if runsInVM(layers, rec.Container.Isolation) {
		return errdefs.NotImplemented("%s %s: the container runs in a VM (isolation %s); its files are inside the guest, which %s cannot reach yet", what, name, rec.Container.Isolation, what)
	}
	if rec.Container.State == lifecycle.StateCheckpointed {
		return errdefs.InvalidState("%s %s: the container is checkpointed; restore it first", what, name)
	}
	if pid := m.initPid(ctx, layers, rec); pid > 0 {
		p := "/proc/" + strconv.Itoa(pid) + "/root"
		if _, err := os.Stat(p + "/"); err == nil {
			// A live container needs no lock: its files are there while
			// its init lives.
			unlock()
			locked = false
			return fn(rec, containerRoot{path: p, pid: pid})
		}
	}
	if rec.Snapshotter == "" {
		return errdefs.InvalidState("%s %s: the container has no rootfs snapshot", what, name)
	}
	sn, err := layers.Snapshotter(rec.Snapshotter)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, name, err)
	}
	mounts, err := sn.Mounts(ctx, rec.Container.SnapshotKey)
	if err != nil {
		return fmt.Errorf("%s %s: rootfs snapshot: %w", what, name, err)
	}
	dir, release, err := rootfs.Mount(mounts, m.mntDir(), !write)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, name, err)
	}
	if withBinds {
		unbind, err := rootfs.MountBinds(dir, m.userBinds(rec, write))
		if err != nil {
			_ = release()
			return fmt.Errorf("%s %s: %w", what, name, err)
		}
		rootRelease := release
		release = func() error { return errors.Join(unbind(), rootRelease()) }
	}
	ferr := fn(rec, containerRoot{path: dir})
	if rerr := release(); rerr != nil {
		m.log.Error("unmount a container's rootfs", "container_id", rec.Container.ID, "dir", dir, "error", rerr)
		if ferr == nil {
			ferr = rerr
		}
	}
	return ferr
}

// userBinds are the container's volumes and bind mounts as host paths,
// read-only unless write and the user mounted them read-write.
func (m *Manager) userBinds(rec store.Record, write bool) []rootfs.Bind {
	var out []rootfs.Bind
	for _, mt := range rec.Container.Config.Mounts {
		src := mt.Source
		switch mt.Type {
		case "bind":
		case "volume":
			if src == "" {
				continue
			}
			src = VolumeData(m.stateDir, src)
		default:
			continue
		}
		out = append(out, rootfs.Bind{Source: src, Destination: mt.Destination, ReadOnly: mt.ReadOnly || !write})
	}
	return out
}

// initPid returns the pid of the container's init process when it has
// one: running and paused containers record it; a created one asks
// isolation. 0 otherwise.
func (m *Manager) initPid(ctx context.Context, layers Layers, rec store.Record) int {
	switch rec.Container.State {
	case lifecycle.StateRunning, lifecycle.StatePaused:
		return rec.Container.Pid
	case lifecycle.StateCreated:
		iso, err := layers.Isolation(rec.Container.Isolation)
		if err != nil {
			return 0
		}
		tasks, err := iso.List(ctx)
		if err != nil {
			return 0
		}
		for _, t := range tasks {
			if t.ID == rec.Container.ID && t.Status == isolation.StatusCreated {
				return t.Pid
			}
		}
	}
	return 0
}

// runsInVM reports whether isolation mode runs its containers in a VM.
func runsInVM(layers Layers, mode string) bool {
	for _, md := range layers.Modes() {
		if md.Name == mode {
			return slices.Contains(md.Capabilities, isolation.CapVM)
		}
	}
	return false
}

// CopyFrom implements lifecycle.Manager.
func (m *Manager) CopyFrom(ctx context.Context, ref, p string, w io.Writer) error {
	if p == "" {
		return errdefs.InvalidArgument("copy from %s: no path given", ref)
	}
	return m.withRoot(ctx, ref, "copy from", false, true, func(rec store.Record, root containerRoot) error {
		name := path.Base(path.Clean("/" + p))
		if name == "/" {
			name = "."
		}
		if err := rootfs.WriteTar(w, root.path, p, rootfs.TarOptions{Name: name}); err != nil {
			return fmt.Errorf("copy %s:%s: %w", rec.Container.Name, p, err)
		}
		return nil
	})
}

// CopyTo implements lifecycle.Manager.
func (m *Manager) CopyTo(ctx context.Context, ref, dir string, r io.Reader) error {
	if dir == "" {
		return errdefs.InvalidArgument("copy to %s: no directory given", ref)
	}
	return m.withRoot(ctx, ref, "copy to", true, true, func(rec store.Record, root containerRoot) error {
		if err := rootfs.Extract(ctx, root.path, dir, r, m.log); err != nil {
			return fmt.Errorf("copy to %s:%s: %w", rec.Container.Name, dir, err)
		}
		m.log.Info("copied into container", "container_id", rec.Container.ID, "dir", dir)
		return nil
	})
}

// Export implements lifecycle.Manager. A live container's mounts other
// than its root (volumes, binds, /proc, /dev…) are left out, as docker
// export does: only their mount point directories are written.
func (m *Manager) Export(ctx context.Context, ref string, w io.Writer) error {
	return m.withRoot(ctx, ref, "export", false, false, func(rec store.Record, root containerRoot) error {
		opts := rootfs.TarOptions{}
		if root.pid > 0 {
			points, err := mountPoints(root.pid)
			if err != nil {
				return fmt.Errorf("export %s: %w", rec.Container.Name, err)
			}
			opts.Skip = func(p string) bool { return points[p] }
		}
		if err := rootfs.WriteTar(w, root.path, "/", opts); err != nil {
			return fmt.Errorf("export %s: %w", rec.Container.Name, err)
		}
		return nil
	})
}

// mountPoints returns the mount points of process pid's mount namespace
// other than its root, as paths inside it.
func mountPoints(pid int) (map[string]bool, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.InvalidState("the container's process %d is gone", pid)
		}
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options …
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if p := unescapeMountinfo(fields[4]); p != "/" {
			out[p] = true
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
