package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/go-openapi/loads"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berth-dev/berth/sdk/network"
)

// The container tests drive the berth binary against a real daemon with the
// real plugins (api-grpc, lifecycle-local, resources-cgroup,
// snapshot-overlay, isolation-sandbox) and the demo image
// (scripts/demo-image.sh). Root only.

const demoImage = "berth.local/demo:latest"

// containersConfig is the shipped layout with this test's own directories
// and cgroup parent (%s is the test's dir; the parent is filled in).
const containersConfig = `
berth {
  state_dir   = "%s/state"
  runtime_dir = "%s/run"
  log_level   = "debug"
  NETWORK_DEFAULTS
}
plugin "api" "grpc" {
  rest_address = "127.0.0.1:0"
}
plugin "resources" "cgroup" {
  parent = "CGROUP_PARENT"
}
plugin "snapshot" "overlay" {}
plugin "isolation" "sandbox" {
  default     = true
  snapshotter = "overlay"
}
plugin "lifecycle" "local" {
  restart_backoff = "50ms"
}
`

var buildInitOnce sync.Once
var buildInitErr error

// containerEnv starts a daemon with the container plugins and imports the
// demo image. Every container left is removed and the cgroup parent is
// deleted at the end.
func containerEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces, cgroups and overlay mounts (CI runs as root)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static missing (scripts/install-deps.sh installs it): the demo image needs it")
	}
	needSandboxInit(t)
	parent := fmt.Sprintf("berth-clitest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	return startDaemon(t, strings.NewReplacer("CGROUP_PARENT", parent, "NETWORK_DEFAULTS", testNetworkDefaults('c')).Replace(containersConfig), parent)
}

// needSandboxInit builds berth-sandbox-init into the tests' bin dir, once.
func needSandboxInit(t *testing.T) {
	t.Helper()
	buildInitOnce.Do(func() {
		cmd := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`,
			"-o", filepath.Join(binDir, "berth-sandbox-init"), "../../../cmd/berth-sandbox-init")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildInitErr = fmt.Errorf("build berth-sandbox-init: %v\n%s", err, out)
		}
	})
	if buildInitErr != nil {
		t.Fatal(buildInitErr)
	}
}

// startDaemon makes a test env of config (whose resources cgroup parent
// is parent), builds the demo image's rootfs, starts the daemon, imports
// the image and at once runs a first container (`run --rm [warmUpArgs]
// IMG true`): lifecycle-local dials its handles at first use, and
// go-plugin drops a handle nobody dials within 5 s (NOTES, "Known bug").
// At the end every container and network goes (their bridges, rules and
// helpers with them), the daemon stops and the cgroup parent, which the
// resources plugin leaves empty behind, is removed.
func startDaemon(t *testing.T, config, parent string, warmUpArgs ...string) *env {
	t.Helper()
	e := newEnv(t, config)
	t.Cleanup(func() {
		if out, _, code := e.berth("ps", "-a", "-q"); code == 0 {
			for _, id := range strings.Fields(out) {
				_, _, _ = e.berth("rm", "-f", id)
			}
		}
		_, _, _ = e.berth("network", "prune", "-f")
		_, _, _ = e.berth("network", "rm", network.DefaultNetwork)
		_, _, _ = e.berth("system", "stop")
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
		dirs = append(dirs, "/sys/fs/cgroup/"+parent)
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	})
	// The rootfs is built first (its go build is the slow part).
	demoImageScript := func(args ...string) {
		cmd := exec.Command("../../../scripts/demo-image.sh", args...)
		cmd.Env = append(os.Environ(), "BERTH="+filepath.Join(binDir, "berth"), "BERTH_CONFIG="+e.config)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("demo-image.sh %v: %v\n%s", args, err, out)
		}
	}
	demoImageScript("--rootfs", filepath.Join(e.dir, "rootfs-warmup"))
	e.mustBerth("system", "start")
	demoImageScript()
	e.mustBerth(append(append([]string{"run", "--rm"}, warmUpArgs...), demoImage, "true")...)
	return e
}

// warmUp runs one container right after a daemon start, so that the
// lifecycle plugin dials every handle in time (see containerEnv).
func (e *env) warmUp() {
	e.t.Helper()
	e.mustBerth("run", "--rm", demoImage, "true")
}

// berthIn runs berth with stdin and returns stdout, stderr and the exit code.
func (e *env) berthIn(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "berth"), append([]string{"--config", e.config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("berth %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// psEntries is `ps -a --format json`.
func (e *env) psEntries() []psEntry {
	e.t.Helper()
	var ps []psEntry
	if err := json.Unmarshal([]byte(e.mustBerth("ps", "-a", "--format", "json")), &ps); err != nil {
		e.t.Fatal(err)
	}
	return ps
}

func (e *env) container(name string) psEntry {
	e.t.Helper()
	c, ok := e.find(name)
	if !ok {
		e.t.Fatalf("no container %s in ps -a", name)
	}
	return c
}

func (e *env) find(name string) (psEntry, bool) {
	e.t.Helper()
	for _, c := range e.psEntries() {
		if c.Name == name {
			return c, true
		}
	}
	return psEntry{}, false
}

// lastCount is the last number a counter container wrote to its log.
func (e *env) lastCount(name string) int {
	e.t.Helper()
	lines := strings.Fields(e.mustBerth("logs", "-n", "1", name))
	if len(lines) == 0 {
		return -1
	}
	n, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil {
		e.t.Fatalf("counter log line %q", lines)
	}
	return n
}

const counterScript = `i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done`

func TestContainerCommands(t *testing.T) {
	e := containerEnv(t)

	t.Run("exit codes and output", func(t *testing.T) {
		e.t = t
		out, errOut, code := e.berth("run", demoImage)
		if code != 0 || !strings.Contains(out, "Hello from Berth's demo image") {
			t.Fatalf("run IMG: exit %d\n%s%s", code, out, errOut)
		}
		out, errOut, code = e.berth("run", "--name", "three", demoImage, "sh", "-c", "echo out; echo err >&2; exit 3")
		if code != 3 || out != "out\n" || errOut != "err\n" {
			t.Fatalf("exit 3: code %d stdout %q stderr %q", code, out, errOut)
		}
		if c := e.container("three"); c.State != "stopped" || c.ExitCode != 3 {
			t.Fatalf("ps shows %+v", c)
		}
		if _, _, code := e.berth("run", demoImage, "/no/such/binary"); code != 127 {
			t.Fatalf("missing binary: exit %d; want 127", code)
		}
		// Errors are one readable line, not gRPC text.
		_, errOut, code = e.berth("pause", "three")
		if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || strings.Contains(errOut, "rpc error") ||
			!strings.Contains(errOut, "three is stopped") {
			t.Fatalf("pause of a stopped container: exit %d, stderr %q", code, errOut)
		}
		_, errOut, _ = e.berth("start", "nosuch")
		if strings.Contains(errOut, "rpc error") || !strings.Contains(errOut, "nosuch") {
			t.Fatalf("start of a missing container: %q", errOut)
		}
	})

	t.Run("ulimit, device, security-opt", func(t *testing.T) {
		e.t = t
		out, errOut, code := e.berth("run", "--rm", "--ulimit", "nofile=1024:2048", demoImage, "sh", "-c", "ulimit -n; ulimit -Hn")
		if code != 0 || out != "1024\n2048\n" {
			t.Fatalf("--ulimit nofile=1024:2048: exit %d, stdout %q, stderr %q; want 1024 and 2048", code, out, errOut)
		}
		out, errOut, code = e.berth("run", "--rm", "--device", "/dev/null:/dev/mynull", demoImage, "sh", "-c", "echo x > /dev/mynull && echo ok")
		if code != 0 || out != "ok\n" {
			t.Fatalf("--device /dev/null:/dev/mynull: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		// A read-only mapping of a device outside Docker's default rules
		// (opening loop-control does nothing): the cgroup rule allows
		// opening it for reading and refuses opening it for writing.
		if _, err := os.Stat("/dev/loop-control"); err == nil {
			out, errOut, code = e.berth("run", "--rm", "--device", "/dev/loop-control:/dev/lc:r", demoImage, "sh", "-c",
				"exec 3</dev/lc && echo readable; exec 4>/dev/lc && echo writable")
			if out != "readable\n" || !strings.Contains(errOut, "Operation not permitted") {
				t.Fatalf("--device /dev/loop-control:/dev/lc:r: exit %d, stdout %q, stderr %q; want readable only", code, out, errOut)
			}
		}
		// Docker's default seccomp profile denies unshare without
		// CAP_SYS_ADMIN; seccomp=unconfined lifts it.
		_, errOut, code = e.berth("run", "--rm", demoImage, "unshare", "-U", "true")
		if code == 0 {
			t.Fatalf("unshare -U under the default seccomp profile succeeded; want EPERM (stderr %q)", errOut)
		}
		if _, errOut, code = e.berth("run", "--rm", "--security-opt", "seccomp=unconfined", demoImage, "unshare", "-U", "true"); code != 0 {
			t.Fatalf("unshare -U with seccomp=unconfined: exit %d, stderr %q", code, errOut)
		}
		// A profile file is read by the CLI: this one denies mkdir only.
		profile := filepath.Join(t.TempDir(), "profile.json")
		if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code = e.berth("run", "--rm", "--security-opt", "seccomp="+profile, demoImage, "sh", "-c", "mkdir /tmp/d || echo denied; unshare -U true && echo unshared")
		if code != 0 || out != "denied\nunshared\n" {
			t.Fatalf("seccomp=%s: exit %d, stdout %q, stderr %q; want mkdir denied and unshare allowed", profile, code, out, errOut)
		}
		out, errOut, code = e.berth("run", "--rm", "--security-opt", "no-new-privileges", demoImage, "grep", "NoNewPrivs", "/proc/self/status")
		if code != 0 || strings.Join(strings.Fields(out), " ") != "NoNewPrivs: 1" {
			t.Fatalf("no-new-privileges: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		out, errOut, code = e.berth("run", "--rm", "--security-opt", "label=disable", demoImage, "grep", "NoNewPrivs", "/proc/self/status")
		if code != 0 || strings.Join(strings.Fields(out), " ") != "NoNewPrivs: 0" || !strings.Contains(errOut, "label=disable ignored") {
			t.Fatalf("label=disable: exit %d, stdout %q, stderr %q; want a warning and no no-new-privileges", code, out, errOut)
		}
		if _, errOut, code = e.berth("run", "--rm", "--security-opt", "systempaths=unconfined", demoImage, "true"); code == 0 || !strings.Contains(errOut, "systempaths=unconfined") {
			t.Fatalf("unknown security-opt: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("oom-score-adj", func(t *testing.T) {
		e.t = t
		// The container and its execs get the asked score; the default
		// is an explicit 0, whatever the daemon's own.
		e.mustBerth("run", "-d", "--oom-score-adj", "500", "--name", "oomadj", demoImage, "sleep", "1000")
		defer e.berth("rm", "-f", "oomadj")
		if out := e.mustBerth("exec", "oomadj", "cat", "/proc/1/oom_score_adj", "/proc/self/oom_score_adj"); out != "500\n500\n" {
			t.Errorf("--oom-score-adj 500: init and exec read %q", out)
		}
		if out := e.mustBerth("run", "--rm", demoImage, "cat", "/proc/self/oom_score_adj"); out != "0\n" {
			t.Errorf("default oom_score_adj %q, want 0", out)
		}
		if _, errOut, code := e.berth("run", "--rm", "--oom-score-adj", "1001", demoImage, "true"); code == 0 || !strings.Contains(errOut, "-1000..1000") {
			t.Errorf("--oom-score-adj 1001: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("init", func(t *testing.T) {
		e.t = t
		// --init: Berth's init is PID 1 and the command its child.
		out, errOut, code := e.berth("run", "--rm", "--init", demoImage, "ps", "-o", "pid,comm")
		if code != 0 || !regexp.MustCompile(`(?m)^\s*1\s+berth-init$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^\s*\d+\s+ps$`).MatchString(out) {
			t.Fatalf("run --init ps: exit %d, stdout %q, stderr %q; want pid 1 berth-init", code, out, errOut)
		}
		if _, errOut, code = e.berth("run", "--rm", "--init", demoImage, "sh", "-c", "exit 7"); code != 7 {
			t.Fatalf("run --init sh -c 'exit 7': exit %d, stderr %q", code, errOut)
		}
		// The init is bound read-only, also into a read-only rootfs, and
		// runs as the container's user.
		out, errOut, code = e.berth("run", "--rm", "--init", "--read-only", "-u", "65534", demoImage, "sh", "-c",
			"id -u; echo x > /sbin/berth-init || echo refused")
		if code != 0 || out != "65534\nrefused\n" {
			t.Fatalf("run --init --read-only -u 65534: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		// sleep as PID 1 ignores TERM (stop ends it with SIGKILL: 137);
		// under the init it is not PID 1, so the forwarded TERM ends it.
		e.mustBerth("run", "-d", "--init", "--name", "with-init", demoImage, "sleep", "1000")
		e.mustBerth("stop", "-t", "60", "with-init")
		if c := e.container("with-init"); c.State != "stopped" || c.ExitCode != 128+15 {
			t.Fatalf("with-init after stop: %s with %d; want stopped by SIGTERM (143)", c.State, c.ExitCode)
		}
		var got []struct{ Config struct{ Init bool } }
		if err := json.Unmarshal([]byte(e.mustBerth("inspect", "with-init")), &got); err != nil || len(got) != 1 || !got[0].Config.Init {
			t.Fatalf("inspect with-init: %+v, %v; want Config.Init true", got, err)
		}
		e.mustBerth("rm", "with-init")
	})

	t.Run("events and inspect", func(t *testing.T) {
		e.t = t
		events := exec.Command(filepath.Join(binDir, "berth"), "--config", e.config, "events", "--format", "json")
		var mu sync.Mutex
		var buf bytes.Buffer
		events.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
		if err := events.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = events.Process.Kill(); _ = events.Wait() }()
		// The subscription may still be connecting: run until its events show.
		eventually(t, "create, start and exit events", func() bool {
			_, _, _ = e.berth("run", "--rm", demoImage, "sh", "-c", "exit 6")
			mu.Lock()
			defer mu.Unlock()
			out := buf.String()
			return strings.Contains(out, `"Kind":"create"`) && strings.Contains(out, `"Kind":"start"`) &&
				strings.Contains(out, `"Kind":"exit"`) && strings.Contains(out, `"ExitCode":6`) && strings.Contains(out, `"Kind":"delete"`)
		})
		var got []struct {
			ID     string
			Name   string
			State  string
			Config struct{ Cmd []string }
		}
		if err := json.Unmarshal([]byte(e.mustBerth("inspect", "three")), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Name != "three" || got[0].State != "stopped" || len(got[0].ID) != 64 || got[0].Config.Cmd[0] != "sh" {
			t.Fatalf("inspect three = %+v", got)
		}
	})

	t.Run("run pulls a missing image", func(t *testing.T) {
		e.t = t
		reg := newLoopbackRegistry(t)
		img, err := random.Image(1<<10, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref := reg.push(t, "cli/pulled:v1", img)
		digest, _ := img.Digest()
		// The random image has no command to run: what matters is the pull.
		_, errOut, code := e.berth("run", "--name", "pulled", ref, "/no/such/binary")
		if !strings.Contains(errOut, "Unable to find image "+ref+" locally") || code != 127 {
			t.Fatalf("run of a missing image: exit %d\n%s", code, errOut)
		}
		if out := e.mustBerth("images"); !strings.Contains(out, digest.Hex[:12]) {
			t.Fatalf("the pulled image is not listed:\n%s", out)
		}
	})

	t.Run("system df and prune", func(t *testing.T) {
		e.t = t
		df := func() diskUsage {
			t.Helper()
			var du diskUsage
			if err := json.Unmarshal([]byte(e.mustBerth("system", "df", "--format", "json")), &du); err != nil {
				t.Fatal(err)
			}
			return du
		}
		reg := newLoopbackRegistry(t)
		img := busyboxImage(t)
		ref := reg.push(t, "cli/prunable:v1", img)
		e.mustBerth("pull", ref)
		before := df()
		e.mustBerth("run", "--name", "prunable", demoImage, "true")
		e.mustBerth("run", "-d", "--name", "survivor", demoImage, "sleep", "1000")
		during := df()
		// The demo image is in use now, the busybox one (over 1 MiB) is not.
		if during.Containers.Count != before.Containers.Count+2 || during.Containers.Running != before.Containers.Running+1 ||
			during.Images.Count != before.Images.Count || during.Images.Size != before.Images.Size || during.Images.Active < 1 ||
			during.Images.Reclaimable >= during.Images.Size || during.Images.Reclaimable < 1<<20 {
			t.Fatalf("df before the containers %+v, with them %+v", before, during)
		}
		if out := e.mustBerth("system", "df"); !strings.Contains(out, "RECLAIMABLE") || !strings.Contains(out, "Containers") {
			t.Fatalf("system df table:\n%s", out)
		}
		// A second image pulled under the same name leaves the first one
		// with no name and no container: prune deletes its data.
		other, err := random.Image(1<<10, 1)
		if err != nil {
			t.Fatal(err)
		}
		reg.push(t, "cli/prunable:v1", other)
		e.mustBerth("pull", ref)

		// Without -f prune asks, and a "no" changes nothing.
		if _, errOut, code := e.berthIn("n\n", "system", "prune"); code == 0 || !strings.Contains(errOut, "prune cancelled") {
			t.Fatalf("system prune answered no: code %d, %q", code, errOut)
		}
		if _, ok := e.find("prunable"); !ok {
			t.Fatal("a cancelled prune removed a container")
		}
		out := e.mustBerth("system", "prune", "-f")
		if !strings.Contains(out, "Deleted containers:") || !strings.Contains(out, "Total reclaimed space: ") {
			t.Fatalf("system prune -f:\n%s", out)
		}
		if _, ok := e.find("prunable"); ok {
			t.Fatalf("the stopped container survived prune:\n%s", out)
		}
		if c := e.container("survivor"); c.State != "running" {
			t.Fatalf("prune touched a running container: %+v", c)
		}
		var freed int64
		if _, err := fmt.Sscanf(out[strings.LastIndex(out, "(")+1:], "%d bytes", &freed); err != nil || freed < 64<<10 {
			t.Fatalf("prune freed %d bytes (%v); want at least the image's busybox layer:\n%s", freed, err, out)
		}
		if after := df(); after.Images.Count != before.Images.Count || after.Containers.Count != after.Containers.Running {
			t.Fatalf("df after prune (no stopped container, as many images): %+v, before %+v", after, before)
		}
		e.mustBerth("rm", "-f", "survivor")
		e.mustBerth("rmi", ref)
	})

	t.Run("volumes, cp, export, top, update --restart, prune -a", func(t *testing.T) {
		e.t = t
		testVolumesFilesTop(t, e)
	})
	t.Run("logs -f across restarts, restart policies at daemon start", func(t *testing.T) {
		e.t = t
		testRestartPolicies(t, e)
	})

	t.Run("stdin pipe", func(t *testing.T) {
		e.t = t
		out, errOut, code := e.berthIn("hi\nthere\n", "run", "-i", "--rm", demoImage, "cat")
		if code != 0 || out != "hi\nthere\n" {
			t.Fatalf("echo hi | run -i cat: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("tty", func(t *testing.T) {
		e.t = t
		cmd := exec.Command(filepath.Join(binDir, "berth"), "--config", e.config, "run", "-it", "--name", "tty", demoImage, "sh")
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 33, Cols: 77})
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		var mu sync.Mutex
		var out bytes.Buffer
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := ptmx.Read(buf)
				mu.Lock()
				out.Write(buf[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		seen := func(s string) bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(out.String(), s) }
		// The shell may still be starting: repeat until it answers.
		eventually(t, "the shell answers through the terminal", func() bool {
			_, _ = io.WriteString(ptmx, "echo $((6*7))x; stty size\n")
			time.Sleep(300 * time.Millisecond)
			return seen("42x")
		})
		eventually(t, "the window size reaches the container", func() bool { return seen("33 77") })
		if _, err := io.WriteString(ptmx, "exit 5\n"); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			mu.Lock()
			t.Fatalf("run -it sh; exit 5: %v\n%q", err, out.String())
		}

		// Ctrl-P Ctrl-Q detaches; the container keeps running.
		cmd = exec.Command(filepath.Join(binDir, "berth"), "--config", e.config, "run", "-it", "--name", "detach", demoImage, "sh")
		ptmx2, err := pty.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx2.Close()
		go func() { _, _ = io.Copy(io.Discard, ptmx2) }()
		eventually(t, "the detach container runs", func() bool { c, ok := e.find("detach"); return ok && c.State == "running" })
		if _, err := ptmx2.Write([]byte{0x10, 0x11}); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("detach: berth exited with %v", err)
		}
		if c := e.container("detach"); c.State != "running" {
			t.Fatalf("after detach the container is %s", c.State)
		}

		// exec -it gets a terminal of the caller's size from its first
		// instruction (a command as short as stty has no time for a resize).
		execTTY := func() (string, error) {
			cmd := exec.Command(filepath.Join(binDir, "berth"), "--config", e.config, "exec", "-it", "detach", "stty", "-a")
			ptmx3, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 21, Cols: 99})
			if err != nil {
				t.Fatal(err)
			}
			defer ptmx3.Close()
			var out bytes.Buffer
			copied := make(chan struct{})
			go func() { _, _ = io.Copy(&out, ptmx3); close(copied) }()
			waitErr := cmd.Wait()
			select {
			case <-copied:
			case <-time.After(5 * time.Second): // the pty may stay open; what was read is enough
				_ = ptmx3.Close()
				<-copied
			}
			return out.String(), waitErr
		}
		got, waitErr := execTTY()
		if waitErr != nil {
			t.Fatalf("exec -it: %v; output %q", waitErr, got)
		}
		var execOut bytes.Buffer
		execOut.WriteString(got)
		if got := execOut.String(); !strings.Contains(got, "speed 38400 baud") || !strings.Contains(got, "rows 21; columns 99") {
			t.Fatalf("exec -it stty -a: %q; want a terminal's settings, 21 rows by 99 columns", got)
		}
		if out, errOut, _ := e.berth("exec", "detach", "stty", "-a"); !strings.Contains(errOut, "stty:") {
			t.Fatalf("exec without -t has a terminal: %q %q", out, errOut)
		}
	})

	t.Run("detach, logs -f, attach", func(t *testing.T) {
		e.t = t
		id := strings.TrimSpace(e.mustBerth("run", "-d", "-i", "--name", "echoer", demoImage, "sh", "-c", "echo ready; cat; echo bye"))
		if len(id) != 64 {
			t.Fatalf("run -d printed %q; want a 64-hex ID", id)
		}
		eventually(t, "logs show ready", func() bool { return strings.Contains(e.mustBerth("logs", "echoer"), "ready") })
		// logs -f follows until the container stops.
		follow := exec.Command(filepath.Join(binDir, "berth"), "--config", e.config, "logs", "-f", "--timestamps", "echoer")
		var fout bytes.Buffer
		follow.Stdout = &fout
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := e.berthIn("through-attach\n", "attach", "echoer")
		if code != 0 || !strings.Contains(out, "through-attach\nbye\n") {
			t.Fatalf("attach: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if err := follow.Wait(); err != nil {
			t.Fatalf("logs -f: %v", err)
		}
		if _, errOut, code := e.berth("attach", "echoer"); code != 1 || !strings.Contains(errOut, "container echoer is stopped; only a running container can be attached to") {
			t.Fatalf("attach to a stopped container: %d %q", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(fout.String()), "\n")
		if len(lines) != 3 || !strings.HasSuffix(lines[2], " bye") {
			t.Fatalf("logs -f --timestamps:\n%s", fout.String())
		}
		if _, err := time.Parse(time.RFC3339Nano, strings.Fields(lines[0])[0]); err != nil {
			t.Fatalf("timestamp: %v", err)
		}
	})

	t.Run("exec", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "target", "--hostname", "exec-host", demoImage, "sleep", "1000")
		out := e.mustBerth("exec", "-e", "GREETING=hey", "-w", "/tmp", "target", "sh", "-c", "echo $GREETING $(hostname) $(pwd)")
		if out != "hey exec-host /tmp\n" {
			t.Fatalf("exec output %q", out)
		}
		out, _, code := e.berthIn("piped\n", "exec", "-i", "target", "cat")
		if code != 0 || out != "piped\n" {
			t.Fatalf("exec -i cat: %d %q", code, out)
		}
		// exec exits with the command's code; -d does not wait for it.
		if out, errOut, code := e.berth("exec", "target", "sh", "-c", "echo before; exit 3"); code != 3 || out != "before\n" {
			t.Fatalf("exec sh -c 'exit 3': code %d stdout %q stderr %q; want 3", code, out, errOut)
		}
		if _, errOut, code := e.berth("exec", "target", "sh", "-c", "kill -KILL $$"); code != 128+9 {
			t.Fatalf("exec of a process killed by SIGKILL: code %d (%s); want 137", code, errOut)
		}
		if _, errOut, code := e.berth("exec", "-d", "target", "sh", "-c", "exit 4"); code != 0 {
			t.Fatalf("exec -d: code %d (%s); want 0", code, errOut)
		}
		e.mustBerth("exec", "-d", "target", "sh", "-c", "echo detached > /tmp/mark")
		eventually(t, "the detached exec ran", func() bool {
			out, _, _ := e.berth("exec", "target", "cat", "/tmp/mark")
			return out == "detached\n"
		})
	})

	t.Run("rename", func(t *testing.T) {
		e.t = t
		e.mustBerth("create", "--name", "before", demoImage, "true")
		e.mustBerth("create", "--name", "taken", demoImage, "true")
		id := e.container("before").ID
		e.mustBerth("rename", "before", "after")
		if c := e.container("after"); c.ID != id {
			t.Fatalf("renamed container has ID %s, want %s", c.ID, id)
		}
		if _, ok := e.find("before"); ok {
			t.Fatal("the old name is still listed")
		}
		_, errOut, code := e.berth("rename", "after", "taken")
		if code == 0 || !strings.Contains(errOut, `"taken" is already in use`) {
			t.Fatalf("rename onto a taken name: code %d, %q", code, errOut)
		}
		if c := e.container("after"); c.ID != id {
			t.Fatalf("a refused rename changed the container: %+v", c)
		}
		e.mustBerth("rm", "after", "taken")
	})

	t.Run("checkpoint", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "ck", demoImage, "sleep", "1000")
		// The sandbox has no checkpoint support (it says why): the CLI
		// prints that one line, and the container keeps running.
		_, errOut, code := e.berth("checkpoint", "ck")
		if code == 0 {
			t.Fatal("checkpoint succeeded, but the sandbox implements no checkpoint")
		}
		if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "berth: container ck cannot be checkpointed: ") ||
			!strings.Contains(errOut, "unavailable: ") || strings.Contains(errOut, "rpc error") {
			t.Fatalf("checkpoint error is not one plain line: %q", errOut)
		}
		if c := e.container("ck"); c.State != "running" {
			t.Fatalf("a failed checkpoint left the container %s", c.State)
		}
		_, errOut, code = e.berth("restore", "ck")
		if code == 0 || !strings.Contains(errOut, "container ck is running") {
			t.Fatalf("restore of a running container: code %d, %q", code, errOut)
		}
		e.mustBerth("rm", "-f", "ck")
	})

	t.Run("update", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "upd", "-m", "64m", "--pids-limit", "100", demoImage, "sleep", "1000")
		pid := e.container("upd").Pid
		if got := memoryLimitOf(t, pid); got != 64<<20 {
			t.Fatalf("memory limit before update: %d, want %d", got, 64<<20)
		}
		if out := e.mustBerth("update", "-m", "96m", "upd"); out != "upd\n" {
			t.Fatalf("update printed %q", out)
		}
		if got := memoryLimitOf(t, pid); got != 96<<20 {
			t.Fatalf("memory limit after update: %d, want %d", got, 96<<20)
		}
		var inspected []struct {
			Config struct {
				Limits struct{ MemoryBytes, Pids int64 }
			}
		}
		if err := json.Unmarshal([]byte(e.mustBerth("inspect", "upd")), &inspected); err != nil || len(inspected) != 1 {
			t.Fatalf("inspect upd: %v", err)
		}
		if l := inspected[0].Config.Limits; l.MemoryBytes != 96<<20 || l.Pids != 100 {
			t.Fatalf("limits after update (pids must stay): %+v", l)
		}
		if _, errOut, code := e.berth("update", "upd"); code == 0 || !strings.Contains(errOut, "give at least one limit") {
			t.Fatalf("update without flags: code %d, %q", code, errOut)
		}
		if _, errOut, code := e.berth("update", "-m", "lots", "upd"); code == 0 || !strings.Contains(errOut, "--memory") {
			t.Fatalf("update -m lots: code %d, %q", code, errOut)
		}
		e.mustBerth("rm", "-f", "upd")
	})

	t.Run("pause and unpause", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "counter", demoImage, "sh", "-c", counterScript)
		eventually(t, "the counter counts", func() bool { return e.lastCount("counter") >= 3 })
		e.mustBerth("pause", "counter")
		if c := e.container("counter"); c.State != "paused" {
			t.Fatalf("state after pause: %s", c.State)
		}
		frozen := e.lastCount("counter")
		time.Sleep(time.Second) // ten counts' worth
		if now := e.lastCount("counter"); now != frozen {
			t.Fatalf("a paused counter went from %d to %d", frozen, now)
		}
		e.mustBerth("unpause", "counter")
		eventually(t, "the counter resumes", func() bool { return e.lastCount("counter") > frozen })
	})

	t.Run("stop and kill", func(t *testing.T) {
		e.t = t
		// A process that ends on TERM exits with its own code; one that
		// ignores it is killed when the timeout passes.
		e.mustBerth("run", "-d", "--name", "polite", demoImage, "sh", "-c", `trap "exit 0" TERM; while true; do sleep 0.1; done`)
		e.mustBerth("run", "-d", "--name", "stubborn", demoImage, "sh", "-c", `trap "" TERM; while true; do sleep 0.1; done`)
		e.mustBerth("run", "-d", "--name", "usr1", demoImage, "sh", "-c", `trap "exit 9" USR1; while true; do sleep 0.1; done`)
		e.mustBerth("run", "-d", "--name", "victim", demoImage, "sleep", "1000")
		for _, n := range []string{"polite", "stubborn", "usr1"} {
			eventually(t, n+" runs its trap", func() bool {
				out, _, _ := e.berth("exec", n, "ps")
				return strings.Contains(out, "sleep")
			})
		}
		e.mustBerth("stop", "-t", "20", "polite")
		e.mustBerth("stop", "-t", "1", "stubborn")
		e.mustBerth("kill", "-s", "USR1", "usr1")
		e.mustBerth("kill", "victim")
		if out := e.mustBerth("wait", "usr1"); out != "9\n" {
			t.Fatalf("wait after kill -s USR1: %q", out)
		}
		for name, want := range map[string]int{"polite": 0, "stubborn": 137, "usr1": 9, "victim": 137} {
			if c := e.container(name); c.State != "stopped" || c.ExitCode != want {
				t.Errorf("%s: %s with %d; want stopped with %d", name, c.State, c.ExitCode, want)
			}
		}
	})

	t.Run("signals reach the container", func(t *testing.T) {
		e.t = t
		start := func(name string, args ...string) *exec.Cmd {
			cmd := exec.Command(filepath.Join(binDir, "berth"), append([]string{"--config", e.config, "run", "--name", name, demoImage}, args...)...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			eventually(t, name+" runs its loop", func() bool {
				out, _, _ := e.berth("exec", name, "ps")
				return strings.Contains(out, "sleep")
			})
			return cmd
		}
		// SIGINT to berth is forwarded: the container's trap sets the code.
		trapper := start("sig-trap", "sh", "-c", `trap "exit 11" INT; while true; do sleep 0.1; done`)
		if err := trapper.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := trapper.Wait(); err == nil || err.(*exec.ExitError).ExitCode() != 11 {
			t.Fatalf("run after SIGINT: %v; want exit 11", err)
		}
		// A pid 1 that ignores SIGINT: the third one leaves it running.
		sleeper := start("sig-ignore", "sleep", "1000")
		for range 3 {
			if err := sleeper.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // three separate signals, not one coalesced
		}
		if err := sleeper.Wait(); err == nil || err.(*exec.ExitError).ExitCode() != 130 {
			t.Fatalf("run after three SIGINTs: %v; want exit 130", err)
		}
		if c := e.container("sig-ignore"); c.State != "running" {
			t.Fatalf("sig-ignore is %s after berth left it", c.State)
		}
	})

	t.Run("restart on-failure:3", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "flaky", "--restart", "on-failure:3", demoImage, "sh", "-c", "echo attempt; exit 4")
		eventually(t, "three restarts", func() bool {
			c := e.container("flaky")
			return c.RestartCount == 3 && c.State == "stopped"
		})
		// No fourth: the log has four attempts and the count stays.
		time.Sleep(time.Second)
		c := e.container("flaky")
		if c.RestartCount != 3 || c.ExitCode != 4 || c.State != "stopped" {
			t.Fatalf("after the retries: %+v", c)
		}
		if n := strings.Count(e.mustBerth("logs", "flaky"), "attempt"); n != 4 {
			t.Fatalf("%d attempts logged; want 4", n)
		}
	})

	t.Run("rm", func(t *testing.T) {
		e.t = t
		if _, _, code := e.berth("run", "--rm", "--name", "ephemeral", demoImage, "sh", "-c", "exit 2"); code != 2 {
			t.Fatalf("run --rm exit %d; want 2", code)
		}
		for _, c := range e.psEntries() {
			if c.Name == "ephemeral" {
				t.Fatal("run --rm left its container")
			}
		}
		// -d --rm: the api plugin removes it when it stops.
		e.mustBerth("run", "-d", "--rm", "--name", "auto", demoImage, "sh", "-c", "sleep 0.5")
		eventually(t, "the -d --rm container to be removed", func() bool { _, ok := e.find("auto"); return !ok })
		if _, errOut, code := e.berth("run", "-d", "--rm", "--restart", "always", demoImage, "true"); code == 0 || !strings.Contains(errOut, "conflict") {
			t.Fatalf("--rm with --restart: %d %q", code, errOut)
		}
		e.mustBerth("run", "-d", "--name", "busy", demoImage, "sleep", "1000")
		if _, errOut, code := e.berth("rm", "busy"); code == 0 || !strings.Contains(errOut, "busy") {
			t.Fatalf("rm of a running container: %d %q", code, errOut)
		}
		e.mustBerth("rm", "-f", "busy")
		if _, errOut, code := e.berth("rm", "busy"); code == 0 || !strings.Contains(errOut, "no such container") {
			t.Fatalf("second rm: %d %q", code, errOut)
		}
	})

	t.Run("REST gateway", func(t *testing.T) {
		e.t = t
		e.mustBerth("run", "-d", "--name", "rest-running", demoImage, "sleep", "1000")
		e.mustBerth("run", "--name", "rest-stopped", demoImage, "true")
		restSocket := filepath.Join(e.dir, "run", "api-grpc", "api-rest.sock")
		fi, err := os.Stat(restSocket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o007 != 0 {
			t.Fatalf("REST socket mode %v lets others in", fi.Mode().Perm())
		}
		curl := func(path string) (int, []byte) {
			t.Helper()
			out, err := exec.Command("curl", "-sS", "--unix-socket", restSocket, "-w", "\n%{http_code}", "http://x"+path).Output()
			if err != nil {
				t.Fatalf("curl %s: %v", path, err)
			}
			i := bytes.LastIndexByte(out, '\n')
			code, _ := strconv.Atoi(string(out[i+1:]))
			return code, out[:i]
		}
		ids := func(path string) []string {
			code, body := curl(path)
			var resp struct{ Containers []struct{ ID string } }
			if err := json.Unmarshal(body, &resp); code != 200 || err != nil {
				t.Fatalf("GET %s: %d %v\n%s", path, code, err, body)
			}
			var out []string
			for _, c := range resp.Containers {
				out = append(out, c.ID)
			}
			slices.Sort(out)
			return out
		}
		var all, running []string
		for _, c := range e.psEntries() {
			all = append(all, c.ID)
			if c.State == "running" || c.State == "paused" {
				running = append(running, c.ID)
			}
		}
		slices.Sort(all)
		slices.Sort(running)
		if len(all) == len(running) || len(running) == 0 {
			t.Fatalf("want running and stopped containers to compare; have %d of %d running", len(running), len(all))
		}
		if got := ids("/v1/containers?filter.all=true"); !slices.Equal(got, all) {
			t.Errorf("REST all = %v\nps -a = %v", got, all)
		}
		if got := ids("/v1/containers"); !slices.Equal(got, running) {
			t.Errorf("REST running = %v\nps = %v", got, running)
		}
		if code, body := curl("/v1/containers/no-such-container"); code != 404 || !bytes.Contains(body, []byte("no-such-container")) {
			t.Errorf("GET of a missing container: %d %s", code, body)
		}
		code, body := curl("/v1/containers/rest-stopped/logs")
		if code != 200 {
			t.Errorf("GET logs: %d %s", code, body)
		}
		e.mustBerth("run", "--name", "rest-logs", demoImage, "echo", "via-rest")
		code, body = curl("/v1/containers/rest-logs/logs")
		if code != 200 || !bytes.Contains(body, []byte(`"stream":"stdout"`)) || !bytes.Contains(body, []byte(`"data":"dmlhLXJlc3QK"`)) {
			t.Errorf("GET logs: %d %s", code, body)
		}

		// The same gateway on loopback TCP (rest_address), as listed in
		// the daemon's endpoints.
		var st struct {
			Endpoints []struct{ Kind, Address string }
		}
		if err := json.Unmarshal([]byte(e.mustBerth("system", "status", "--format", "json")), &st); err != nil {
			t.Fatal(err)
		}
		var tcp string
		for _, ep := range st.Endpoints {
			if ep.Kind == "rest" && strings.HasPrefix(ep.Address, "http://127.0.0.1:") {
				tcp = ep.Address
			}
		}
		if tcp == "" {
			t.Fatalf("no loopback REST endpoint in %+v", st.Endpoints)
		}
		resp, err := http.Get(tcp + "/v1/version")
		if err != nil {
			t.Fatal(err)
		}
		vbody, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(vbody, []byte(`"apiVersion"`)) {
			t.Fatalf("GET %s/v1/version: %d %s", tcp, resp.StatusCode, vbody)
		}

		// The OpenAPI document parses and validates.
		code, body = curl("/openapi.json")
		if code != 200 {
			t.Fatalf("GET /openapi.json: %d", code)
		}
		doc, err := loads.Analyzed(json.RawMessage(body), "2.0")
		if err != nil {
			t.Fatalf("openapi.json does not parse: %v", err)
		}
		if err := validate.Spec(doc, strfmt.Default); err != nil {
			t.Fatalf("openapi.json does not validate: %v", err)
		}
		if _, ok := doc.Spec().Paths.Paths["/v1/containers/{ref}/logs"]; !ok {
			t.Fatal("openapi.json lacks /v1/containers/{ref}/logs")
		}
	})

	t.Run("ten in parallel", func(t *testing.T) {
		e.t = t
		var wg sync.WaitGroup
		errs := make(chan string, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf("parallel-%d", i)
				cmd := exec.Command(filepath.Join(binDir, "berth"), "--config", e.config, "run", "--rm", "--name", want, demoImage, "sh", "-c", "echo $(hostname) "+want)
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.HasSuffix(string(out), " "+want+"\n") {
					errs <- fmt.Sprintf("%s: %v %q", want, err, out)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for msg := range errs {
			t.Error(msg)
		}
	})
}

// The daemon and its plugins are killed with SIGKILL while three containers
// run; one of them exits meanwhile. After `berth system start`, ps shows
// the other two running with their pids, and the third stopped with its
// real exit code.
func TestContainersOutliveADaemonCrash(t *testing.T) {
	e := containerEnv(t)
	for _, n := range []string{"keep-1", "keep-2"} {
		e.mustBerth("run", "-d", "--name", n, demoImage, "sleep", "1000")
	}
	e.mustBerth("run", "-d", "--name", "quits", demoImage, "sh", "-c", `trap "exit 7" TERM; while true; do sleep 0.1; done`)
	eventually(t, "quits runs its trap", func() bool {
		out, _, _ := e.berth("exec", "quits", "ps")
		return strings.Contains(out, "sleep")
	})
	before := map[string]psEntry{}
	for _, c := range e.psEntries() {
		before[c.Name] = c
	}

	var st struct {
		Pid     int
		Plugins []struct{ Pid int }
	}
	if err := json.Unmarshal([]byte(e.mustBerth("system", "status", "--format", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(st.Plugins, struct{ Pid int }{st.Pid}) {
		eventually(t, fmt.Sprintf("pid %d to be gone", p.Pid), func() bool { return !processAlive(p.Pid) })
	}
	// The container's process ends while no daemon runs.
	if err := syscall.Kill(before["quits"].Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "quits to exit", func() bool { return !processAlive(before["quits"].Pid) })

	e.mustBerth("system", "start")
	e.warmUp()
	eventually(t, "ps to show the reconciled containers", func() bool {
		after := map[string]psEntry{}
		for _, c := range e.psEntries() {
			after[c.Name] = c
		}
		q := after["quits"]
		return q.State == "stopped" && after["keep-1"].State == "running" && after["keep-2"].State == "running"
	})
	for _, c := range e.psEntries() {
		switch c.Name {
		case "quits":
			if c.ExitCode != 7 {
				t.Errorf("quits exited meanwhile with 7; ps shows %d", c.ExitCode)
			}
		default:
			if c.Pid != before[c.Name].Pid || !processAlive(c.Pid) {
				t.Errorf("%s: pid %d after the crash, %d before", c.Name, c.Pid, before[c.Name].Pid)
			}
		}
	}
	// They are still managed: stop works.
	e.mustBerth("stop", "-t", "1", "keep-1")
}

// Without a lifecycle plugin the container commands say so in one line.
func TestContainerCommandsWithoutLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon's state and runtime dirs are created with root-only modes (CI runs as root)")
	}
	e := newEnv(t, imagesConfig)
	e.mustBerth("system", "start")
	_, errOut, code := e.berth("ps")
	if code != 1 || errOut != "berth: the api plugin does not serve containers: no lifecycle plugin is configured (enable plugin \"lifecycle\" \"local\" in config.hcl)\n" {
		t.Fatalf("ps without lifecycle: exit %d, stderr %q", code, errOut)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// memoryLimitOf reads the memory limit of process pid's cgroup (v1 memory
// controller, or v2's memory.max).
func memoryLimitOf(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	var file string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if slices.Contains(strings.Split(parts[1], ","), "memory") {
			file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")
			break
		}
		if parts[0] == "0" && parts[1] == "" && file == "" {
			file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.max")
		}
	}
	if file == "" {
		t.Fatalf("no memory cgroup for pid %d in %q", pid, raw)
	}
	v, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", file, v)
	}
	return n
}

// busyboxImage is a random image with /bin/busybox (the host's static
// one) on top: content no other test image shares, which runs.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(bb); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	base, err := random.Image(1<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
