// Package hostsys is the real sandbox.Syscalls: the system calls the
// container init makes, on the calling thread, which the init keeps locked
// until exec (capabilities, no_new_privs and seccomp are per thread).
package hostsys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/seccomp"
)

// Sys implements sandbox.Syscalls with the kernel.
type Sys struct{}

var _ sandbox.Syscalls = Sys{}

func (Sys) Mount(source, target, fstype string, flags uintptr, data string) error {
	return os.NewSyscallError("mount", unix.Mount(source, target, fstype, flags, data))
}
func (Sys) Unmount(target string, flags int) error {
	return os.NewSyscallError("umount2", unix.Unmount(target, flags))
}
func (Sys) PivotRoot(newroot, putold string) error {
	return os.NewSyscallError("pivot_root", unix.PivotRoot(newroot, putold))
}
func (Sys) Chdir(dir string) error                       { return os.Chdir(dir) }
func (Sys) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (Sys) CreateFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
func (Sys) Mknod(path string, mode uint32, dev int) error {
	err := unix.Mknod(path, mode, dev)
	if errors.Is(err, unix.EEXIST) {
		return os.ErrExist
	}
	return os.NewSyscallError("mknod", err)
}
func (Sys) Symlink(oldname, newname string) error { return os.Symlink(oldname, newname) }
func (Sys) Stat(path string) (bool, bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return true, fi.IsDir(), nil
}
func (Sys) SecureJoin(root, unsafe string) (string, error) {
	return securejoin.SecureJoin(root, unsafe)
}
func (Sys) Sethostname(name string) error {
	return os.NewSyscallError("sethostname", unix.Sethostname([]byte(name)))
}
func (Sys) Unshare(flags int) error { return os.NewSyscallError("unshare", unix.Unshare(flags)) }
func (Sys) SetNoNewPrivs() error {
	return os.NewSyscallError("prctl", unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
}
func (Sys) Setrlimit(resource int, lim *unix.Rlimit) error {
	return os.NewSyscallError("prlimit", unix.Prlimit(0, resource, lim, nil))
}
func (Sys) SetOOMScoreAdj(adj int) error {
	return os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(adj)), 0)
}
func (Sys) LoadSeccomp(filter *specs.LinuxSeccomp) error { return seccomp.Load(filter) }
func (Sys) LoadSeccompBPF(prog []byte) error             { return sandbox.LoadBPF(prog) }

// LoopbackUp brings lo up in the init's network namespace.
func (Sys) LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return os.NewSyscallError("SIOCSIFFLAGS", unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr))
}

func capList(names []string) ([]capability.Cap, error) {
	last, err := capability.LastCap()
	if err != nil {
		return nil, err
	}
	var out []capability.Cap
	byName := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		byName["CAP_"+strings.ToUpper(c.String())] = c
	}
	for _, n := range names {
		c, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("unknown capability %q", n)
		}
		if c > last {
			continue // newer than this kernel
		}
		out = append(out, c)
	}
	return out, nil
}

func (Sys) DropBoundingSet(keep []string) error {
	caps, err := capList(keep)
	if err != nil {
		return err
	}
	c, err := capability.NewPid2(0)
	if err != nil {
		return err
	}
	if err := c.Load(); err != nil {
		return err
	}
	c.Clear(capability.BOUNDING)
	c.Set(capability.BOUNDING, caps...)
	return c.Apply(capability.BOUNDING)
}

func (Sys) SetKeepCaps(keep bool) error {
	v := 0
	if keep {
		v = 1
	}
	return os.NewSyscallError("prctl", unix.Prctl(unix.PR_SET_KEEPCAPS, uintptr(v), 0, 0, 0))
}

func (Sys) Setgroups(gids []int) error {
	return os.NewSyscallError("setgroups", syscall.Setgroups(gids))
}
func (Sys) Setresgid(gid int) error {
	return os.NewSyscallError("setresgid", syscall.Setresgid(gid, gid, gid))
}
func (Sys) Setresuid(uid int) error {
	return os.NewSyscallError("setresuid", syscall.Setresuid(uid, uid, uid))
}

func (Sys) SetCapabilities(cs *specs.LinuxCapabilities) error {
	c, err := capability.NewPid2(0)
	if err != nil {
		return err
	}
	if err := c.Load(); err != nil {
		return err
	}
	c.Clear(capability.CAPS | capability.AMBS)
	for which, names := range map[capability.CapType][]string{
		capability.EFFECTIVE: cs.Effective, capability.PERMITTED: cs.Permitted,
		capability.INHERITABLE: cs.Inheritable, capability.AMBIENT: cs.Ambient,
	} {
		caps, err := capList(names)
		if err != nil {
			return err
		}
		c.Set(which, caps...)
	}
	return c.Apply(capability.CAPS | capability.AMBS)
}

// OpenConsole implements sandbox.Syscalls: the replica is opened from the
// master itself (TIOCGPTPEER), so no path lookup can be raced.
func (Sys) OpenConsole(size *specs.Box) (*os.File, string, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", os.NewSyscallError("open /dev/ptmx", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	fail := func(what string, err error) (*os.File, string, error) {
		master.Close()
		return nil, "", os.NewSyscallError(what, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlockpt", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		return fail("ptsname", err)
	}
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws); err != nil {
			return fail("TIOCSWINSZ", err)
		}
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY))
	if errno != 0 {
		return fail("TIOCGPTPEER", errno)
	}
	replica := int(r)
	for i := 0; i <= 2; i++ {
		if err := unix.Dup3(replica, i, 0); err != nil {
			unix.Close(replica)
			return fail("dup3", err)
		}
	}
	if replica > 2 {
		unix.Close(replica)
	}
	return master, fmt.Sprintf("/dev/pts/%d", n), nil
}

func (Sys) SetCtty() error {
	if _, err := unix.Setsid(); err != nil && !errors.Is(err, unix.EPERM) {
		return os.NewSyscallError("setsid", err)
	}
	return os.NewSyscallError("TIOCSCTTY", unix.IoctlSetInt(0, unix.TIOCSCTTY, 0))
}

// LookPath searches PATH from env (not the init's own environment).
func (Sys) LookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, executable(file)
	}
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable file not found in $PATH (%s)", path)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

func (Sys) CloseExecFrom(minFd int) error {
	return os.NewSyscallError("close_range", unix.CloseRange(uint(minFd), ^uint(0), unix.CLOSE_RANGE_CLOEXEC))
}

func (Sys) Exec(path string, args, env []string) error {
	return os.NewSyscallError("execve", unix.Exec(path, args, env))
}
