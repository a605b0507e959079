package tasklog

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readLog(t *testing.T, path string) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestLogWriterLinesAndStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := OpenLog(path, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	l.now = func() time.Time { return fixed }
	must(t, l.Write("stdout", []byte("hel")))
	must(t, l.Write("stderr", []byte("oops\n")))
	must(t, l.Write("stdout", []byte("lo\nworld\nno newline")))
	must(t, l.Close())
	got := readLog(t, path)
	want := []Entry{{"oops\n", "stderr", fixed}, {"hello\n", "stdout", fixed}, {"world\n", "stdout", fixed}, {"no newline", "stdout", fixed}}
	if len(got) != len(want) {
		t.Fatalf("entries %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Log != want[i].Log || got[i].Stream != want[i].Stream || !got[i].Time.Equal(fixed) {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestLogWriterRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := OpenLog(path, 200, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		must(t, l.Write("stdout", []byte(strings.Repeat("x", 20)+"\n")))
	}
	must(t, l.Close())
	for _, p := range []string{path, path + ".1", path + ".2"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fi.Size() > 200 {
			t.Errorf("%s is %d bytes, over the 200 limit", p, fi.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more than 3 files kept")
	}
	// Entries stay whole across rotation.
	if n := len(readLog(t, path)); n == 0 {
		t.Error("current log is empty after rotation")
	}
}

func TestLogWriterSplitsLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := OpenLog(path, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	must(t, l.Write("stdout", []byte(strings.Repeat("y", 40<<10)+"\n")))
	must(t, l.Close())
	got := readLog(t, path)
	if len(got) != 3 || len(got[0].Log) != 16<<10 || !strings.HasSuffix(got[2].Log, "\n") {
		t.Fatalf("long line split into %d entries", len(got))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
