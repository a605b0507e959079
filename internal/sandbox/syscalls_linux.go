package sandbox

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Syscalls is every system call the init side makes, so the order of setup
// is tested without root against a recording fake. The real implementation
// is internal/sandbox/hostsys. Paths are absolute in the init's current
// mount namespace and root.
type Syscalls interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	PivotRoot(newroot, putold string) error
	Chdir(dir string) error
	MkdirAll(path string, perm os.FileMode) error
	// CreateFile creates an empty file (a bind-mount target) if missing.
	CreateFile(path string) error
	Mknod(path string, mode uint32, dev int) error
	Symlink(oldname, newname string) error
	// Stat reports whether path exists and is a directory.
	Stat(path string) (exists, dir bool, err error)
	// SecureJoin resolves unsafe inside root, following symlinks as if root
	// were "/" (so a rootfs symlink cannot point a mount outside it).
	SecureJoin(root, unsafe string) (string, error)
	Sethostname(name string) error
	// LoopbackUp brings lo up in the current network namespace.
	LoopbackUp() error
	Unshare(flags int) error
	SetNoNewPrivs() error
	Setrlimit(resource int, lim *unix.Rlimit) error
	// SetOOMScoreAdj writes the calling process's /proc/self/oom_score_adj
	// (-1000 never chosen by the OOM killer … 1000 chosen first).
	SetOOMScoreAdj(adj int) error
	// LoadSeccomp installs the filter for this thread and its descendants.
	LoadSeccomp(filter *specs.LinuxSeccomp) error
	// LoadSeccompBPF installs a compiled filter (see LoadBPF).
	LoadSeccompBPF(prog []byte) error
	// DropBoundingSet keeps only the named capabilities in the bounding set.
	DropBoundingSet(keep []string) error
	SetKeepCaps(keep bool) error
	Setgroups(gids []int) error
	Setresgid(gid int) error
	Setresuid(uid int) error
	// SetCapabilities sets the effective, permitted, inheritable and ambient
	// sets of the calling thread.
	SetCapabilities(c *specs.LinuxCapabilities) error
	// OpenConsole opens a new terminal from /dev/ptmx of the current root
	// (the container's own devpts instance), sizes it to size when
	// non-nil, and makes its replica fds 0, 1 and 2. It returns the master
	// and the replica's path in the current root (e.g. /dev/pts/0).
	OpenConsole(size *specs.Box) (master *os.File, replica string, err error)
	// SetCtty makes fd 0 (a terminal) the controlling terminal in a new
	// session.
	SetCtty() error
	// LookPath finds file in the PATH of env (inside the container root).
	LookPath(file string, env []string) (string, error)
	// CloseExecFrom marks every fd >= minFd close-on-exec.
	CloseExecFrom(minFd int) error
	Exec(path string, args, env []string) error
}
