package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// RefreshDisk waits until the block device reports at least MinBytes of
// capacity (a VM restored from a template learns its new disk's size
// through a virtio config-change interrupt, handled asynchronously), then
// drops the device's buffer cache (BLKFLSBUF) so nothing the template's
// placeholder showed is served again. The wait is bounded by ctx and 10 s.
func (s *service) RefreshDisk(ctx context.Context, r *agentpb.RefreshDiskRequest) (*agentpb.RefreshDiskResponse, error) {
	dev := filepath.Clean(r.Device)
	if !strings.HasPrefix(dev, "/dev/") || strings.Count(dev, "/") != 2 {
		return nil, errdefs.InvalidArgument("refresh disk: device %q: want /dev/<name>", r.Device)
	}
	sizeFile := filepath.Join("/sys/class/block", filepath.Base(dev), "size")
	deadline := time.Now().Add(10 * time.Second)
	var size uint64
	for {
		b, err := os.ReadFile(sizeFile)
		if err != nil {
			if !os.IsNotExist(err) {
				return nil, fmt.Errorf("refresh disk %s: %w", dev, err)
			}
		} else {
			sectors, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("refresh disk %s: %s: %w", dev, sizeFile, err)
			}
			size = sectors * 512
			if size >= r.MinBytes && size > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, errdefs.Unavailable("refresh disk %s: capacity %d bytes, want at least %d (no resize seen within 10s)", dev, size, r.MinBytes)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("refresh disk %s: %w", dev, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return nil, fmt.Errorf("refresh disk %s: BLKFLSBUF: %w", dev, err)
	}
	return &agentpb.RefreshDiskResponse{SizeBytes: size}, nil
}
