package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/spec"
)

// recorder is a Syscalls that records each call as "name arg" and does
// nothing, so the order of setup is checked without root.
type recorder struct {
	calls []string
	// existing paths for Stat (dirs end in "/").
	existing map[string]bool
	failOn   string
}

func (r *recorder) rec(format string, args ...any) error {
	c := fmt.Sprintf(format, args...)
	r.calls = append(r.calls, c)
	if r.failOn != "" && strings.HasPrefix(c, r.failOn) {
		return fmt.Errorf("injected failure")
	}
	return nil
}

func (r *recorder) Mount(source, target, fstype string, flags uintptr, data string) error {
	kind := fstype
	switch {
	case flags&unix.MS_REMOUNT != 0:
		kind = "remount"
	case flags&unix.MS_BIND != 0:
		kind = "bind"
	case flags&(unix.MS_SLAVE|unix.MS_PRIVATE) != 0:
		kind = "propagation"
	}
	return r.rec("mount %s %s", kind, target)
}
func (r *recorder) Unmount(target string, flags int) error   { return r.rec("umount %s", target) }
func (r *recorder) PivotRoot(newroot, putold string) error   { return r.rec("pivot_root") }
func (r *recorder) Chdir(dir string) error                   { return r.rec("chdir %s", dir) }
func (r *recorder) MkdirAll(p string, _ os.FileMode) error   { return r.rec("mkdir %s", p) }
func (r *recorder) CreateFile(p string) error                { return r.rec("touch %s", p) }
func (r *recorder) Mknod(p string, mode uint32, _ int) error { return r.rec("mknod %s", p) }
func (r *recorder) Symlink(o, n string) error                { return r.rec("symlink %s", n) }
func (r *recorder) Stat(p string) (bool, bool, error) {
	if r.existing[p+"/"] {
		return true, true, nil
	}
	return r.existing[p], false, nil
}
func (r *recorder) SecureJoin(root, unsafe string) (string, error) {
	return filepath.Join(root, unsafe), nil
}
func (r *recorder) Sethostname(name string) error { return r.rec("sethostname %s", name) }
func (r *recorder) LoopbackUp() error             { return r.rec("lo up") }
func (r *recorder) Unshare(flags int) error       { return r.rec("unshare %#x", flags) }
func (r *recorder) SetNoNewPrivs() error          { return r.rec("no_new_privs") }
func (r *recorder) Setrlimit(res int, l *unix.Rlimit) error {
	return r.rec("setrlimit %d %d", res, l.Cur)
}
func (r *recorder) SetOOMScoreAdj(adj int) error          { return r.rec("oom_score_adj %d", adj) }
func (r *recorder) LoadSeccomp(*specs.LinuxSeccomp) error { return r.rec("seccomp") }
func (r *recorder) LoadSeccompBPF(p []byte) error         { return r.rec("seccomp bpf %d", len(p)) }
func (r *recorder) DropBoundingSet(keep []string) error   { return r.rec("bounding %d", len(keep)) }
func (r *recorder) SetKeepCaps(k bool) error              { return r.rec("keepcaps %v", k) }
func (r *recorder) Setgroups(g []int) error               { return r.rec("setgroups %v", g) }
func (r *recorder) Setresgid(gid int) error               { return r.rec("setgid %d", gid) }
func (r *recorder) Setresuid(uid int) error               { return r.rec("setuid %d", uid) }
func (r *recorder) SetCapabilities(c *specs.LinuxCapabilities) error {
	return r.rec("caps %d", len(c.Effective))
}
func (r *recorder) SetCtty() error { return r.rec("ctty") }
func (r *recorder) OpenConsole(size *specs.Box) (*os.File, string, error) {
	if size != nil {
		return nil, "/dev/pts/0", r.rec("open console %dx%d", size.Width, size.Height)
	}
	return nil, "/dev/pts/0", r.rec("open console")
}
func (r *recorder) LookPath(f string, env []string) (string, error) {
	return "/bin/" + f, r.rec("lookpath %s", f)
}
func (r *recorder) CloseExecFrom(fd int) error { return r.rec("cloexec %d", fd) }
func (r *recorder) Exec(p string, args, env []string) error {
	return r.rec("exec %s", p)
}

// chanRecorder is the parent side of the init socket.
type chanRecorder struct{ r *recorder }

func (c chanRecorder) Wait(kind string) error { return c.r.rec("wait %s", kind) }
func (c chanRecorder) Send(kind string) error { return c.r.rec("send %s", kind) }
func (c chanRecorder) SendConsole(*os.File) error {
	return c.r.rec("send console")
}

func buildSpec(t *testing.T, cfg lifecycle.Config) *specs.Spec {
	t.Helper()
	s, err := spec.Build(spec.ImageConfig{Cmd: []string{"sh"}}, cfg, spec.Extra{ContainerID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// index returns the position of the first call with prefix, failing if
// absent.
func index(t *testing.T, calls []string, prefix string) int {
	t.Helper()
	i := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
	if i < 0 {
		t.Fatalf("no call %q in\n%s", prefix, strings.Join(calls, "\n"))
	}
	return i
}

func assertOrder(t *testing.T, calls []string, prefixes ...string) {
	t.Helper()
	next := 0
	for _, p := range prefixes {
		i := slices.IndexFunc(calls[next:], func(c string) bool { return strings.HasPrefix(c, p) })
		if i < 0 {
			t.Fatalf("no call %q after step %d (%q) in\n%s", p, next, calls[max(next-1, 0)], strings.Join(calls, "\n"))
		}
		next += i + 1
	}
}

func TestRunInitOrderCreate(t *testing.T) {
	s := buildSpec(t, lifecycle.Config{})
	s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}}
	adj := -500
	s.Process.OOMScoreAdj = &adj
	r := &recorder{existing: map[string]bool{"/proc/kcore": true, "/proc/sys/": true, "/proc/acpi/": true, "/sys/firmware/": true}}
	cfg := &InitConfig{Mode: ModeCreate, Spec: s, Process: s.Process, RootDir: "/run/c1/rootfs", CgroupNS: true,
		Rootfs: []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u", "workdir=/w"}}}}
	err := RunInit(r, chanRecorder{r}, cfg, RootfsUsers{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// runc's standard_init order.
	assertOrder(t, r.calls,
		"wait go", // the parent has joined our cgroup
		"oom_score_adj -500",
		"unshare 0x2000000",
		"lo up",
		"mount propagation /",
		"mount overlay /run/c1/rootfs",
		"mount bind /run/c1/rootfs",
		"mount proc /run/c1/rootfs/proc",
		"mount tmpfs /run/c1/rootfs/dev",
		"mount devpts /run/c1/rootfs/dev/pts",
		"mount sysfs /run/c1/rootfs/sys",
		"mount mqueue /run/c1/rootfs/dev/mqueue",
		"mknod /run/c1/rootfs/dev/null",
		"symlink /run/c1/rootfs/dev/ptmx",
		"chdir /run/c1/rootfs",
		"pivot_root",
		"umount .",
		"sethostname c1",
		"mount bind /proc/sys", "mount remount /proc/sys",
		"mount bind /proc/kcore", // masked: /dev/null over a file
		"mount tmpfs /sys/firmware",
		"setrlimit",
		"seccomp", // early: no_new_privs is off, so it needs CAP_SYS_ADMIN still
		"bounding 14",
		"keepcaps true", "setgroups", "setgid 0", "setuid 0", "keepcaps false",
		"caps 14",
		"chdir /",
		"lookpath sh",
		"send ready", "wait start",
		"cloexec 3",
		"exec /bin/sh",
	)
	if slices.Contains(r.calls, "no_new_privs") {
		t.Error("no_new_privs set though the spec does not ask")
	}
	if i := index(t, r.calls, "exec"); i != len(r.calls)-1 {
		t.Errorf("exec is not the last call: %v", r.calls[i:])
	}
}

func TestRunInitNoNewPrivsLoadsSeccompLate(t *testing.T) {
	s := buildSpec(t, lifecycle.Config{})
	s.Process.NoNewPrivileges = true
	r := &recorder{}
	cfg := &InitConfig{Mode: ModeCreate, Spec: s, Process: s.Process, RootDir: "/r"}
	if err := RunInit(r, chanRecorder{r}, cfg, RootfsUsers{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	assertOrder(t, r.calls, "sethostname", "no_new_privs", "bounding", "setuid", "caps", "lookpath", "seccomp", "send ready", "cloexec", "exec")
}

func TestRunInitExecSkipsRootfs(t *testing.T) {
	s := buildSpec(t, lifecycle.Config{})
	p := *s.Process
	p.Args = []string{"ps"}
	p.Terminal = true
	r := &recorder{}
	cfg := &InitConfig{Mode: ModeExec, Spec: s, Process: &p}
	if err := RunInit(r, chanRecorder{r}, cfg, RootfsUsers{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.calls {
		if strings.HasPrefix(c, "mount") || strings.HasPrefix(c, "pivot") || strings.HasPrefix(c, "sethostname") || strings.HasPrefix(c, "send ready") {
			t.Errorf("exec made %q; only a new container sets up its root", c)
		}
	}
	// The exec opens its terminal in the container's devpts (its mount
	// namespace is entered already) and gives the master to the parent.
	assertOrder(t, r.calls, "wait go", "open console", "send console", "ctty", "seccomp", "bounding", "setuid", "caps", "cloexec", "exec /bin/ps")
}

// TestRunInitConsoleCreate checks runc's setupConsole place: after the
// root is pivoted (so /dev/ptmx is the container's devpts), before masked
// paths, with the replica on /dev/console.
func TestRunInitConsoleCreate(t *testing.T) {
	s := buildSpec(t, lifecycle.Config{Tty: true})
	s.Process.ConsoleSize = &specs.Box{Width: 100, Height: 40}
	r := &recorder{existing: map[string]bool{"/proc/sys/": true}}
	cfg := &InitConfig{Mode: ModeCreate, Spec: s, Process: s.Process, RootDir: "/r"}
	if err := RunInit(r, chanRecorder{r}, cfg, RootfsUsers{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	assertOrder(t, r.calls, "mount devpts /r/dev/pts", "symlink /r/dev/ptmx", "pivot_root", "umount .",
		"open console 100x40", "touch /dev/console", "mount bind /dev/console", "send console", "ctty",
		"sethostname", "mount bind /proc/sys", "send ready", "exec")
	if n := len(slices.DeleteFunc(slices.Clone(r.calls), func(c string) bool { return c != "open console 100x40" })); n != 1 {
		t.Errorf("the terminal was opened %d times", n)
	}
}

func TestRunInitResolvesUserFromRootfs(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nweb:x:1000:1001::/srv/web:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nweb:x:1001:\nstaff:x:50:web\n"), 0o644))
	s := buildSpec(t, lifecycle.Config{User: "web"})
	r := &recorder{}
	if err := RunInit(r, chanRecorder{r}, &InitConfig{Mode: ModeCreate, RootDir: "/r", Spec: s, Process: s.Process}, RootfsUsers{Root: root}); err != nil {
		t.Fatal(err)
	}
	assertOrder(t, r.calls, "setgroups [50]", "setgid 1001", "setuid 1000")

	s = buildSpec(t, lifecycle.Config{User: "nobody"})
	err := RunInit(&recorder{}, chanRecorder{&recorder{}}, &InitConfig{Mode: ModeCreate, RootDir: "/r", Spec: s, Process: s.Process}, RootfsUsers{Root: root})
	if err == nil || !strings.Contains(err.Error(), `user "nobody"`) {
		t.Fatalf("unknown user: error %v, want one naming the user", err)
	}
}

func TestRunInitStopsAtFirstFailure(t *testing.T) {
	s := buildSpec(t, lifecycle.Config{})
	r := &recorder{failOn: "pivot_root"}
	err := RunInit(r, chanRecorder{r}, &InitConfig{Mode: ModeCreate, Spec: s, Process: s.Process, RootDir: "/r"}, RootfsUsers{Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "pivot_root into /r") {
		t.Fatalf("error %v, want the pivot_root failure named", err)
	}
	if slices.ContainsFunc(r.calls, func(c string) bool { return strings.HasPrefix(c, "exec") || strings.HasPrefix(c, "sethostname") }) {
		t.Errorf("setup went on after a failure: %v", r.calls)
	}
}

func TestAnnotationUserMatchesSDK(t *testing.T) {
	if AnnotationUser != spec.AnnotationUser {
		t.Fatalf("sandbox.AnnotationUser %q != spec.AnnotationUser %q", AnnotationUser, spec.AnnotationUser)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
