package sandbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/spec"
)

// These tests run real containers as root: namespaces, an overlay rootfs of
// busybox, cgroups named berth-test-*, seccomp and capabilities. Each
// container is checked for leaks (mounts, cgroups) when it ends.

var (
	initPath  string
	probePath string
	lowerDir  string
	setupErr  error
	isRoot    = os.Geteuid() == 0
	testCount int
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-test-sandbox")
	if err != nil {
		panic(err)
	}
	if isRoot {
		// Exec'd processes are reparented to us when their nsenter
		// intermediate exits.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			setupErr = err
		}
		if setupErr == nil {
			initPath, setupErr = sandboxtest.BuildInit(dir)
		}
		if setupErr == nil {
			probePath, setupErr = sandboxtest.BuildProbe(dir)
		}
		if setupErr == nil {
			lowerDir = filepath.Join(dir, "rootfs")
			setupErr = sandboxtest.Rootfs(lowerDir)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func launcher(t *testing.T) *sandbox.Launcher {
	t.Helper()
	sandboxtest.RequireRoot(t)
	if setupErr != nil {
		t.Fatalf("test setup: %v", setupErr)
	}
	l, err := sandbox.NewLauncher(initPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// box is one test container.
type box struct {
	t       *testing.T
	l       *sandbox.Launcher
	spec    *specs.Spec
	dir     string
	cg      *sandbox.Cgroup
	c       *sandbox.Container
	stdout  *os.File
	outBuf  bytes.Buffer
	outDone chan struct{}
}

// newBox creates (not starts) a container running args with the user's
// options cfg, on an overlay of the busybox rootfs, in cgroup
// berth-test-<n>.
func newBox(t *testing.T, cfg lifecycle.Config, args ...string) (*box, error) {
	t.Helper()
	l := launcher(t)
	cfg.Cmd = args
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}}, cfg, spec.Extra{ContainerID: "sandboxtest1234"})
	if err != nil {
		t.Fatal(err)
	}
	return newBoxSpec(t, l, s)
}

func newBoxSpec(t *testing.T, l *sandbox.Launcher, s *specs.Spec) (*box, error) {
	t.Helper()
	return newBoxSpecPrepared(t, l, s, func(string) {})
}

// newBoxSpecPrepared is newBoxSpec with prepare called on the box's dir
// (holding rootfs, upper, work) before the container is created.
func newBoxSpecPrepared(t *testing.T, l *sandbox.Launcher, s *specs.Spec, prepare func(dir string)) (*box, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test-box")
	if err != nil {
		t.Fatal(err)
	}
	b := &box{t: t, l: l, spec: s, dir: dir, outDone: make(chan struct{})}
	for _, d := range []string{"rootfs", "upper", "work"} {
		must(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	prepare(dir)
	testCount++
	cg, err := sandbox.OpenCgroup(fmt.Sprintf("berth-test-%d-%d", os.Getpid(), testCount), true)
	if err != nil {
		t.Fatal(err)
	}
	b.cg = cg
	t.Cleanup(b.cleanup)
	r, w, err := os.Pipe()
	must(t, err)
	b.stdout = r
	go func() { _, _ = io.Copy(&b.outBuf, r); close(b.outDone) }()
	opts := sandbox.CreateOptions{
		Spec: s, RootDir: filepath.Join(dir, "rootfs"), Cgroup: cg,
		Rootfs: []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + lowerDir, "upperdir=" + filepath.Join(dir, "upper"), "workdir=" + filepath.Join(dir, "work")}}},
		Stdio: sandbox.Stdio{Stdout: w, Stderr: w},
	}
	c, err := l.Create(opts)
	w.Close()
	if err != nil {
		return b, err
	}
	b.c = c
	return b, nil
}

// run starts the box and returns its output and exit code.
func (b *box) run() (string, int) {
	b.t.Helper()
	if err := b.c.Start(); err != nil {
		b.t.Fatalf("start: %v", err)
	}
	return b.wait()
}

func (b *box) wait() (string, int) {
	b.t.Helper()
	st, err := b.c.Process.Wait()
	if err != nil {
		b.t.Fatalf("wait: %v", err)
	}
	select {
	case <-b.outDone:
	case <-time.After(30 * time.Second):
		b.t.Fatal("container output did not end 30s after its init exited")
	}
	return b.outBuf.String(), st.ExitCode()
}

// cleanup kills what is left and asserts nothing leaked: no process in the
// cgroup, no cgroup, no mount under the box dir.
func (b *box) cleanup() {
	t := b.t
	if b.c != nil {
		_ = b.c.Process.Kill()
		_, _ = b.c.Process.Wait()
	}
	b.cg.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for len(b.cg.Pids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if pids := b.cg.Pids(); len(pids) > 0 {
		t.Errorf("processes %v left in the container's cgroup", pids)
	}
	if err := b.cg.Remove(); err != nil {
		t.Errorf("remove cgroup: %v", err)
	}
	for _, d := range b.cg.Created {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind", d)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), b.dir) {
		t.Errorf("mounts under %s leaked to the host:\n%s", b.dir, mi)
	}
	if err := os.RemoveAll(b.dir); err != nil {
		t.Errorf("remove %s: %v", b.dir, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func runSh(t *testing.T, cfg lifecycle.Config, script string) (string, int) {
	t.Helper()
	b, err := newBox(t, cfg, "sh", "-c", script)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return b.run()
}

// dockerCapEff is CapEff of Docker's default capability set.
const dockerCapEff = "00000000a80425fb"

func TestContainerBasics(t *testing.T) {
	out, code := runSh(t, lifecycle.Config{}, `
echo pid=$$
echo host=$(hostname)
grep CapEff /proc/self/status
grep NoNewPrivs /proc/self/status
grep Seccomp: /proc/self/status
echo cwd=$(pwd)
echo home=$HOME
ip link 2>/dev/null | grep -c '^[0-9]' | sed 's/^/links=/'
cat /sys/class/net/lo/operstate | sed 's/^/lo=/'
ulimit -n | sed 's/^/nofile=/'
exit 7`)
	if code != 7 {
		t.Errorf("exit code %d, want 7; output:\n%s", code, out)
	}
	for _, want := range []string{"pid=1\n", "host=sandboxtest1\n", "CapEff:\t" + dockerCapEff, "NoNewPrivs:\t0",
		"Seccomp:\t2", "cwd=/\n", "home=/root\n", "links=1\n", "lo=unknown\n", fmt.Sprintf("nofile=%d\n", nofile(t))} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func nofile(t *testing.T) uint64 {
	var l unix.Rlimit
	must(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &l))
	return l.Cur
}

func TestRlimits(t *testing.T) {
	l := launcher(t)
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh", "-c", "ulimit -n; ulimit -u"}},
		lifecycle.Config{}, spec.Extra{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}, {Type: "RLIMIT_NPROC", Soft: 77, Hard: 77}}})
	must(t, err)
	b, err := newBoxSpec(t, l, s)
	must(t, err)
	out, code := b.run()
	if code != 0 || out != "64\n77\n" {
		t.Fatalf("ulimits %q (exit %d), want 64 and 77", out, code)
	}
}

func TestCreateWaitsForStart(t *testing.T) {
	b, err := newBox(t, lifecycle.Config{}, "sh", "-c", "touch /ran; echo ran")
	if err != nil {
		t.Fatal(err)
	}
	afterExec := checkInitProtected(t, b.l, b.c.Process.Pid)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(b.dir, "upper", "ran")); err == nil {
		t.Fatal("the workload ran before Start")
	}
	procs, _ := os.ReadFile(filepath.Join(b.cg.V1["pids"], "cgroup.procs"))
	if !strings.Contains(string(procs), fmt.Sprint(b.c.Process.Pid)) {
		t.Errorf("created init %d is not in its cgroup (procs %q)", b.c.Process.Pid, procs)
	}
	out, code := b.run()
	if code != 0 || out != "ran\n" {
		t.Fatalf("after start: %q, exit %d", out, code)
	}
	afterExec()
	if _, err := os.Stat(filepath.Join(b.dir, "upper", "ran")); err != nil {
		t.Errorf("the workload's write is not in the overlay upper dir: %v", err)
	}
}

// checkInitProtected: the binary a container can reach through
// /proc/PID/exe of its init cannot be written (CVE-2019-5736). It returns
// a check to run once the init has exec'd the workload: the attack keeps a
// handle on the init's exe and reopens it for writing when nothing runs it
// any more (no ETXTBSY to hide behind).
func checkInitProtected(t *testing.T, l *sandbox.Launcher, pid int) func() {
	t.Helper()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	target, err := os.Readlink(exe)
	must(t, err)
	switch l.Protection() {
	case "memfd":
		if !strings.HasPrefix(target, "/memfd:berth-sandbox-init") {
			t.Errorf("init runs %q, want the sealed memfd copy", target)
		}
	case "ro-bind":
		var st unix.Statfs_t
		must(t, unix.Statfs(exe, &st))
		if st.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("init runs %q from a writable mount", target)
		}
	default:
		t.Fatalf("unknown protection %q", l.Protection())
	}
	f, err := os.OpenFile(exe, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write([]byte("overwritten"))
		f.Close()
		if err == nil {
			t.Fatalf("wrote to the container init's executable (%s)", l.Protection())
		}
	}
	t.Logf("init binary protected by %s: opening it for writing fails: %v", l.Protection(), err)
	b, _ := os.ReadFile(initPath)
	if bytes.Contains(b, []byte("overwritten")) {
		t.Error("the init binary on the host was modified")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), ".berth-init-") {
		t.Error("the init's read-only bind mount is still attached")
	}
	handle, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
	must(t, err)
	return func() {
		t.Helper()
		defer unix.Close(handle)
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", handle), os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write([]byte("overwritten"))
			f.Close()
		}
		if err == nil {
			t.Fatalf("rewrote the init binary through a handle kept from the container (%s)", l.Protection())
		}
		if errors.Is(err, syscall.ETXTBSY) {
			t.Errorf("reopening the kept handle failed only because something still runs it: %v", err)
		}
		t.Logf("after exec, reopening the init binary for writing fails: %v", err)
		b, _ := os.ReadFile(initPath)
		if bytes.Contains(b, []byte("overwritten")) {
			t.Error("the init binary on the host was modified")
		}
	}
}

func TestMemfdProtection(t *testing.T) {
	// The fallback where mounting is impossible.
	launcher(t) // root and setup checks
	fm, err := sandbox.NewLauncherMemfd(initPath)
	must(t, err)
	defer fm.Close()
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"true"}}, lifecycle.Config{}, spec.Extra{})
	must(t, err)
	b, err := newBoxSpec(t, fm, s)
	must(t, err)
	afterExec := checkInitProtected(t, fm, b.c.Process.Pid)
	if _, code := b.run(); code != 0 {
		t.Errorf("exit %d", code)
	}
	afterExec()
}

func TestUserAndGroups(t *testing.T) {
	out, code := runSh(t, lifecycle.Config{User: "web"}, "id; grep CapEff /proc/self/status; echo home=$HOME")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"uid=1000(web) gid=1000(web) groups=50(staff)", "CapEff:\t0000000000000000", "home=/home/web"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCreateErrorsNameTheCause(t *testing.T) {
	_, err := newBox(t, lifecycle.Config{}, "no-such-command")
	if err == nil || !strings.Contains(err.Error(), `exec "no-such-command"`) {
		t.Errorf("missing command: error %v, want it named", err)
	}
	_, err = newBox(t, lifecycle.Config{User: "ghost"}, "true")
	if err == nil || !strings.Contains(err.Error(), `user "ghost"`) {
		t.Errorf("missing user: error %v, want it named", err)
	}
}

func TestReadonlyRootfsAndMounts(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "hello"), []byte("from host\n"), 0o644))
	out, code := runSh(t, lifecycle.Config{ReadOnlyRootfs: true, Mounts: []lifecycle.Mount{
		{Type: "bind", Source: src, Destination: "/data", ReadOnly: true},
		{Type: "tmpfs", Destination: "/scratch"},
	}}, `cat /data/hello; touch /x 2>/dev/null || echo rootfs-ro; touch /data/y 2>/dev/null || echo data-ro; touch /scratch/z && echo scratch-rw`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"from host", "rootfs-ro", "data-ro", "scratch-rw"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestExecJoinsTheContainer(t *testing.T) {
	b, err := newBox(t, lifecycle.Config{}, "sh", "-c", "echo started; exec sleep 1000")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.c.Start(); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	must(t, err)
	proc := *b.spec.Process
	proc.Args = []string{"sh", "-c", "echo pid=$$; hostname; cat /proc/1/comm; grep CapEff /proc/self/status; ls /proc/self/fd | wc -l"}
	p, err := b.l.Exec(sandbox.ExecOptions{Pid: b.c.Process.Pid, Spec: b.spec, Process: &proc, Cgroup: b.cg, Stdio: sandbox.Stdio{Stdout: w, Stderr: w}})
	w.Close()
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	out, _ := io.ReadAll(r)
	st, err := p.Wait()
	if err != nil || st.ExitCode() != 0 {
		t.Fatalf("exec'd process: %v %v\n%s", st, err, out)
	}
	for _, want := range []string{"sandboxtest1\n", "sleep\n", "CapEff:\t" + dockerCapEff} {
		if !strings.Contains(string(out), want) {
			t.Errorf("exec output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "pid=1\n") || !strings.Contains(string(out), "pid=") {
		t.Errorf("exec'd shell is not a non-init process of the container's pid namespace:\n%s", out)
	}
	// Freeze and thaw the whole container.
	must(t, b.cg.Freeze())
	if !b.cg.Frozen() {
		t.Error("cgroup not frozen after Freeze")
	}
	must(t, b.cg.Thaw())
	must(t, b.c.Process.Signal(syscall.SIGKILL))
	if _, code := b.wait(); code != -1 {
		t.Errorf("killed init exit code %d, want -1 (signalled)", code)
	}
}

func TestExecIntoMissingContainerFails(t *testing.T) {
	l := launcher(t)
	s, err := spec.Build(spec.ImageConfig{Cmd: []string{"true"}}, lifecycle.Config{}, spec.Extra{})
	must(t, err)
	_, err = l.Exec(sandbox.ExecOptions{Pid: 1 << 22, Spec: s, Process: s.Process})
	if err == nil || !strings.Contains(err.Error(), "enter the namespaces of pid") {
		t.Fatalf("exec into a missing pid: %v", err)
	}
}

// TestSecurity checks, from inside a default container, what Docker's
// defaults forbid.
func TestSecurity(t *testing.T) {
	// Both seccomp paths must deny the same: the init compiling the profile
	// with libseccomp, and the launcher's cached BPF program.
	t.Run("compiled-by-init", func(t *testing.T) { testSecurity(t, "") })
	cache := t.TempDir()
	t.Run("cached-bpf", func(t *testing.T) { testSecurity(t, cache) })
	t.Run("cached-bpf-again", func(t *testing.T) {
		if entries, _ := os.ReadDir(cache); len(entries) != 1 {
			t.Fatalf("seccomp cache holds %d programs, want 1", len(entries))
		}
		testSecurity(t, cache)
	})
}

func testSecurity(t *testing.T, seccompCache string) {
	diskPath, disk := sandboxtest.LoopDisk(t)
	// The control: the host reads the disk the container must not.
	if b, err := os.ReadFile(diskPath); err != nil || !bytes.HasPrefix(b, []byte("berth-disk-")) {
		t.Fatalf("the host cannot read its own loop disk %s (%v); the container check would prove nothing", diskPath, err)
	}
	// A host fd that must not leak into the container.
	leak, err := os.Open("/etc/hostname")
	must(t, err)
	defer leak.Close()
	l := launcher(t)
	l.SeccompCacheDir = seccompCache
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}}, lifecycle.Config{
		Mounts: []lifecycle.Mount{{Type: "bind", Source: probePath, Destination: "/probe", ReadOnly: true}},
		// busybox ls shows what the workload inherited (plus its own
		// directory fd, 3); the Go probe would add its runtime's own.
		Cmd: []string{"sh", "-c", "echo fds=$(ls /proc/self/fd | tr '\\n' ,); exec /probe " + disk},
	}, spec.Extra{ContainerID: "sandboxtest1234"})
	must(t, err)
	b, err := newBoxSpec(t, l, s)
	if err != nil {
		t.Fatal(err)
	}
	out, code := b.run()
	if code != 0 {
		t.Fatalf("probe exit %d:\n%s", code, out)
	}
	got := map[string]string{}
	for _, f := range strings.Fields(out) {
		k, v, _ := strings.Cut(f, "=")
		got[k] = v
	}
	want := map[string]string{
		"fds":            "0,1,2,3,", // stdio and ls's own: nothing of the runtime's
		"keyctl":         "EPERM",    // seccomp
		"unshare_user":   "EPERM",    // seccomp (no CAP_SYS_ADMIN)
		"clone3":         "ENOSYS",   // seccomp errnoRet, so glibc falls back to clone
		"mount":          "EPERM",    // no CAP_SYS_ADMIN
		"mknod_disk":     "ok",       // CAP_MKNOD is in Docker's set …
		"read_disk":      "EPERM",    // … but the devices cgroup denies the node
		"kcore_bytes":    "0",        // masked by /dev/null
		"proc_sys_write": "EROFS",
		"sys_write":      "EROFS",
		"processes":      "1", // only the probe itself
	}
	if got["sysrq_write"] == "ok" {
		t.Error("wrote /proc/sysrq-trigger")
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if t.Failed() {
		t.Logf("probe output:\n%s", out)
	}
}

// TestUserNamespace runs a container in its own user namespace: root inside
// is an unprivileged uid outside.
func TestUserNamespace(t *testing.T) {
	l := launcher(t)
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh", "-c",
		"id -u; cat /proc/self/uid_map; grep CapEff /proc/self/status; echo hi > /dev/shm/f && cat /dev/shm/f; cat /etc/hostname"}},
		lifecycle.Config{}, spec.Extra{ContainerID: "userns"})
	must(t, err)
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	// The namespace's root (host uid 100000) must reach the rootfs and own
	// the overlay's upper and work dirs, as an idmapped snapshot would.
	must(t, os.Chmod(filepath.Dir(lowerDir), 0o755))
	b, err := newBoxSpecPrepared(t, l, s, func(dir string) {
		must(t, os.Chmod(dir, 0o755))
		for _, d := range []string{"upper", "work"} {
			must(t, os.Chown(filepath.Join(dir, d), 100000, 100000))
		}
	})
	if err != nil {
		t.Fatalf("create in a user namespace: %v", err)
	}
	// Seen from the host, the container's root is uid 100000.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.c.Process.Pid))
	must(t, err)
	if !strings.Contains(string(status), "Uid:\t100000") {
		t.Errorf("host view of the init's uid:\n%s", status)
	}
	out, code := b.run()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// (Writing to the rootfs needs idmapped layers: its files belong to a
	// host root the namespace does not map, so copy-up fails.)
	for _, want := range []string{"0\n", "100000", "CapEff:\t" + dockerCapEff, "hi\n", "rootfs\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// lockedBuffer collects a terminal's output for polling.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.ReplaceAll(b.buf.String(), "\r", "")
}

// TestTerminalIsTheContainers checks that a process with a terminal gets
// one of the container's own devpts (runc's console socket): tty names it,
// it is /dev/console, the size in the spec applies, the host's devpts is
// not visible, and an exec's terminal comes from the same instance.
func TestTerminalIsTheContainers(t *testing.T) {
	b, err := newBox(t, lifecycle.Config{Tty: true}, "sh", "-c",
		`tty; test -t 0 && echo stdin-is-a-tty; `+
			`[ "$(stat -c %t:%T /dev/console)" = "$(stat -c %t:%T "$(tty)")" ] && echo console-is-the-tty; `+
			`echo pts=$(ls /dev/pts | tr '\n' ' '); stty size; echo END; exec sleep 1000`)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if b.c.Console == nil {
		t.Fatal("Create returned no console for a process with a terminal")
	}
	defer b.c.Console.Close()
	must(t, unix.IoctlSetWinsize(int(b.c.Console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 31, Col: 91}))
	var out lockedBuffer
	go func() { _, _ = io.Copy(&out, b.c.Console) }()
	must(t, b.c.Start())
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "END\n") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := out.String()
	for _, want := range []string{"/dev/pts/0\n", "stdin-is-a-tty\n", "console-is-the-tty\n", "pts=0 ptmx\n", "31 91\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, got)
		}
	}

	proc := *b.spec.Process
	proc.Args = []string{"sh", "-c", "tty; test -t 1 && echo stdout-is-a-tty; stty size"}
	proc.ConsoleSize = &specs.Box{Width: 77, Height: 22}
	p, err := b.l.Exec(sandbox.ExecOptions{Pid: b.c.Process.Pid, Spec: b.spec, Process: &proc, Cgroup: b.cg})
	if err != nil {
		t.Fatalf("exec with a terminal: %v", err)
	}
	if p.Console == nil {
		t.Fatal("Exec returned no console for a process with a terminal")
	}
	defer p.Console.Close()
	var execOut lockedBuffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&execOut, p.Console); close(copied) }() // ends with EIO once the exec exits
	if st, err := p.Wait(); err != nil || st.ExitCode() != 0 {
		t.Errorf("exec'd process: %v %v", st, err)
	}
	select {
	case <-copied:
	case <-time.After(30 * time.Second):
		t.Fatal("the exec's terminal output did not end 30s after it exited")
	}
	got = execOut.String()
	for _, want := range []string{"/dev/pts/1\n", "stdout-is-a-tty\n", "22 77\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("exec terminal output lacks %q:\n%s", want, got)
		}
	}
	must(t, b.c.Process.Signal(syscall.SIGKILL))
	b.wait()
}
