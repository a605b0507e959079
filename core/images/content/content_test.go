package content

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
)

func TestIngestVerifiesAndCommitsOnce(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := []byte("hello, berth")
	d := FromBytes(data)

	cases := []struct {
		name string
		size int64
		body []byte
	}{
		{"wrong digest", int64(len(data)), []byte("HELLO, berth")},
		{"truncated", int64(len(data)), data[:5]},
		{"oversized", int64(len(data)), append(bytes.Clone(data), '!')},
	}
	for _, tc := range cases {
		_, err := s.Ingest(ctx, d, tc.size, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tc.body)), nil })
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), d.Short()) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if s.Has(d) {
			t.Fatalf("%s: blob committed", tc.name)
		}
	}
	if files, _ := s.IngestFiles(); len(files) != 0 {
		t.Errorf("failed ingests left %v", files)
	}

	// Concurrent ingests of one digest call open once.
	var opens atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Ingest(ctx, d, int64(len(data)), func() (io.ReadCloser, error) {
				opens.Add(1)
				return io.NopCloser(bytes.NewReader(data)), nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if opens.Load() != 1 {
		t.Errorf("open called %d times, want 1", opens.Load())
	}
	if err := s.Verify(d); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(s.BlobPath(d)); st.Mode().Perm() != 0o444 {
		t.Errorf("blob mode %v, want read-only", st.Mode())
	}
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(d); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.Open(d); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("open of deleted blob: %v", err)
	}
}

func TestOpenRemovesLeftoverTempFiles(t *testing.T) {
	root := t.TempDir()
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(root, "ingest", "abc-123")
	if err := os.WriteFile(left, []byte("half a layer"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if files, _ := s.IngestFiles(); len(files) != 0 {
		t.Errorf("Open kept %v", files)
	}
}

func TestParseDigest(t *testing.T) {
	for _, bad := range []string{"", "sha256:", "md5:abc", "sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("a", 63)} {
		if _, err := ParseDigest(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseDigest(%q) = %v", bad, err)
		}
	}
	if _, err := ParseDigest("sha256:" + strings.Repeat("a", 64)); err != nil {
		t.Error(err)
	}
}

// failingAtEnd is a source that verifies its own digest: it delivers every
// byte, then fails instead of returning EOF.
type failingAtEnd struct{ r io.Reader }

func (f failingAtEnd) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("error verifying sha256 checksum")
	}
	return n, err
}

func TestSourceVerifiesDigest(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := []byte("verified by the source")
	d := FromBytes(data)
	open := func(r io.Reader) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(r), nil }
	}
	// The source's own verdict is reported as a mismatch.
	if _, err := s.Ingest(ctx, d, int64(len(data)), open(failingAtEnd{bytes.NewReader(data)}), SourceVerifiesDigest()); !errors.Is(err, ErrMismatch) {
		t.Errorf("source failing at the end: %v", err)
	}
	// The size is still checked by the store.
	if _, err := s.Ingest(ctx, d, int64(len(data))+1, open(bytes.NewReader(data)), SourceVerifiesDigest()); !errors.Is(err, ErrMismatch) {
		t.Errorf("short source: %v", err)
	}
	if s.Has(d) {
		t.Fatal("blob committed after failures")
	}
	if _, err := s.Ingest(ctx, d, int64(len(data)), open(bytes.NewReader(data)), SourceVerifiesDigest()); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(d); err != nil {
		t.Fatal(err)
	}
}
