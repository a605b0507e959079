//go:build !linux

package rootfs

import (
	"context"
	"io"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/mount"
)

// WriteTar is Linux only.
func WriteTar(io.Writer, string, string, TarOptions) error { return errUnsupported }

// Extract is Linux only.
func Extract(context.Context, string, string, io.Reader, hclog.Logger) error { return errUnsupported }

// Mount is Linux only.
func Mount([]mount.Mount, string, bool) (string, func() error, error) {
	return "", nil, errUnsupported
}

// Cleanup has nothing to clean where Mount never mounts.
func Cleanup(string) error { return nil }

// MountBinds is Linux only.
func MountBinds(string, []Bind) (func() error, error) { return nil, errUnsupported }
