package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testVolumesFilesTop is TestContainerCommands' "volumes, cp, export,
// top, update --restart, prune -a" subtest: named and anonymous volumes
// through their life (made on first use, filled from the image, data kept
// across containers, removal refused while used, prune), cp both ways for
// a running and a stopped container with symlink escapes refused, export,
// top, update --restart and system prune -a. Root only, like its parent.
func testVolumesFilesTop(t *testing.T, e *env) {
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	host := t.TempDir()
	type volumeView struct {
		Name, Driver, Mountpoint string
		Labels                   map[string]string
		UsedBy                   []string
	}
	volumes := func() map[string]volumeView {
		t.Helper()
		var vs []volumeView
		if err := json.Unmarshal([]byte(e.mustBerth("volume", "ls", "--format", "json")), &vs); err != nil {
			t.Fatal(err)
		}
		out := map[string]volumeView{}
		for _, v := range vs {
			out[v.Name] = v
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		out, errOut, code := e.berth(args...)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("berth %v: code %d, stdout %q, stderr %q; want a failure saying %q", args, code, out, errOut, want)
		}
	}

	// Create: named with a label, and unnamed (a random 64-hex name).
	if out := strings.TrimSpace(e.mustBerth("volume", "create", "--label", "team=db", "data")); out != "data" {
		t.Fatalf("volume create data printed %q", out)
	}
	rnd := strings.TrimSpace(e.mustBerth("volume", "create"))
	if !hex64.MatchString(rnd) {
		t.Fatalf("volume create without a name printed %q", rnd)
	}
	if v := volumes()["data"]; v.Driver != "local" || v.Labels["team"] != "db" || !strings.HasSuffix(v.Mountpoint, "/volumes/data/_data") {
		t.Fatalf("volume data listed as %+v", v)
	}
	var inspected []volumeView
	if err := json.Unmarshal([]byte(e.mustBerth("volume", "inspect", "data")), &inspected); err != nil || len(inspected) != 1 ||
		inspected[0].Mountpoint != volumes()["data"].Mountpoint || inspected[0].Labels["team"] != "db" {
		t.Fatalf("volume inspect data: %+v, %v", inspected, err)
	}
	fails("no such volume", "volume", "inspect", "nope")
	fails("invalid volume name", "volume", "create", "a/b")

	// Data outlives the container that wrote it; :ro is read-only.
	e.mustBerth("run", "--rm", "-v", "data:/data", demoImage, "sh", "-c", "echo persisted >/data/f")
	if out := e.mustBerth("run", "--rm", "-v", "data:/data:ro", demoImage, "cat", "/data/f"); out != "persisted\n" {
		t.Fatalf("a second container read %q from the volume", out)
	}
	if _, _, code := e.berth("run", "--rm", "-v", "data:/data:ro", demoImage, "sh", "-c", "echo x >/data/g"); code == 0 {
		t.Fatal("a write to a read-only volume succeeded")
	}
	// A volume used first is made, and filled from the image's content at
	// the mount point (with the directory's mode); --mount names one too.
	if out := e.mustBerth("run", "--rm", "-v", "etcvol:/etc", demoImage, "cat", "/etc/passwd"); !strings.Contains(out, "root:x:0:0") {
		t.Fatalf("/etc from a new volume: %q; want the image's passwd copied in", out)
	}
	if b, err := os.ReadFile(filepath.Join(volumes()["etcvol"].Mountpoint, "group")); err != nil || !strings.Contains(string(b), "root:x:0:") {
		t.Fatalf("the volume's data on the host: %q, %v", b, err)
	}
	if out := e.mustBerth("run", "--rm", "--mount", "type=volume,src=rootvol,dst=/root", demoImage, "stat", "-c", "%a", "/root"); out != "700\n" {
		t.Fatalf("mode of a volume filled from /root: %q, want the image's 700", out)
	}

	// A running container holds "data": removal is refused, naming it.
	e.mustBerth("run", "-d", "--name", "holder", "-v", "data:/data", demoImage, "sleep", "1000")
	holder := e.container("holder")
	fails("holder", "volume", "rm", "data")
	fails("holder", "volume", "rm", "-f", "data")
	if v := volumes()["data"]; !slices.Equal(v.UsedBy, []string{holder.ID}) {
		t.Fatalf("data used by %v, want [%s]", v.UsedBy, holder.ID)
	}
	if out := e.mustBerth("volume", "ls", "-q"); !strings.Contains(out, "data\n") || !strings.Contains(out, rnd) {
		t.Fatalf("volume ls -q:\n%s", out)
	}
	if out := e.mustBerth("volume", "ls"); !strings.Contains(out, "DRIVER") || !strings.Contains(out, "local") {
		t.Fatalf("volume ls:\n%s", out)
	}

	// The REST gateway serves volumes and top.
	restSocket := filepath.Join(e.dir, "run", "api-grpc", "api-rest.sock")
	curl := func(path string) string {
		t.Helper()
		out, err := exec.Command("curl", "-sS", "-f", "--unix-socket", restSocket, "http://x"+path).Output()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", path, err, out)
		}
		return string(out)
	}
	if body := curl("/v1/volumes"); !strings.Contains(body, `"name":"data"`) || !strings.Contains(body, holder.ID) {
		t.Fatalf("GET /v1/volumes: %s", body)
	}
	if body := curl("/v1/containers/holder/top"); !strings.Contains(body, "sleep 1000") {
		t.Fatalf("GET /v1/containers/holder/top: %s", body)
	}

	// Anonymous volumes: kept while their (stopped) container exists,
	// pruned after; prune -a takes unused named ones too.
	e.mustBerth("run", "--name", "anon", "-v", "/cache", demoImage, "sh", "-c", "echo c >/cache/x")
	var anonCtr []struct {
		Config struct {
			Mounts []struct{ Type, Source, Destination string }
		}
	}
	if err := json.Unmarshal([]byte(e.mustBerth("inspect", "anon")), &anonCtr); err != nil || len(anonCtr) != 1 || len(anonCtr[0].Config.Mounts) != 1 {
		t.Fatalf("inspect anon: %+v, %v", anonCtr, err)
	}
	anonVol := anonCtr[0].Config.Mounts[0].Source
	if !hex64.MatchString(anonVol) {
		t.Fatalf("anonymous volume named %q", anonVol)
	}
	if out := e.mustBerth("volume", "prune", "-f"); strings.Contains(out, anonVol) {
		t.Fatalf("prune removed the volume of an existing container:\n%s", out)
	}
	// run --rm and rm -v take a container's anonymous volumes with it.
	before := len(volumes())
	e.mustBerth("run", "--rm", "-v", "/scratch", demoImage, "true")
	e.mustBerth("run", "--name", "anon2", "-v", "/scratch", demoImage, "true")
	if n := len(volumes()); n != before+1 {
		t.Fatalf("%d volumes after run --rm -v /scratch and run -v /scratch, want %d", n, before+1)
	}
	e.mustBerth("rm", "-v", "anon2")
	if n := len(volumes()); n != before {
		t.Fatalf("%d volumes after rm -v, want %d", n, before)
	}
	e.mustBerth("rm", "anon")
	out := e.mustBerth("volume", "prune", "-f")
	if !strings.Contains(out, "Deleted Volumes:\n"+anonVol) || strings.Contains(out, "etcvol") {
		t.Fatalf("volume prune (anonymous only):\n%s", out)
	}
	out = e.mustBerth("volume", "prune", "-f", "-a")
	for _, gone := range []string{"etcvol", "rootvol", rnd} {
		if !strings.Contains(out, gone) {
			t.Fatalf("volume prune -a kept %s:\n%s", gone, out)
		}
	}
	if vs := volumes(); len(vs) != 1 || vs["data"].Name != "data" {
		t.Fatalf("volumes after prune -a: %v (want only data, in use)", vs)
	}

	// cp into and out of the running container, files and directories.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(host, "hostfile"), []byte("from the host\n"), 0o640))
	must(os.MkdirAll(filepath.Join(host, "hostdir/sub"), 0o755))
	must(os.WriteFile(filepath.Join(host, "hostdir/sub/a"), []byte("a\n"), 0o644))
	e.mustBerth("cp", filepath.Join(host, "hostfile"), "holder:/tmp/")
	e.mustBerth("cp", filepath.Join(host, "hostdir"), "holder:/tmp")
	e.mustBerth("cp", filepath.Join(host, "hostfile"), "holder:/tmp/renamed")
	if out := e.mustBerth("exec", "holder", "sh", "-c", "cat /tmp/hostfile /tmp/hostdir/sub/a /tmp/renamed; stat -c '%u %a' /tmp/hostfile"); out != "from the host\na\nfrom the host\n0 640\n" {
		t.Fatalf("files copied in read as %q", out)
	}
	e.mustBerth("cp", "holder:/etc/passwd", filepath.Join(host, "passwd"))
	if b, _ := os.ReadFile(filepath.Join(host, "passwd")); !strings.Contains(string(b), "nobody:x:65534") {
		t.Fatalf("copied /etc/passwd out: %q", b)
	}
	e.mustBerth("cp", "holder:/data", filepath.Join(host, "datacopy")) // a volume, seen live
	if b, _ := os.ReadFile(filepath.Join(host, "datacopy/f")); string(b) != "persisted\n" {
		t.Fatalf("copied the volume out: %q", b)
	}
	e.mustBerth("cp", "holder:/tmp/hostdir/.", filepath.Join(host, "datacopy"))
	if b, _ := os.ReadFile(filepath.Join(host, "datacopy/sub/a")); string(b) != "a\n" {
		t.Fatalf("copied a directory's content out: %q", b)
	}

	// Symlink escapes: a link in the container to a host directory leads
	// nowhere outside the container, either way.
	outside := t.TempDir()
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret\n"), 0o600))
	e.mustBerth("exec", "holder", "ln", "-s", "/../../../.."+outside, "/tmp/esc")
	fails("no such", "cp", "holder:/tmp/esc/secret", filepath.Join(host, "leak"))
	if _, err := os.Stat(filepath.Join(host, "leak")); err == nil {
		t.Fatal("cp out through an escaping symlink wrote a file")
	}
	_, _, _ = e.berth("cp", filepath.Join(host, "hostfile"), "holder:/tmp/esc/")
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("cp into an escaping symlink reached the host: %v", ents)
	}
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	must(tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside, Mode: 0o777}))
	must(tw.WriteHeader(&tar.Header{Name: "link/planted", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}))
	_, _ = tw.Write([]byte("x"))
	must(tw.Close())
	if _, errOut, code := e.berthIn(evil.String(), "cp", "-", "holder:/tmp"); code == 0 || !strings.Contains(errOut, "symlink") && !strings.Contains(errOut, "link") {
		t.Fatalf("cp of a tar writing through its own symlink: code %d, %q; want a refusal", code, errOut)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("a tar through a symlink reached the host: %v", ents)
	}

	// docker create, cp, start: the file is there when the command runs.
	e.mustBerth("create", "--name", "fresh", demoImage, "cat", "/copied")
	e.mustBerth("cp", filepath.Join(host, "hostfile"), "fresh:/copied")
	if out := e.mustBerth("start", "-a", "fresh"); out != "from the host\n" {
		t.Fatalf("a file copied into a created container read as %q", out)
	}

	// A stopped container: its rootfs is mounted for the copy, then
	// unmounted.
	e.mustBerth("run", "--name", "stopped", demoImage, "sh", "-c", "echo s >/s")
	e.mustBerth("cp", filepath.Join(host, "hostfile"), "stopped:/")
	e.mustBerth("cp", "stopped:/hostfile", filepath.Join(host, "roundtrip"))
	if b, _ := os.ReadFile(filepath.Join(host, "roundtrip")); string(b) != "from the host\n" {
		t.Fatalf("round trip through a stopped container: %q", b)
	}
	// ... with its volumes where the container sees them.
	e.mustBerth("run", "--name", "stoppedvol", "-v", "data:/data", demoImage, "true")
	e.mustBerth("cp", "stoppedvol:/data/f", filepath.Join(host, "fromvol"))
	if b, _ := os.ReadFile(filepath.Join(host, "fromvol")); string(b) != "persisted\n" {
		t.Fatalf("a volume's file copied from a stopped container: %q", b)
	}
	e.mustBerth("cp", filepath.Join(host, "hostfile"), "stoppedvol:/data/")
	if out := e.mustBerth("exec", "holder", "cat", "/data/hostfile"); out != "from the host\n" {
		t.Fatalf("a file copied into a stopped container's volume, seen by another: %q", out)
	}
	e.mustBerth("rm", "stoppedvol")
	if out := e.mustBerth("start", "-a", "stopped"); out != "" {
		t.Logf("restarted stopped: %q", out)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), "/mnt/rootfs-") {
		t.Fatalf("a rootfs mount was left behind:\n%s", b)
	}

	// export: the rootfs, without the volume's content or /proc's.
	tarNames := func(r io.Reader) map[string]string {
		t.Helper()
		names := map[string]string{}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return names
			}
			must(err)
			b, _ := io.ReadAll(io.LimitReader(tr, 64))
			names[h.Name] = string(b)
		}
	}
	exported := filepath.Join(host, "holder.tar")
	e.mustBerth("export", "-o", exported, "holder")
	f, err := os.Open(exported)
	must(err)
	names := tarNames(f)
	f.Close()
	if _, ok := names["hello"]; !ok || names["tmp/hostfile"] != "from the host\n" || names["bin/sh"] != "" {
		t.Fatalf("export of holder lacks /hello or /tmp/hostfile (%d entries)", len(names))
	}
	if _, ok := names["data/f"]; ok {
		t.Fatal("export included the volume's content")
	}
	if _, ok := names["proc/1/status"]; ok {
		t.Fatal("export included /proc")
	}
	names = tarNames(strings.NewReader(e.mustBerth("export", "stopped")))
	if names["s"] != "s\n" || names["hostfile"] != "from the host\n" {
		t.Fatalf("export of a stopped container to stdout: /s %q, /hostfile %q", names["s"], names["hostfile"])
	}

	// top: the container's processes, ps -ef's columns, or ps's own.
	out = e.mustBerth("top", "holder")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !regexp.MustCompile(`^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD$`).MatchString(lines[0]) ||
		!strings.Contains(out, "sleep 1000") || !strings.Contains(out, " "+strconv.Itoa(holder.Pid)+" ") {
		t.Fatalf("top holder (pid %d):\n%s", holder.Pid, out)
	}
	if out := e.mustBerth("top", "holder", "-o", "pid,args"); !strings.Contains(out, "sleep 1000") || strings.Contains(out, "berth") {
		t.Fatalf("top holder -o pid,args:\n%s", out)
	}
	fails("only a running container", "top", "stopped")

	// update --restart shows in inspect; --blkio-weight says why not.
	e.mustBerth("update", "--restart", "on-failure:2", "holder")
	var insp []struct {
		Config struct {
			Restart struct {
				Name       string
				MaxRetries int
			}
		}
	}
	if err := json.Unmarshal([]byte(e.mustBerth("inspect", "holder")), &insp); err != nil || len(insp) != 1 ||
		insp[0].Config.Restart.Name != "on-failure" || insp[0].Config.Restart.MaxRetries != 2 {
		t.Fatalf("restart policy after update: %+v, %v", insp, err)
	}
	fails("no IO weight", "update", "--blkio-weight", "300", "holder")
	fails(`--restart "sometimes"`, "update", "--restart", "sometimes", "holder")

	// system prune -a: named images no container uses go, the one the
	// running container uses stays.
	reg := newLoopbackRegistry(t)
	ref := reg.push(t, "cli/unused:v1", busyboxImage(t))
	e.mustBerth("pull", ref)
	out = e.mustBerth("system", "prune", "-a", "-f")
	if !strings.Contains(out, "Untagged images:") || !strings.Contains(out, "cli/unused:v1") || !strings.Contains(out, "Deleted containers:") {
		t.Fatalf("system prune -a:\n%s", out)
	}
	if imgs := e.mustBerth("images"); strings.Contains(imgs, "cli/unused") || !strings.Contains(imgs, "berth.local/demo") {
		t.Fatalf("images after prune -a:\n%s", imgs)
	}
	if _, ok := e.find("stopped"); ok {
		t.Fatal("prune -a kept a stopped container")
	}

	e.mustBerth("rm", "-f", "holder")
	e.mustBerth("volume", "rm", "data")
	if vs := volumes(); len(vs) != 0 {
		t.Fatalf("volumes left: %v", vs)
	}
}

// testRestartPolicies is TestContainerCommands' "logs -f across restarts,
// restart policies at daemon start" subtest: logs -f started during a
// container's first run follows it through the restarts its on-failure
// policy makes and ends when it is stopped for good; after a daemon
// restart a container with policy always that a user stopped runs again,
// one with unless-stopped does not.
func testRestartPolicies(t *testing.T, e *env) {
	e.mustBerth("run", "-d", "--name", "flaky", "--restart", "on-failure:2", demoImage, "sh", "-c", "echo run; sleep 1; exit 1")
	out, errOut, code := e.berth("logs", "-f", "flaky")
	if code != 0 || strings.Count(out, "run\n") != 3 {
		t.Fatalf("logs -f across two restarts: code %d, %q, %q; want 3 runs' output", code, out, errOut)
	}
	if c := e.container("flaky"); c.State != "exited" && c.State != "stopped" || c.RestartCount != 2 {
		t.Fatalf("flaky after logs -f ended: %+v", c)
	}

	e.mustBerth("run", "-d", "--name", "alw", "--restart", "always", demoImage, "sleep", "1000")
	e.mustBerth("run", "-d", "--name", "unl", "--restart", "unless-stopped", demoImage, "sleep", "1000")
	e.mustBerth("stop", "-t", "1", "alw", "unl")
	e.mustBerth("system", "stop")
	e.mustBerth("system", "start")
	e.warmUp()
	deadline := time.Now().Add(60 * time.Second)
	for e.container("alw").State != "running" {
		if time.Now().After(deadline) {
			t.Fatalf("always was not restarted at the daemon's start: %+v", e.container("alw"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := e.container("unl"); c.State == "running" {
		t.Fatalf("unless-stopped was restarted at the daemon's start: %+v", c)
	}
	e.mustBerth("rm", "-f", "flaky", "alw", "unl")
}
