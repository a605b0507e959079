package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/images"
)

const imagesConfig = `
berth {
  state_dir   = "%s/state"
  runtime_dir = "%s/run"
  log_level   = "debug"
}
plugin "api" "grpc" {}
`

// loopbackRegistry serves go-containerregistry's registry on 127.0.0.1; a
// blob digest in stall gets half its bytes, then the response hangs.
type loopbackRegistry struct {
	host    string
	mu      sync.Mutex
	stall   string
	stalled chan struct{}
}

func newLoopbackRegistry(t *testing.T) *loopbackRegistry {
	lr := &loopbackRegistry{stalled: make(chan struct{}, 1)}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lr.mu.Lock()
		stall := lr.stall
		lr.mu.Unlock()
		if stall != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+stall) {
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			_, _ = w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			select {
			case lr.stalled <- struct{}{}:
			default:
			}
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	lr.host = strings.TrimPrefix(srv.URL, "http://")
	return lr
}

func (lr *loopbackRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	ref := lr.host + "/" + repoTag
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestImageCommandsThroughTheDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon's state and runtime dirs are created with root-only modes (CI runs as root)")
	}
	reg := newLoopbackRegistry(t)
	img, err := random.Image(200<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.push(t, "cli/app:v1", img)
	want, _ := img.Digest()

	e := newEnv(t, imagesConfig)
	e.mustBerth("system", "start")

	out := e.mustBerth("pull", ref)
	if !strings.Contains(out, "Pulled "+ref) || !strings.Contains(out, ": done") {
		t.Fatalf("pull output:\n%s", out)
	}
	var list []images.Image
	if err := json.Unmarshal([]byte(e.mustBerth("images", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Digest != want.String() || list[0].Tag != "v1" {
		t.Fatalf("images = %+v", list)
	}
	if out := e.mustBerth("image", "ls"); !strings.Contains(out, "REPOSITORY") || !strings.Contains(out, want.Hex[:12]) {
		t.Fatalf("image ls:\n%s", out)
	}
	var details []struct {
		Digest string
		Layers []images.Layer
	}
	if err := json.Unmarshal([]byte(e.mustBerth("image", "inspect", ref)), &details); err != nil {
		t.Fatal(err)
	}
	if len(details) != 1 || len(details[0].Layers) != 3 || details[0].Layers[0].DiffID == "" {
		t.Fatalf("inspect = %+v", details)
	}
	if _, errOut, code := e.berth("image", "inspect", "berth.local/nope:1"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("inspect of a missing image: %d %s", code, errOut)
	}

	// tag, push under the new name, save both formats, remove, load back.
	pushed := reg.host + "/cli/copy:v2"
	e.mustBerth("tag", ref, pushed)
	if out := e.mustBerth("push", pushed); !strings.Contains(out, "Pushed") {
		t.Fatalf("push output:\n%s", out)
	}
	if d, err := remote.Head(mustRef(t, pushed)); err != nil || d.Digest != want {
		t.Fatalf("pushed image in registry: %v %v", d, err)
	}
	ociTar := filepath.Join(e.dir, "app-oci.tar")
	dockerTar := filepath.Join(e.dir, "app-docker.tar")
	e.mustBerth("save", "-o", ociTar, ref)
	e.mustBerth("image", "save", "--format", "docker", "-o", dockerTar, ref)
	out = e.mustBerth("rmi", ref, pushed)
	if !strings.Contains(out, "Untagged: "+ref) || !strings.Contains(out, "Deleted: "+want.String()) {
		t.Fatalf("rmi output:\n%s", out)
	}
	for _, archive := range []string{ociTar, dockerTar} {
		out = e.mustBerth("load", "-i", archive)
		if !strings.Contains(out, "Loaded image: "+ref+" ("+want.String()+")") {
			t.Fatalf("load %s:\n%s", archive, out)
		}
	}
	if _, errOut, code := e.berth("load", "-i", filepath.Join(e.dir, "config.hcl")); code == 0 || !strings.Contains(errOut, "not a valid tar") {
		t.Errorf("load of a non-archive: %d %s", code, errOut)
	}
	if out := e.mustBerth("image", "prune"); !strings.Contains(out, "Total reclaimed space: 0 B") {
		t.Errorf("prune with nothing to prune:\n%s", out)
	}
	if out := e.mustBerth("image", "rm", ref); !strings.Contains(out, "Deleted:") {
		t.Errorf("image rm:\n%s", out)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestDaemonKilledMidPull kills the daemon (the process writing the store)
// while a layer is half downloaded: the next daemon finds every blob
// intact, no temp file, no name for the half image, and pulls it.
func TestDaemonKilledMidPull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon's state and runtime dirs are created with root-only modes (CI runs as root)")
	}
	reg := newLoopbackRegistry(t)
	img, err := random.Image(512<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.push(t, "cli/killed:v1", img)
	m, _ := img.Manifest()
	reg.mu.Lock()
	reg.stall = m.Layers[1].Digest.String()
	reg.mu.Unlock()

	e := newEnv(t, imagesConfig)
	e.mustBerth("system", "start")
	var st api.Status
	if err := json.Unmarshal([]byte(e.mustBerth("system", "status", "--format", "json")), &st); err != nil {
		t.Fatal(err)
	}
	pull := exec.Command(filepath.Join(binDir, "berth"), "--config", e.config, "pull", ref)
	var pullOut bytes.Buffer
	pull.Stdout, pull.Stderr = &pullOut, &pullOut
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reg.stalled:
	case <-time.After(60 * time.Second):
		_ = pull.Process.Kill()
		t.Fatalf("the pull never reached the stalling layer:\n%s", pullOut.String())
	}
	store := filepath.Join(e.dir, "state", "images")
	eventually(t, "a temp file in ingest/", func() bool {
		entries, _ := os.ReadDir(filepath.Join(store, "ingest"))
		return len(entries) > 0
	})
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := pull.Wait(); err == nil {
		t.Errorf("pull succeeded although the daemon was killed:\n%s", pullOut.String())
	}
	eventually(t, "the killed daemon to be gone", func() bool { return !processAlive(st.Pid) })

	reg.mu.Lock()
	reg.stall = ""
	reg.mu.Unlock()
	e.mustBerth("system", "start")
	if entries, _ := os.ReadDir(filepath.Join(store, "ingest")); len(entries) != 0 {
		t.Errorf("temp files remain after restart: %d", len(entries))
	}
	blobs, _ := os.ReadDir(filepath.Join(store, "blobs", "sha256"))
	for _, b := range blobs {
		data, err := os.ReadFile(filepath.Join(store, "blobs", "sha256", b.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != b.Name() {
			t.Errorf("blob %s does not match its digest", b.Name())
		}
	}
	if out := e.mustBerth("images", "--format", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("images after the killed pull = %s", out)
	}
	if out := e.mustBerth("pull", "-q", ref); strings.TrimSpace(out) != ref {
		t.Errorf("second pull output %q", out)
	}
}

// TestDemoImage builds the demo image with the script `make demo-image`
// runs and imports it through the daemon, as make demo does.
func TestDemoImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon's state and runtime dirs are created with root-only modes (CI runs as root)")
	}
	e := newEnv(t, imagesConfig)
	e.mustBerth("system", "start")
	runScript := func() string {
		t.Helper()
		script := exec.Command("../../../scripts/demo-image.sh")
		script.Env = append(os.Environ(), "BERTH="+filepath.Join(binDir, "berth"), "BERTH_CONFIG="+e.config)
		out, err := script.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Imported berth.local/demo:latest") {
			t.Fatalf("demo-image.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	runScript()
	var details []struct {
		Digest   string
		Platform images.Platform
		Config   images.Config
		Layers   []images.Layer
	}
	if err := json.Unmarshal([]byte(e.mustBerth("image", "inspect", "berth.local/demo")), &details); err != nil {
		t.Fatal(err)
	}
	d := details[0]
	if len(d.Layers) != 1 || d.Config.Cmd[0] != "/hello" || d.Platform.OS != "linux" || d.Layers[0].Size < 1<<20 {
		t.Fatalf("demo image = %+v", d)
	}
	// The same script run again gives the same image.
	if again := runScript(); !strings.Contains(again, d.Digest) {
		t.Errorf("second build: %s (want digest %s)", again, d.Digest)
	}

	// Its program runs: build the rootfs alone and run /hello from it.
	rootfs := t.TempDir()
	if out, err := exec.Command("../../../scripts/demo-image.sh", "--rootfs", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("demo-image.sh --rootfs: %v\n%s", err, out)
	}
	hello, err := exec.Command(filepath.Join(rootfs, "hello"), "x").CombinedOutput()
	if err != nil || !strings.Contains(string(hello), "Hello from Berth's demo image") {
		t.Errorf("hello: %v %s", err, hello)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
}

// TestRegistryLoginThenPull pulls from a registry that wants basic auth:
// refused without credentials, refused with wrong ones at login, pulled
// after `berth registry login`, refused again after logout. Credentials
// go to $DOCKER_CONFIG/config.json, where the daemon's keychain reads them.
func TestRegistryLoginThenPull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon's state and runtime dirs are created with root-only modes (CI runs as root)")
	}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "berth" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/private/app:1"
	if err := remote.Write(mustRef(t, ref), img, remote.WithAuth(&authn.Basic{Username: "berth", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}

	dockerConfig := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dockerConfig) // the CLI and the daemon it starts inherit it
	e := newEnv(t, imagesConfig)
	e.mustBerth("system", "start")

	if _, errOut, code := e.berth("pull", ref); code == 0 || !strings.Contains(errOut, "berth registry login "+host) {
		t.Fatalf("pull without credentials: exit %d, %s", code, errOut)
	}
	if _, errOut, code := e.berth("registry", "login", "-u", "berth", "-p", "wrong", host); code == 0 || !strings.Contains(errOut, "login to "+host+" failed") {
		t.Fatalf("login with a wrong password: exit %d, %s", code, errOut)
	}
	if out := e.mustBerth("registry", "login", "-u", "berth", "-p", "s3cret", host); !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %s", out)
	}
	cfg, err := os.ReadFile(filepath.Join(dockerConfig, "config.json"))
	if err != nil || !strings.Contains(string(cfg), host) {
		t.Fatalf("config.json after login: %s %v", cfg, err)
	}
	e.mustBerth("pull", "-q", ref)
	e.mustBerth("rmi", ref)

	e.mustBerth("registry", "logout", host)
	if cfg, _ := os.ReadFile(filepath.Join(dockerConfig, "config.json")); strings.Contains(string(cfg), host) {
		t.Errorf("config.json still names %s after logout: %s", host, cfg)
	}
	if _, _, code := e.berth("pull", ref); code == 0 {
		t.Error("pull succeeded after logout")
	}
}
