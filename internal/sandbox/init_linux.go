package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Channel is the init side of the init socket.
type Channel interface {
	// Wait blocks until the parent sends kind (or fails).
	Wait(kind string) error
	// Send tells the parent kind.
	Send(kind string) error
	// SendConsole hands the parent the master of the process's terminal
	// (SCM_RIGHTS; runc's console socket) and closes it.
	SendConsole(master *os.File) error
}

// RunInit performs the container setup in runc's standard_init order and
// execs the workload; it returns only on failure. cfg.Mode selects a full
// container init (ModeCreate) or a process joining a running container
// (ModeExec, whose namespaces the nsenter constructor already entered).
// users resolves the user against the container's /etc/passwd and
// /etc/group once the root is in place.
func RunInit(sys Syscalls, ch Channel, cfg *InitConfig, users UserResolver) error {
	if cfg.Spec == nil || cfg.Process == nil {
		return errors.New("init config has no spec or no process")
	}
	// The parent joins our cgroup, then lets us go: nothing below runs
	// outside it.
	if err := ch.Wait(msgGo); err != nil {
		return err
	}
	markPhase("go")
	s, p := cfg.Spec, cfg.Process
	// process.oomScoreAdj first, as runc does from its parent: the setup
	// below already counts as the workload for the OOM killer, and lowering
	// the score needs CAP_SYS_RESOURCE, which the workload may not keep.
	if p.OOMScoreAdj != nil {
		if err := sys.SetOOMScoreAdj(*p.OOMScoreAdj); err != nil {
			return fmt.Errorf("set oom_score_adj to %d: %w", *p.OOMScoreAdj, err)
		}
	}
	if cfg.Mode == ModeCreate {
		if cfg.CgroupNS {
			if err := sys.Unshare(unix.CLONE_NEWCGROUP); err != nil {
				return fmt.Errorf("unshare cgroup namespace: %w", err)
			}
		}
		if hasNamespace(s, specs.NetworkNamespace) {
			if err := sys.LoopbackUp(); err != nil {
				return fmt.Errorf("bring up lo in the container's network namespace: %w", err)
			}
		}
		if err := prepareRootfs(sys, cfg); err != nil {
			return err
		}
		markPhase("rootfs")
		// The terminal comes from the container's own devpts, after its
		// mounts are in place and before the paths are masked (runc's
		// setupConsole), and is its /dev/console too.
		if p.Terminal {
			if err := setupConsole(sys, ch, p, true); err != nil {
				return err
			}
		}
		if s.Hostname != "" && hasNamespace(s, specs.UTSNamespace) {
			if err := sys.Sethostname(s.Hostname); err != nil {
				return fmt.Errorf("set hostname %q: %w", s.Hostname, err)
			}
		}
		if s.Linux != nil {
			for _, path := range s.Linux.ReadonlyPaths {
				if err := readonlyPath(sys, path); err != nil {
					return err
				}
			}
			for _, path := range s.Linux.MaskedPaths {
				if err := maskPath(sys, path, s.Linux.MountLabel); err != nil {
					return err
				}
			}
		}
		markPhase("paths")
	}
	if p.Terminal && cfg.Mode != ModeCreate {
		// An exec has entered the container's mount namespace: its ptmx
		// is the container's.
		if err := setupConsole(sys, ch, p, false); err != nil {
			return err
		}
	}
	if p.NoNewPrivileges {
		if err := sys.SetNoNewPrivs(); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	for _, r := range p.Rlimits {
		res, ok := rlimitResources[r.Type]
		if !ok {
			return fmt.Errorf("rlimit %q is not a Linux resource limit", r.Type)
		}
		if err := sys.Setrlimit(res, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return fmt.Errorf("set %s to %d:%d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	var filter *specs.LinuxSeccomp
	if s.Linux != nil {
		filter = s.Linux.Seccomp
	}
	loadFilter := func() error {
		var err error
		if cfg.SeccompBPF != nil {
			err = sys.LoadSeccompBPF(cfg.SeccompBPF)
		} else {
			err = sys.LoadSeccomp(filter)
		}
		if err != nil {
			return fmt.Errorf("load seccomp profile: %w", err)
		}
		return nil
	}
	// Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, so it
	// goes in before the capabilities drop (runc does the same).
	if filter != nil && !p.NoNewPrivileges {
		if err := loadFilter(); err != nil {
			return err
		}
		markPhase("seccomp")
	}
	// A container's user may be a name (resolved here, in its rootfs); an
	// exec names its own in Process.User.Username.
	userName := p.User.Username
	if cfg.Mode == ModeCreate {
		userName = s.Annotations[AnnotationUser]
	}
	user, err := users.Resolve(userName, p)
	if err != nil {
		return err
	}
	caps := p.Capabilities
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	// finalizeNamespace: bounding set, then keep caps across the uid change,
	// then the user, then the final sets.
	if err := sys.DropBoundingSet(caps.Bounding); err != nil {
		return fmt.Errorf("drop capabilities from the bounding set: %w", err)
	}
	if err := sys.SetKeepCaps(true); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	if err := sys.Setgroups(user.Groups); err != nil {
		return fmt.Errorf("set additional groups %v: %w", user.Groups, err)
	}
	if err := sys.Setresgid(user.GID); err != nil {
		return fmt.Errorf("set gid %d: %w", user.GID, err)
	}
	if err := sys.Setresuid(user.UID); err != nil {
		return fmt.Errorf("set uid %d: %w", user.UID, err)
	}
	if err := sys.SetKeepCaps(false); err != nil {
		return fmt.Errorf("clear keep-caps: %w", err)
	}
	if err := sys.SetCapabilities(caps); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := sys.Chdir(cwd); err != nil {
		return fmt.Errorf("working dir %q: %w", cwd, err)
	}
	env := withHome(p.Env, user.Home)
	path, err := sys.LookPath(p.Args[0], env)
	if err != nil {
		return fmt.Errorf("exec %q: %w", p.Args[0], err)
	}
	if filter != nil && p.NoNewPrivileges {
		// As close to exec as possible.
		if err := loadFilter(); err != nil {
			return err
		}
	}
	if cfg.Mode == ModeCreate {
		if err := ch.Send(msgReady); err != nil {
			return err
		}
		if err := ch.Wait(msgStart); err != nil {
			return err
		}
	}
	// Nothing of ours may reach the workload (CVE-2024-21626): every fd
	// above stdio closes at exec, the init socket included.
	if err := sys.CloseExecFrom(3); err != nil {
		return fmt.Errorf("mark fds close-on-exec: %w", err)
	}
	if err := sys.Exec(path, p.Args, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// setupConsole opens the process's terminal in the current root's devpts,
// makes it stdio and the controlling terminal, bind-mounts its replica on
// /dev/console when mountConsole, and sends the master to the parent.
func setupConsole(sys Syscalls, ch Channel, p *specs.Process, mountConsole bool) error {
	master, replica, err := sys.OpenConsole(p.ConsoleSize)
	if err != nil {
		return fmt.Errorf("open the container's terminal (/dev/ptmx): %w", err)
	}
	if mountConsole {
		if err := sys.CreateFile("/dev/console"); err != nil {
			master.Close()
			return fmt.Errorf("create /dev/console: %w", err)
		}
		if err := sys.Mount(replica, "/dev/console", "", unix.MS_BIND, ""); err != nil {
			master.Close()
			return fmt.Errorf("bind %s on /dev/console: %w", replica, err)
		}
	}
	if err := ch.SendConsole(master); err != nil {
		return fmt.Errorf("send the terminal to the parent: %w", err)
	}
	if err := sys.SetCtty(); err != nil {
		return fmt.Errorf("make the terminal the controlling terminal: %w", err)
	}
	return nil
}

// withHome adds HOME from the user's passwd entry unless env has one, as
// Docker does.
func withHome(env []string, home string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	if home == "" {
		home = "/"
	}
	return append(env[:len(env):len(env)], "HOME="+home)
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return true
		}
	}
	return false
}

// readonlyPath remounts path read-only (bind onto itself first).
func readonlyPath(sys Syscalls, path string) error {
	exists, _, err := sys.Stat(path)
	if err != nil {
		return fmt.Errorf("read-only path %s: %w", path, err)
	}
	if !exists {
		return nil
	}
	if err := sys.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("read-only path %s: bind: %w", path, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := sys.Mount(path, path, "", flags, ""); err != nil {
		return fmt.Errorf("read-only path %s: remount: %w", path, err)
	}
	return nil
}

// maskPath hides path: /dev/null over a file, an empty read-only tmpfs
// over a directory.
func maskPath(sys Syscalls, path, label string) error {
	exists, dir, err := sys.Stat(path)
	if err != nil {
		return fmt.Errorf("masked path %s: %w", path, err)
	}
	if !exists {
		return nil
	}
	if dir {
		err = sys.Mount("tmpfs", path, "tmpfs", unix.MS_RDONLY, label)
	} else {
		err = sys.Mount("/dev/null", path, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", path, err)
	}
	return nil
}

// rlimitResources maps runtime spec names to RLIMIT_* numbers.
var rlimitResources = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": 10,
	"RLIMIT_MEMLOCK": 8, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC": 6, "RLIMIT_RSS": 5, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
	"RLIMIT_SIGPENDING": 11, "RLIMIT_STACK": unix.RLIMIT_STACK,
}

// User is who the workload runs as.
type User struct {
	UID, GID int
	Groups   []int
	Home     string
}

// UserResolver turns a process's user into ids, reading the container's
// /etc/passwd and /etc/group: name ("web", "1000:staff") when the user was
// given by name, else the numeric ids of p (whose passwd entry still gives
// HOME).
type UserResolver interface {
	Resolve(name string, p *specs.Process) (User, error)
}

// RootfsUsers resolves users against the files under Root ("/" once the
// init has pivoted).
type RootfsUsers struct{ Root string }

// Resolve implements UserResolver.
func (r RootfsUsers) Resolve(name string, p *specs.Process) (User, error) {
	u := User{UID: int(p.User.UID), GID: int(p.User.GID)}
	for _, g := range p.User.AdditionalGids {
		u.Groups = append(u.Groups, int(g))
	}
	if name == "" {
		name = fmt.Sprintf("%d:%d", u.UID, u.GID)
	}
	resolved, err := lookupUser(name, u, filepath.Join(r.Root, "etc/passwd"), filepath.Join(r.Root, "etc/group"))
	if err != nil {
		return User{}, err
	}
	if resolved.Home == "" {
		resolved.Home = "/"
	}
	return resolved, nil
}
