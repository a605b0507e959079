package vmkernel

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/therootcompany/xz"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// maxModule bounds one decompressed module (the largest Debian module is
// a few MB).
const maxModule = 128 << 20

// readModule reads a module from the package, decompressing .ko.xz, .ko.zst
// and .ko.gz: the guest kernel may not be able to.
func readModule(name string, r io.Reader) ([]byte, error) {
	var src io.Reader = r
	switch {
	case strings.HasSuffix(name, ".ko.xz"):
		xr, err := xz.NewReader(r, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: xz: %w", name, err)
		}
		src = xr
	case strings.HasSuffix(name, ".ko.zst"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, fmt.Errorf("%s: zstd: %w", name, err)
		}
		defer zr.Close()
		src = zr
	case strings.HasSuffix(name, ".ko.gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		src = gr
	}
	data, err := io.ReadAll(io.LimitReader(src, maxModule+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > maxModule {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxModule)
	}
	return data, nil
}

func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// pruneEmptyDirs removes the empty directories under root (not root).
func pruneEmptyDirs(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		ents, err := os.ReadDir(dirs[i])
		if err != nil {
			return err
		}
		if len(ents) == 0 {
			if err := os.Remove(dirs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
