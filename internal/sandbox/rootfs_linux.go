package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/mount"
)

// prepareRootfs builds the container's root at cfg.RootDir in the init's
// own mount namespace and pivots into it (runc's prepareRootfs and
// pivotRoot). Nothing here is visible to the host: / is made a slave first,
// so no mount propagates out, and every mount dies with the namespace.
func prepareRootfs(sys Syscalls, cfg *InitConfig) error {
	root := cfg.RootDir
	if err := sys.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	for i, m := range cfg.Rootfs {
		if err := mountRootfs(sys, root, m); err != nil {
			return fmt.Errorf("rootfs mount %d (%s %s): %w", i+1, m.Type, m.Source, err)
		}
	}
	// pivot_root needs the new root to be a mount point.
	if err := sys.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind the rootfs %s onto itself: %w", root, err)
	}
	s := cfg.Spec
	for _, m := range s.Mounts {
		if err := mountInto(sys, root, m, cfg.CgroupV1); err != nil {
			return fmt.Errorf("mount %s (%s): %w", m.Destination, m.Type, err)
		}
	}
	if err := createDevices(sys, root, s); err != nil {
		return err
	}
	if err := pivotRoot(sys, root); err != nil {
		return err
	}
	if s.Root != nil && s.Root.Readonly {
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		if err := sys.Mount("", "/", "", flags, ""); err != nil {
			return fmt.Errorf("make the rootfs read-only: %w", err)
		}
	}
	return nil
}

// mountRootfs performs one snapshot mount descriptor onto root (or a
// directory under it).
func mountRootfs(sys Syscalls, root string, m mount.Mount) error {
	target := root
	if m.Target != "" && m.Target != "/" {
		t, err := sys.SecureJoin(root, m.Target)
		if err != nil {
			return err
		}
		target = t
	}
	flags, data := parseOptions(m.Options)
	switch m.Type {
	case "bind", "rbind":
		if err := sys.Mount(m.Source, target, "", flags|unix.MS_BIND, ""); err != nil {
			return err
		}
		if flags&^(unix.MS_BIND|unix.MS_REC) != 0 {
			return sys.Mount("", target, "", flags|unix.MS_BIND|unix.MS_REMOUNT, "")
		}
		return nil
	case "overlay":
		return sys.Mount("overlay", target, "overlay", flags, data)
	default:
		return sys.Mount(m.Source, target, m.Type, flags, data)
	}
}

// mountInto mounts one runtime spec mount under root.
func mountInto(sys Syscalls, root string, m specs.Mount, cgroupV1 map[string]string) error {
	if !strings.HasPrefix(m.Destination, "/") {
		return fmt.Errorf("destination %q is not absolute", m.Destination)
	}
	dest, err := sys.SecureJoin(root, m.Destination)
	if err != nil {
		return err
	}
	flags, data := parseOptions(m.Options)
	switch m.Type {
	case "bind":
		exists, dir, err := sys.Stat(m.Source)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("bind source %s does not exist", m.Source)
		}
		if dir {
			err = sys.MkdirAll(dest, 0o755)
		} else {
			if err = sys.MkdirAll(filepath.Dir(dest), 0o755); err == nil {
				err = sys.CreateFile(dest)
			}
		}
		if err != nil {
			return err
		}
		if err := sys.Mount(m.Source, dest, "", flags|unix.MS_BIND, ""); err != nil {
			return err
		}
		if flags&unix.MS_RDONLY != 0 || flags&(unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC) != 0 {
			return sys.Mount("", dest, "", flags|unix.MS_BIND|unix.MS_REMOUNT, "")
		}
		return nil
	case "cgroup":
		return mountCgroup(sys, dest, flags, cgroupV1)
	default:
		if err := sys.MkdirAll(dest, 0o755); err != nil {
			return err
		}
		return sys.Mount(m.Source, dest, m.Type, flags, data)
	}
}

// mountCgroup gives the container its own cgroups read-only under dest: on
// cgroup v1 a tmpfs with one bind per hierarchy of the container's cgroup,
// on a pure v2 host a cgroup2 mount (rooted by the cgroup namespace).
func mountCgroup(sys Syscalls, dest string, flags uintptr, v1 map[string]string) error {
	if err := sys.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	if len(v1) == 0 {
		return sys.Mount("cgroup2", dest, "cgroup2", flags, "")
	}
	if err := sys.Mount("tmpfs", dest, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return err
	}
	for _, name := range sortedKeys(v1) {
		sub := filepath.Join(dest, name)
		if err := sys.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		if err := sys.Mount(v1[name], sub, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := sys.Mount("", sub, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return err
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		return sys.Mount("", dest, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755")
	}
	return nil
}

// standardDevices are the nodes every container gets (runc's
// AllowedDevices that are created).
var standardDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// createDevices makes the standard nodes and the spec's devices in the
// container's /dev, and its symlinks. In a user namespace mknod is not
// allowed, so the host's nodes are bind-mounted instead.
func createDevices(sys Syscalls, root string, s *specs.Spec) error {
	devs := standardDevices
	if s.Linux != nil {
		devs = append(devs[:len(devs):len(devs)], s.Linux.Devices...)
	}
	userns := hasNamespace(s, specs.UserNamespace)
	for _, d := range devs {
		dest, err := sys.SecureJoin(root, d.Path)
		if err != nil {
			return err
		}
		if err := sys.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
		if userns {
			if err := sys.CreateFile(dest); err != nil {
				return fmt.Errorf("device %s: %w", d.Path, err)
			}
			if err := sys.Mount(d.Path, dest, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("device %s: bind the host's node: %w", d.Path, err)
			}
			continue
		}
		mode := uint32(0o666)
		if d.FileMode != nil {
			mode = uint32(*d.FileMode)
		}
		switch d.Type {
		case "c", "u":
			mode |= unix.S_IFCHR
		case "b":
			mode |= unix.S_IFBLK
		case "p":
			mode |= unix.S_IFIFO
		default:
			return fmt.Errorf("device %s: type %q is not c, u, b or p", d.Path, d.Type)
		}
		if err := sys.Mknod(dest, mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil && !os.IsExist(err) {
			return fmt.Errorf("device %s: mknod: %w", d.Path, err)
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"},
	}
	if exists, _, _ := sys.Stat("/proc/kcore"); exists {
		links = append(links, [2]string{"/proc/kcore", "/dev/core"})
	}
	for _, l := range links {
		dest, err := sys.SecureJoin(root, l[1])
		if err != nil {
			return err
		}
		if err := sys.Symlink(l[0], dest); err != nil && !os.IsExist(err) {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	return nil
}

// pivotRoot makes root the root and detaches the old one (runc's pivotRoot:
// pivot_root(".", ".") stacks the old root under the new one, which is then
// made a slave and lazily unmounted, so no host mount stays reachable).
func pivotRoot(sys Syscalls, root string) error {
	if err := sys.Chdir(root); err != nil {
		return fmt.Errorf("chdir to the rootfs: %w", err)
	}
	if err := sys.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	if err := sys.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the old root a slave: %w", err)
	}
	if err := sys.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return sys.Chdir("/")
}

// mountFlags are mount(8) options that are flags; the rest is data.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"noatime": {false, unix.MS_NOATIME}, "atime": {true, unix.MS_NOATIME},
	"nodiratime": {false, unix.MS_NODIRATIME}, "relatime": {false, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"bind":        {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"private": {false, unix.MS_PRIVATE}, "rprivate": {false, unix.MS_PRIVATE | unix.MS_REC},
	"slave": {false, unix.MS_SLAVE}, "rslave": {false, unix.MS_SLAVE | unix.MS_REC},
	"defaults": {false, 0},
}

// parseOptions splits mount(8) options into flags and data.
func parseOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		data = append(data, o)
	}
	// Propagation flags cannot be combined with a mount; they are not used
	// by the descriptors Berth produces.
	flags &^= unix.MS_PRIVATE | unix.MS_SLAVE
	return flags, strings.Join(data, ",")
}
