//go:build linux

package supervisor

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/sdk/mount"
)

// The Seatbelt backend's logic, on Linux: the held init is a real process
// of this test binary (HoldArg); only the confinement is Unconfined.

func init() {
	if len(os.Args) > 1 && os.Args[1] == HoldArg {
		HoldMain(os.Args[2:])
	}
}

func TestResolveProgram(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "app", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "app", "bin", "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "app", "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/app/bin:/usr/bin:/bin"}
	for _, tc := range []struct{ name, want string }{
		{"/app/bin/tool", filepath.Join(root, "app/bin/tool")}, // in the root
		{"tool", filepath.Join(root, "app/bin/tool")},          // PATH, in the root
		{"/bin/sh", "/bin/sh"},                                 // a system binary of the host
		{"sh", "/usr/bin/sh"},
	} {
		got, err := resolveProgram(root, tc.name, env)
		if err != nil || got != tc.want {
			t.Errorf("resolveProgram(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, name := range []string{"/app/data", "/app/bin", "/no/such", "no-such-tool"} {
		if _, err := resolveProgram(root, name, env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("resolveProgram(%q): %v, want an error naming it", name, err)
		}
	}
}

func TestMembers(t *testing.T) {
	table := []ProcInfo{
		{Pid: 10, PPid: 1, Pgid: 10},  // the init
		{Pid: 11, PPid: 10, Pgid: 10}, // its child
		{Pid: 12, PPid: 11, Pgid: 12}, // a grandchild in a group of its own
		{Pid: 13, PPid: 12, Pgid: 12}, // and its child
		{Pid: 20, PPid: 1, Pgid: 20},  // an exec
		{Pid: 30, PPid: 1, Pgid: 30},  // not the task's
		{Pid: 31, PPid: 30, Pgid: 10}, // not a member's child, but in the init's group
	}
	if got, want := members(table, []int{10, 20}), []int{10, 11, 12, 13, 20, 31}; !slices.Equal(got, want) {
		t.Errorf("members = %v, want %v", got, want)
	}
}

// heldTask creates a task running script under the backend, with its
// output on a pipe.
func heldTask(t *testing.T, script string) (*seatbeltBackend, int, *os.File, string) {
	t.Helper()
	return heldTaskWith(t, script, nil)
}

func heldTaskWith(t *testing.T, script string, rlimits []specs.POSIXRlimit) (*seatbeltBackend, int, *os.File, string) {
	t.Helper()
	root := t.TempDir()
	b, err := newSeatbeltBackend(SeatbeltOptions{Confine: Unconfined})
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{ID: "held", Rootfs: []mount.Mount{{Type: "bind", Source: root}},
		OCI: &specs.Spec{Process: &specs.Process{Args: []string{"sh", "-c", script}, Cwd: "/", Env: []string{"PATH=/usr/bin:/bin", "ROOT=" + root}, Rlimits: rlimits}}}
	pid, err := b.createHeld(spec, t.TempDir(), Stdio{Stdout: outW, Stderr: outW})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.killAll(); outR.Close() })
	return b, pid, outR, root
}

func reap(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatalf("wait for %d: %v", pid, err)
	}
	return ws
}

func TestHeldInitRunsOnlyAtStart(t *testing.T) {
	b, pid, out, root := heldTask(t, `echo started in "$PWD"; touch "$ROOT/ran"; exit 3`)
	// Created: the process exists, in a session of its own, and is the
	// hold, not the workload.
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("held init %d: session %d, %v; want a session of its own", pid, sid, err)
	}
	// (Polled: under -race the hold may re-exec itself once, its command
	// line briefly empty.)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if strings.Contains(string(cmdline), HoldArg) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("created init runs %q, want the hold", cmdline)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
		t.Fatal("the workload ran before start")
	}
	if got, err := b.start(); err != nil || got != 0 {
		t.Fatalf("start = %d, %v", got, err)
	}
	if _, err := b.start(); err == nil {
		t.Error("a second start succeeded")
	}
	ws := reap(t, pid) // the same pid: the hold exec'd the workload
	if ws.ExitStatus() != 3 {
		t.Errorf("exit %v, want 3", ws)
	}
	b2, err := io.ReadAll(out)
	if err != nil || string(b2) != "started in "+root+"\n" {
		t.Errorf("output %q, %v; want it started in the root %s", b2, err, root)
	}
}

func TestHeldInitNeverStartedRunsNothing(t *testing.T) {
	b, pid, _, root := heldTask(t, `touch "$ROOT/ran"`)
	if err := b.cleanup(); err != nil { // what a delete before start does
		t.Fatal(err)
	}
	if ws := reap(t, pid); ws.ExitStatus() != 1 {
		t.Errorf("held init exit %v, want 1", ws)
	}
	if _, err := os.Stat(filepath.Join(root, "ran")); err == nil {
		t.Error("the workload ran although the task never started")
	}
	if _, err := b.start(); err == nil {
		t.Error("start after cleanup succeeded")
	}
}

func TestCreateNamesAMissingProgram(t *testing.T) {
	b, err := newSeatbeltBackend(SeatbeltOptions{Confine: Unconfined})
	if err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{ID: "m", Rootfs: []mount.Mount{{Type: "bind", Source: t.TempDir()}},
		OCI: &specs.Spec{Process: &specs.Process{Args: []string{"/app/missing"}, Cwd: "/"}}}
	if _, err := b.createHeld(spec, t.TempDir(), Stdio{}); err == nil || !strings.Contains(err.Error(), "/app/missing") {
		t.Errorf("create: %v, want an error naming /app/missing", err)
	}
	spec.OCI.Process = &specs.Process{Args: []string{"/bin/sh"}, Cwd: "/no/dir"}
	if _, err := b.createHeld(spec, t.TempDir(), Stdio{}); err == nil || !strings.Contains(err.Error(), "/no/dir") {
		t.Errorf("create: %v, want an error naming the working dir", err)
	}
}

// TestSandboxExecCommandLine: what darwin runs for a process — the
// resolved program under /usr/bin/sandbox-exec with the task's profile,
// a terminal allowed only to a process that has one.
func TestSandboxExecCommandLine(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "app", "run"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := newSeatbeltBackend(SeatbeltOptions{Hold: []string{"/unused"}})
	if err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{ID: "argv", Rootfs: []mount.Mount{{Type: "bind", Source: root}},
		OCI: &specs.Spec{Process: &specs.Process{Args: []string{"/app/run", "-x"}, Cwd: "/app"}}}
	if b.policy, err = seatbeltPolicy(spec); err != nil {
		t.Fatal(err)
	}
	for _, tty := range []bool{false, true} {
		p := *spec.OCI.Process
		p.Terminal = tty
		argv, dir, err := b.command(&p)
		if err != nil {
			t.Fatal(err)
		}
		if dir != filepath.Join(root, "app") {
			t.Errorf("working dir %s, want %s/app", dir, root)
		}
		n := len(argv)
		if n < 7 || argv[0] != "/usr/bin/sandbox-exec" || argv[1] != "-p" || argv[3] != "-D" || argv[4] != "ROOT="+root ||
			!slices.Equal(argv[n-3:], []string{"--", filepath.Join(root, "app", "run"), "-x"}) {
			t.Fatalf("argv %q", argv)
		}
		profile := argv[2]
		if !strings.HasPrefix(profile, "(version 1)\n(deny default)") || strings.Contains(profile, root) {
			t.Errorf("profile is not deny-default or splices the root in:\n%s", profile)
		}
		if got := strings.Contains(profile, "/dev/ptmx"); got != tty {
			t.Errorf("terminal %v: profile allows the terminal devices: %v", tty, got)
		}
	}
}

// TestRlimitsApplied: the hold sets the process's rlimits before it execs
// the workload, for the init and for an exec; one darwin lacks is refused
// at create, naming it.
func TestRlimitsApplied(t *testing.T) {
	limits := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 123, Hard: 456}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}}
	b, pid, out, _ := heldTaskWith(t, `ulimit -n; ulimit -Hn; ulimit -c`, limits)
	if _, err := b.start(); err != nil {
		t.Fatal(err)
	}
	reap(t, pid)
	if got, _ := io.ReadAll(out); string(got) != "123\n456\n0\n" {
		t.Errorf("init's limits %q, want 123 456 0", got)
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pid, err = b.execConfined(0, &specs.Process{Args: []string{"sh", "-c", "ulimit -n"}, Cwd: "/", Env: []string{"PATH=/usr/bin:/bin"},
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 77, Hard: 77}}}, Stdio{Stdout: outW, Stderr: outW})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	reap(t, pid)
	if got, _ := io.ReadAll(outR); string(got) != "77\n" {
		t.Errorf("exec's limit %q, want 77", got)
	}
	outR.Close()

	bad := &specs.Process{Args: []string{"true"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_RTPRIO", Soft: 1, Hard: 1}}}
	if _, err := b.holdCommand(bad, []string{"/usr/bin/true"}); err == nil || !strings.Contains(err.Error(), "RLIMIT_RTPRIO") {
		t.Errorf("RLIMIT_RTPRIO: %v, want an error naming it", err)
	}
}

// TestUserApplied (root): the hold switches to the process's user — a
// name from the rootfs's /etc/passwd and /etc/group for the init, numeric
// ids with additional groups for an exec; an unknown name fails create.
func TestUserApplied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root; CI runs as root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("web:x:1234:2345::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "group"), []byte("web:x:2345:\nextra:x:3456:web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := newSeatbeltBackend(SeatbeltOptions{Confine: Unconfined})
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin"}
	spec := TaskSpec{ID: "user", Rootfs: []mount.Mount{{Type: "bind", Source: root}},
		OCI: &specs.Spec{Annotations: map[string]string{sandbox.AnnotationUser: "web"},
			Process: &specs.Process{Args: []string{"sh", "-c", "id -u; id -g; id -G"}, Cwd: "/", Env: env}}}
	pid, err := b.createHeld(spec, t.TempDir(), Stdio{Stdout: outW, Stderr: outW})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.killAll)
	if _, err := b.start(); err != nil {
		t.Fatal(err)
	}
	reap(t, pid)
	if got, _ := io.ReadAll(outR); string(got) != "1234\n2345\n2345 3456\n" {
		t.Errorf("init ran as %q, want uid 1234, gid 2345, groups 2345 3456", got)
	}
	outR.Close()

	outR, outW, err = os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pid, err = b.execConfined(0, &specs.Process{Args: []string{"sh", "-c", "id -u; id -g; id -G"}, Cwd: "/", Env: env,
		User: specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{100}}}, Stdio{Stdout: outW, Stderr: outW})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	reap(t, pid)
	if got, _ := io.ReadAll(outR); string(got) != "65534\n65534\n65534 100\n" {
		t.Errorf("exec ran as %q, want 65534, 65534, groups 65534 100", got)
	}
	outR.Close()

	if _, err := b.execConfined(0, &specs.Process{Args: []string{"true"}, Cwd: "/", Env: env, User: specs.User{Username: "nosuchuser"}}, Stdio{}); err == nil ||
		!strings.Contains(err.Error(), "nosuchuser") {
		t.Errorf("unknown user: %v, want an error naming it", err)
	}
}
