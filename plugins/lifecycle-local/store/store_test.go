package store

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// helperEnv makes the test binary act as a second process holding or
// writing the store (see TestMain).
const helperEnv = "BERTH_STORE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "hold":
		// Open the store, say so, and keep it (and its lock) until killed.
		s, err := Open(os.Args[len(os.Args)-1], Options{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		_ = s
		select {}
	case "write":
		// Create records as fast as possible, printing each ID once Create
		// returned (acknowledged), until killed.
		s, err := Open(os.Args[len(os.Args)-1], Options{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			r := newRecord(fmt.Sprintf("c%d-%s", i, newID()[:8]))
			if err := s.Create(r); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println("ack", r.Container.ID)
		}
	}
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newRecord(name string) Record {
	return Record{Container: lifecycle.Container{
		ID: newID(), Name: name, State: lifecycle.StateCreated,
		Config:    lifecycle.Config{Image: "alpine", Cmd: []string{"sh", "-c", "echo hi"}, Labels: map[string]string{"a": "b"}},
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}, Snapshotter: "overlay", Group: "g-" + name}
}

func openT(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestCreateGetLookupUpdateDelete(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	web := newRecord("web")
	if err := s.Create(web); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(web.Container.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Schema != SchemaVersion || got.Container.Name != "web" || got.Container.Config.Cmd[2] != "echo hi" || !got.Container.CreatedAt.Equal(web.Container.CreatedAt) || got.Group != "g-web" {
		t.Fatalf("Get returned %+v, want what was created with schema %d", got, SchemaVersion)
	}

	dup := newRecord("web")
	if err := s.Create(dup); !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), `"web"`) {
		t.Fatalf("Create of a second %q = %v, want ErrAlreadyExists naming it", "web", err)
	}
	sameID := newRecord("other")
	sameID.Container.ID = web.Container.ID
	if err := s.Create(sameID); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Create with a taken id = %v, want ErrAlreadyExists", err)
	}
	if err := s.Create(Record{Container: lifecycle.Container{ID: newID()}}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Create without a name = %v, want ErrInvalidArgument", err)
	}

	// Two records sharing a first hex digit make a short prefix ambiguous.
	a, b := newRecord("first"), newRecord("second")
	a.Container.ID = "ab" + a.Container.ID[2:]
	b.Container.ID = "ac" + b.Container.ID[2:]
	for _, r := range []Record{a, b} {
		if err := s.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	for ref, want := range map[string]string{
		web.Container.ID:      web.Container.ID,
		"web":                 web.Container.ID,
		"/web":                web.Container.ID,
		a.Container.ID[:3]:    a.Container.ID,
		b.Container.ID[:5]:    b.Container.ID,
		web.Container.ID[:12]: web.Container.ID,
	} {
		r, err := s.Lookup(ref)
		if err != nil || r.Container.ID != want {
			t.Errorf("Lookup(%q) = %s, %v; want %s", ref, r.Container.ID, err, want)
		}
	}
	if _, err := s.Lookup("a"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("Lookup of an ambiguous prefix = %v, want ErrInvalidArgument saying ambiguous", err)
	}
	if _, err := s.Lookup("nosuch"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Lookup(nosuch) = %v, want ErrNotFound naming it", err)
	}
	if _, err := s.Lookup(""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Lookup(\"\") = %v, want ErrInvalidArgument", err)
	}

	// A name that looks like another container's id prefix resolves to
	// the named container (names before prefixes, as Docker does).
	named := newRecord(a.Container.ID[:3])
	if err := s.Create(named); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Lookup(a.Container.ID[:3]); r.Container.ID != named.Container.ID {
		t.Errorf("Lookup(%q) = %s, want the container named so", a.Container.ID[:3], r.Container.ID)
	}

	up, err := s.Update(web.Container.ID, func(r *Record) error {
		r.Container.State = lifecycle.StateRunning
		r.Container.Pid = 42
		r.Container.Name = "web2"
		return nil
	})
	if err != nil || up.Container.State != lifecycle.StateRunning {
		t.Fatalf("Update = %+v, %v", up, err)
	}
	if r, err := s.Lookup("web2"); err != nil || r.Container.Pid != 42 {
		t.Fatalf("Lookup(web2) after rename = %+v, %v", r, err)
	}
	if _, err := s.Lookup("web"); !errdefs.IsNotFound(err) {
		t.Fatalf("old name still resolves after rename: %v", err)
	}
	if _, err := s.Update(web.Container.ID, func(r *Record) error { r.Container.Name = "first"; return nil }); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("rename onto a taken name = %v, want ErrAlreadyExists", err)
	}
	boom := fmt.Errorf("boom")
	if _, err := s.Update(web.Container.ID, func(r *Record) error { r.Container.Pid = 7; return boom }); err != boom {
		t.Fatalf("Update whose fn fails = %v, want its error", err)
	}
	if r, _ := s.Get(web.Container.ID); r.Container.Pid != 42 {
		t.Fatalf("a failed Update wrote pid %d", r.Container.Pid)
	}
	if _, err := s.Update(newID(), func(*Record) error { return nil }); !errdefs.IsNotFound(err) {
		t.Fatalf("Update of a missing id = %v, want ErrNotFound", err)
	}

	if err := s.Delete(web.Container.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(web.Container.ID); err != nil {
		t.Fatalf("second Delete = %v, want success (idempotent)", err)
	}
	if err := s.Create(newRecord("web2")); err != nil {
		t.Fatalf("the name of a deleted container is not free again: %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 4 {
		t.Fatalf("List = %d records, %v; want 4", len(list), err)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// startHelper runs this test binary as a second process in mode, on dir,
// and returns it with a reader of its output.
func startHelper(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", dir)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// TestLockHeldByAnotherProcess holds the store from a real second process:
// Open gives up after its timeout with an error naming the file and the
// holder, instead of waiting forever.
func TestLockHeldByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd, out := startHelper(t, "hold", dir)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper did not open the store: %q %v", out.Text(), out.Err())
	}
	_, err := Open(dir, Options{Timeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("Open succeeded while another process holds the store")
	}
	if !errdefs.IsUnavailable(err) {
		t.Errorf("Open = %v, want ErrUnavailable", err)
	}
	for _, want := range []string{FileName, "locked", strconv.Itoa(cmd.Process.Pid), "stop it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error %q does not mention %q", err, want)
		}
	}
	// Once the holder is gone the store opens.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	s := openT(t, dir, Options{Timeout: 30 * time.Second})
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashKeepsEveryAcknowledgedRecord kills a writing process with
// SIGKILL at arbitrary moments: every record whose Create returned is
// there afterwards and the file is consistent.
func TestCrashKeepsEveryAcknowledgedRecord(t *testing.T) {
	dir := t.TempDir()
	acked := map[string]bool{}
	for round := 0; round < 3; round++ {
		cmd, out := startHelper(t, "write", dir)
		n := 0
		for n < 20+round*7 && out.Scan() {
			line := out.Text()
			id, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				t.Fatalf("helper: %s", line)
			}
			acked[id] = true
			n++
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Acks printed before the kill landed count too.
		for out.Scan() {
			if id, ok := strings.CutPrefix(out.Text(), "ack "); ok {
				acked[id] = true
			}
		}
		_ = cmd.Wait()
	}
	s := openT(t, dir, Options{})
	if err := s.Check(); err != nil {
		t.Fatalf("store inconsistent after crashes: %v", err)
	}
	for id := range acked {
		if _, err := s.Get(id); err != nil {
			t.Errorf("acknowledged record %s lost: %v", id, err)
		}
	}
	t.Logf("%d acknowledged records survived 3 SIGKILLs", len(acked))
}

// TestSchemaVersionAndMigration writes records at version 1, opens at
// version 2 with a migration, and checks the records were migrated and
// stamped; an older reader then refuses the newer store.
func TestSchemaVersionAndMigration(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := newRecord("web")
	if err := s.Create(r); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	if _, err := Open(dir, Options{Version: 2}); !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "no migration from schema version 1") {
		t.Fatalf("Open at version 2 without a migration = %v, want ErrInvalidState", err)
	}
	calls := 0
	s2, err := Open(dir, Options{Version: 2, Migrations: map[int]Migration{1: func(raw []byte) ([]byte, error) {
		calls++
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		if m["schema"] != float64(1) {
			return nil, fmt.Errorf("migration got schema %v", m["schema"])
		}
		m["group"] = "migrated"
		return json.Marshal(m)
	}}})
	if err != nil {
		t.Fatalf("Open with a migration: %v", err)
	}
	got, err := s2.Get(r.Container.ID)
	if err != nil || got.Schema != 2 || got.Group != "migrated" || got.Container.Name != "web" || calls != 1 {
		t.Fatalf("after migration: %+v, %v (calls %d); want schema 2, group migrated", got, err, calls)
	}
	_ = s2.Close()
	// A second open at version 2 migrates nothing.
	s3, err := Open(dir, Options{Version: 2, Migrations: map[int]Migration{1: func([]byte) ([]byte, error) {
		return nil, fmt.Errorf("must not run again")
	}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = s3.Close()

	if _, err := Open(dir, Options{Version: 1}); !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer store = %v, want ErrInvalidState saying newer", err)
	}
}
