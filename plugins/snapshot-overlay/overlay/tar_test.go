package overlay

import (
	"archive/tar"
	"io"
	"strings"
	"testing"
)

// writeTar writes a tar of names: a trailing slash makes a directory, any
// other name a file whose content is its name.
func writeTar(t *testing.T, w io.Writer, names ...string) {
	t.Helper()
	tw := tar.NewWriter(w)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(n))}
		if strings.HasSuffix(n, "/") {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			_, _ = tw.Write([]byte(n))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
