package vmagent

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/vmagent/agentpb"
)

// RefreshDisk waits until the guest's block device (e.g. "/dev/vda")
// reports at least minBytes of capacity and drops its buffer cache, then
// returns the capacity in bytes. A VM restored from a template (issue 10)
// calls it after the host pointed the placeholder disk at the container's
// image and signalled the new size (qemu block_resize).
func (c *Client) RefreshDisk(ctx context.Context, device string, minBytes uint64) (uint64, error) {
	r, err := c.api.RefreshDisk(ctx, &agentpb.RefreshDiskRequest{Device: device, MinBytes: minBytes})
	if err != nil {
		return 0, fmt.Errorf("refresh guest disk %s: %w", device, err)
	}
	return r.SizeBytes, nil
}
