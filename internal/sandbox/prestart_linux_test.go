package sandbox_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/spec"
)

func prestartSpec(t *testing.T, cfg lifecycle.Config, script string) *specs.Spec {
	t.Helper()
	cfg.Cmd = []string{"sh", "-c", script}
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}}, cfg, spec.Extra{ContainerID: "prestart1234"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// prestartedBox is newBoxSpecPrepared for a prestarted init: its output
// pipe is the one given to Prestart.
func prestartedBox(t *testing.T, l *sandbox.Launcher, s *specs.Spec) (*box, *sandbox.Prestarted) {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test-box")
	must(t, err)
	b := &box{t: t, l: l, spec: s, dir: dir, outDone: make(chan struct{})}
	for _, d := range []string{"rootfs", "upper", "work"} {
		must(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	testCount++
	cg, err := sandbox.OpenCgroup(fmt.Sprintf("berth-test-%d-%d", os.Getpid(), testCount), true)
	must(t, err)
	b.cg = cg
	t.Cleanup(b.cleanup)
	r, w, err := os.Pipe()
	must(t, err)
	b.stdout = r
	go func() { _, _ = io.Copy(&b.outBuf, r); close(b.outDone) }()
	p, err := l.Prestart(s, sandbox.Stdio{Stdout: w, Stderr: w})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

func (b *box) createWith(p *sandbox.Prestarted) error {
	dir := b.dir
	c, err := b.l.Create(sandbox.CreateOptions{Spec: b.spec, RootDir: filepath.Join(dir, "rootfs"), Cgroup: b.cg,
		Rootfs: []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + lowerDir, "upperdir=" + filepath.Join(dir, "upper"), "workdir=" + filepath.Join(dir, "work")}}},
		Prestarted: p})
	if err == nil {
		b.c = c
	}
	return err
}

// TestPrestartedInit: an init prestarted in new namespaces waits for its
// config; a Create that takes it gives the same container as a cold one
// (PID 1 of its namespace, in its cgroup before it runs anything of the
// workload, seccomp, Docker's capabilities, its own network namespace),
// and it cannot be taken twice or for other namespaces.
func TestPrestartedInit(t *testing.T) {
	l := launcher(t)
	s := prestartSpec(t, lifecycle.Config{}, "echo pid=$$; grep -E '^(Seccomp|CapEff):' /proc/self/status; hostname")
	s.Hostname = "warm"
	b, p := prestartedBox(t, l, s)
	if !p.Usable(s) {
		t.Fatal("a fresh prestarted init is not Usable for its own spec")
	}
	hostNet := prestartSpec(t, lifecycle.Config{Network: lifecycle.NetworkOptions{Network: "host"}}, "true")
	if p.Usable(hostNet) {
		t.Error("a prestarted init with a network namespace is Usable for a host-network spec")
	}
	mine, _ := os.Readlink("/proc/self/ns/net")
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.Pid()))
	if err != nil || theirs == mine {
		t.Errorf("prestarted init's netns %q (%v), ours %q: want its own", theirs, err, mine)
	}
	time.Sleep(200 * time.Millisecond) // let it reach its read of the config, as in an agent
	if err := b.createWith(p); err != nil {
		t.Fatalf("create with the prestarted init: %v", err)
	}
	if b.c.Process.Pid != p.Pid() {
		t.Errorf("container pid %d, prestarted %d", b.c.Process.Pid, p.Pid())
	}
	if !slices.Contains(b.cg.Pids(), p.Pid()) {
		t.Errorf("created container's init %d is not in its cgroup (%v)", p.Pid(), b.cg.Pids())
	}
	if p.Usable(s) {
		t.Error("a taken prestarted init is still Usable")
	}
	if err := b.createWith(p); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("second Create with the same prestarted init: %v", err)
	}
	out, code := b.run()
	for _, want := range []string{"pid=1\n", "Seccomp:\t2\n", "CapEff:\t" + dockerCapEff + "\n", "warm\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestPrestartedInitDied: a prestarted init that died is not Usable (the
// caller then starts one cold), and Discard kills a live one.
func TestPrestartedInitDied(t *testing.T) {
	l := launcher(t)
	s := prestartSpec(t, lifecycle.Config{}, "true")
	p, err := l.Prestart(s, sandbox.Stdio{})
	must(t, err)
	must(t, unix.Kill(p.Pid(), unix.SIGKILL))
	var ws unix.WaitStatus
	if _, err := unix.Wait4(p.Pid(), &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if p.Usable(s) {
		t.Error("a dead prestarted init is Usable")
	}
	p.Discard()

	q, err := l.Prestart(s, sandbox.Stdio{})
	must(t, err)
	q.Discard()
	if _, err := unix.Wait4(q.Pid(), &ws, 0, nil); err != nil || !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("discarded prestarted init: %v, %v; want killed", ws, err)
	}
	if q.Usable(s) {
		t.Error("a discarded prestarted init is Usable")
	}
	userNS := prestartSpec(t, lifecycle.Config{}, "true")
	userNS.Linux.Namespaces = append(userNS.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	if _, err := l.Prestart(userNS, sandbox.Stdio{}); err == nil {
		t.Error("Prestart with a user namespace succeeded")
	}
}

// TestPrecompiledSeccomp: a profile precompiled in memory is handed to the
// init (no cache dir), whose container runs under it; a compiler that
// prints no program is refused.
func TestPrecompiledSeccomp(t *testing.T) {
	l := launcher(t)
	s := prestartSpec(t, lifecycle.Config{}, "grep -E '^Seccomp:' /proc/self/status; unshare -U true && echo unshared")
	if err := l.Precompile(s.Linux.Seccomp); err != nil {
		t.Fatal(err)
	}
	b, err := newBoxSpec(t, l, s)
	if err != nil {
		t.Fatal(err)
	}
	if !b.c.SeccompCompiled {
		t.Error("the init did not get the precompiled program")
	}
	out, _ := b.run()
	if !strings.Contains(out, "Seccomp:\t2\n") || strings.Contains(out, "unshared") {
		t.Errorf("output %q: want seccomp filtering and unshare refused", out)
	}
	if err := l.Precompile(nil); err == nil {
		t.Error("Precompile(nil) succeeded")
	}
	bogus, err := sandbox.NewLauncher("/bin/true")
	must(t, err)
	defer bogus.Close()
	if err := bogus.Precompile(s.Linux.Seccomp); err == nil || !strings.Contains(err.Error(), "not a whole program") {
		t.Errorf("Precompile with a compiler that prints nothing: %v", err)
	}
}
