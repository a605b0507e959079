// Package atomicfile replaces files so that a reader sees the old content
// or the new, never half of it, even when the writer is killed: the new
// content goes to a temporary file in the same directory, which is renamed
// over the old one.
package atomicfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Write creates or replaces path with what fill writes. The file gets
// perm; with durable it is synced to disk before the rename, so it
// survives a power loss too. On error path is unchanged and no temporary
// file is left.
func Write(path string, perm os.FileMode, durable bool, fill func(f *os.File) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = fill(f); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if durable {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteFile replaces path with data, durably.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, true, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteState replaces path with v as JSON (mode 0600), atomically but not
// durably: for state that describes processes and VMs, which a power loss
// ends anyway, where an fsync per change would cost more than the change.
func WriteState(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return Write(path, 0o600, false, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
}

// ReadJSON decodes the JSON file at path into v; a decoding error names
// the file.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
