//go:build linux

package ext4

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/snapshot"
)

const crashEnv = "BERTH_EXT4_CRASH_HELPER"

// TestCrashHelper is the process TestCrashSafety kills: it runs one
// operation on the state dir it is given and blocks at the crash point.
func TestCrashHelper(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("the child process of TestCrashSafety")
	}
	point, dir, _ := strings.Cut(spec, ":")
	ready := func() {
		fmt.Println("READY")
		_ = os.Stdout.Sync()
		select {} // killed here
	}
	testHook = func(p string) {
		if p == point {
			ready()
		}
	}
	sn := configure(t, dir, nil)
	ctx := context.Background()
	switch point {
	case "apply-stream", "apply-built":
		files := map[string]string{}
		for i := range 16 {
			files[fmt.Sprintf("new%02d", i)] = strings.Repeat("x", 64<<10)
		}
		raw, diffID := layerTar(files)
		var r interface {
			Read([]byte) (int, error)
		} = bytes.NewReader(raw)
		if point == "apply-stream" {
			r = &stallingReader{data: raw[:len(raw)/2], stall: ready}
		}
		_, err := sn.Apply(ctx, "work", snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, r)
		t.Fatalf("Apply returned %v instead of blocking at %s", err, point)
	default:
		err := sn.Commit(ctx, "done", "work")
		t.Fatalf("Commit returned %v instead of blocking at %s", err, point)
	}
}

// stallingReader serves data, then calls stall (which never returns).
type stallingReader struct {
	data  []byte
	stall func()
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.stall()
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestCrashSafety kills a real process with SIGKILL in the middle of Apply
// (while the layer streams; after the new generation is built) and of
// Commit (before its transaction; inside it, after the generation switch),
// on a snapshot that was unpacked into and on one a "container" wrote
// (the readback path). After a restart the snapshot is what it was before
// the operation, nothing of the operation is left on disk, and the same
// operation then succeeds.
func TestCrashSafety(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	for _, point := range []string{"apply-stream", "apply-built", "commit-built", "commit-switched"} {
		for _, written := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/written=%v", point, written), func(t *testing.T) {
				dir := t.TempDir()
				sn := configure(t, dir, nil)
				unpack(t, sn, "base", "", map[string]string{"keep": "base"})
				ms, err := sn.Prepare(ctx, "work", "base")
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"keep": "base"}
				if written {
					writeFiles(t, ms, map[string][]byte{"mine": []byte("container")})
					want["mine"] = "container"
				} else {
					raw, diffID := layerTar(map[string]string{"applied": "1"})
					if _, err := sn.Apply(ctx, "work", snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err != nil {
						t.Fatal(err)
					}
					want["applied"] = "1"
				}
				if err := sn.Close(); err != nil {
					t.Fatal(err)
				}
				killAt(t, point, dir)
				if !crashLeftSomething(t, dir) {
					t.Errorf("the kill at %s left nothing to recover from: the test does not test it", point)
				}

				sn = configure(t, dir, nil)
				if info, err := sn.Stat(ctx, "work"); err != nil || info.Kind != snapshot.KindActive {
					t.Fatalf("after the crash Stat(work) = %+v, %v; want it active", info, err)
				}
				if _, err := sn.Stat(ctx, "done"); !errdefs.IsNotFound(err) {
					t.Errorf("the killed Commit's name exists: %v", err)
				}
				checkNoLeftovers(t, dir)
				ms, err = sn.Mounts(ctx, "work")
				if err != nil {
					t.Fatal(err)
				}
				got := readFiles(t, ms, "keep", "mine", "applied", "new00")
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("after the crash work holds %v, want %v", got, want)
				}
				// The snapshot works as before.
				raw, diffID := layerTar(map[string]string{"later": "ok"})
				if _, err := sn.Apply(ctx, "work", snapshot.Layer{MediaType: mediaTar, DiffID: diffID}, bytes.NewReader(raw)); err != nil {
					t.Fatalf("Apply after the crash: %v", err)
				}
				if err := sn.Commit(ctx, "done", "work"); err != nil {
					t.Fatalf("Commit after the crash: %v", err)
				}
				vs, err := sn.View(ctx, "v", "done")
				if err != nil {
					t.Fatal(err)
				}
				want["later"] = "ok"
				if got := readFiles(t, vs, "keep", "mine", "applied", "later"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("committed after the crash: %v, want %v", got, want)
				}
				checkNoLeftovers(t, dir)
			})
		}
	}
}

// killAt runs TestCrashHelper on dir, waits until it reports it reached
// point and kills it with SIGKILL.
func killAt(t *testing.T, point, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+point+":"+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyc := make(chan bool, 1)
	var out strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if sc.Text() == "READY" {
				readyc <- true
				return
			}
		}
		readyc <- false
	}()
	select {
	case ok := <-readyc:
		if !ok {
			_ = cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the helper ended before %s:\n%s\n%s", point, out.String(), stderr.String())
		}
	case <-time.After(120 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the helper did not reach %s within 120 s:\n%s", point, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// checkNoLeftovers checks that every snapshot directory holds only its
// current generation and no temporary file.
func checkNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "new-") || strings.HasPrefix(e.Name(), "rm-") {
			t.Errorf("leftover %s", e.Name())
			continue
		}
		sd := filepath.Join(dir, "snapshots", e.Name())
		link, err := os.Readlink(filepath.Join(sd, "current"))
		if err != nil {
			t.Errorf("%s: %v", sd, err)
			continue
		}
		inner, _ := os.ReadDir(sd)
		for _, i := range inner {
			if i.Name() != "current" && i.Name() != link {
				t.Errorf("leftover %s/%s (current is %s)", e.Name(), i.Name(), link)
			}
		}
		files, _ := os.ReadDir(filepath.Join(sd, link))
		for _, f := range files {
			if strings.Contains(f.Name(), ".tmp") || strings.HasPrefix(f.Name(), "readback") {
				t.Errorf("leftover %s/%s/%s", e.Name(), link, f.Name())
			}
		}
	}
}

// crashLeftSomething reports whether a snapshot directory holds more than
// its current generation, or an active snapshot's current generation has
// no disk (a Commit killed inside its transaction, after the switch).
func crashLeftSomething(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		sd := filepath.Join(dir, "snapshots", e.Name())
		inner, _ := os.ReadDir(sd)
		if len(inner) > 2 {
			return true
		}
		_, disk := os.Stat(filepath.Join(sd, "current", "disk"))
		_, tree := os.Stat(filepath.Join(sd, "current", "fs"))
		_, state := os.Stat(filepath.Join(sd, "current", "state.json"))
		if disk != nil && tree == nil && state != nil && e.Name() == "2" { // "work" is snapshot 2
			return true
		}
	}
	return false
}
