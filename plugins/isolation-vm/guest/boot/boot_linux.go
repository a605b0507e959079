//go:build linux

// Package boot holds what the guest agent does as PID 1 of a VM before it
// serves the host: the pseudo filesystems (DEVTMPFS_MOUNT is off in
// Debian's kernel), the console, the kernel modules of the initramfs, the
// move from the initramfs onto a tmpfs root (pivot_root cannot leave an
// initramfs, and containers pivot_root later), cgroup v2, and the channel
// to the host (virtio-serial port or vsock). System is the guest-wide part
// of the agent's API (clock, entropy, hostname, power off).
//
// Initramfs layout it expects (cpio newc, 0:0): /init (the agent),
// /sbin/berth-sandbox-init, /modules/NN-name.ko (loaded in lexical order),
// /dev/console (char 5:1).
package boot

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Paths of the initramfs contract.
const (
	ModulesDir  = "/modules"
	SandboxInit = "/sbin/berth-sandbox-init"
	Init        = "/init"
	RunDir      = "/run/berth"
)

// Setup prepares the guest as PID 1: console, pseudo filesystems,
// modules, tmpfs root, cgroup v2. It returns the modules it loaded. Every
// step that fails is logged and, where the agent can go on without it,
// skipped; an error means the agent cannot serve containers.
func Setup(log hclog.Logger) ([]string, error) {
	if err := mountDev(); err != nil {
		return nil, err
	}
	openConsole(log)
	for _, m := range []struct{ src, dir, typ, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
	} {
		if err := mountAt(m.src, m.dir, m.typ, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, m.data); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	mods := LoadModules(log, ModulesDir)
	t1 := time.Now()
	if err := SwitchRoot(log); err != nil {
		return mods, fmt.Errorf("move onto a tmpfs root: %w", err)
	}
	log.Info("boot steps", "modules", len(mods), "modules_took", t1.Sub(t0).Round(time.Millisecond),
		"switch_root_took", time.Since(t1).Round(time.Millisecond))
	for _, m := range []struct {
		src, dir, typ string
		flags         uintptr
		data          string
	}{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		// favordynmods (Linux 6.1+): moving a process between cgroups
		// (every exec into a container joins its cgroup) skips an RCU
		// grace period, at a slightly dearer fork/exit; an older kernel
		// refuses it and gets the plain mount.
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate,favordynmods"},
	} {
		err := mountAt(m.src, m.dir, m.typ, m.flags, m.data)
		if err != nil && m.typ == "cgroup2" && errors.Is(err, unix.EINVAL) {
			log.Info("cgroup2 without favordynmods", "error", err)
			err = mountAt(m.src, m.dir, m.typ, m.flags, "nsdelegate")
		}
		if err != nil {
			return mods, err
		}
	}
	if _, err := os.Lstat("/dev/ptmx"); err == nil {
		_ = os.Remove("/dev/ptmx")
	}
	if err := os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
		log.Warn("link /dev/ptmx", "error", err)
	}
	for _, l := range [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}} {
		_ = os.Symlink(l[0], l[1])
	}
	if err := os.MkdirAll("/tmp", 0o1777); err == nil {
		_ = os.Chmod("/tmp", 0o1777)
	}
	if err := enableControllers(); err != nil {
		log.Warn("enable cgroup controllers", "error", err)
	}
	if err := os.MkdirAll(RunDir, 0o700); err != nil {
		return mods, err
	}
	if err := unix.Sethostname([]byte("berth")); err != nil {
		log.Warn("set hostname", "error", err)
	}
	return mods, nil
}

func mountDev() error {
	if err := mountAt("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"); err != nil && !errors.Is(err, unix.EBUSY) {
		return err
	}
	return nil
}

func mountAt(src, dir, typ string, flags uintptr, data string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, dir, typ, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s): %w", typ, dir, data, err)
	}
	return nil
}

// openConsole makes /dev/console the agent's stdin, stdout and stderr.
func openConsole(log hclog.Logger) {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		log.Warn("open /dev/console", "error", err)
		return
	}
	for i := 0; i < 3; i++ {
		_ = unix.Dup3(fd, i, 0)
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

// enableControllers turns on every controller of the root cgroup for its
// children, so container groups can be limited.
func enableControllers() error {
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return err
	}
	ctls := strings.Fields(string(b))
	if len(ctls) == 0 {
		return nil
	}
	return os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+"+strings.Join(ctls, " +")), 0)
}

// Cmdline returns the kernel command line's key=value parameters.
func Cmdline() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	out := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}
