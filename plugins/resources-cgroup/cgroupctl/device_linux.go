package cgroupctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// blockDevice returns the major:minor of the disk that holds path, as the
// IO throttle wants it: the block device of path's filesystem, or, when
// that is a partition, the whole disk it belongs to (the kernel throttles
// disks, not partitions). A path on a filesystem without a block device
// (tmpfs, overlayfs, a network filesystem) is an error that says so.
func blockDevice(path string) (major, minor int64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, errdefs.InvalidArgument("IODevice %q: %v", path, err)
	}
	dev := st.Dev
	// A block device node names its device itself.
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		dev = st.Rdev
	}
	maj, mnr := int64(unix.Major(dev)), int64(unix.Minor(dev))
	if maj == 0 {
		return 0, 0, errdefs.InvalidArgument("IODevice %q is on a filesystem with no block device (device %d:%d: tmpfs, overlay or similar); give a path on a disk-backed filesystem", path, maj, mnr)
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", maj, mnr)
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		// /sys/dev/block/M:m links to .../block/<disk>/<partition>.
		target, err := filepath.EvalSymlinks(sys)
		if err != nil {
			return 0, 0, fmt.Errorf("IODevice %q: find the disk of partition %d:%d: %w", path, maj, mnr, err)
		}
		data, err := os.ReadFile(filepath.Join(filepath.Dir(target), "dev"))
		if err != nil {
			return 0, 0, fmt.Errorf("IODevice %q: find the disk of partition %d:%d: %w", path, maj, mnr, err)
		}
		if _, err := fmt.Sscanf(strings.TrimSpace(string(data)), "%d:%d", &maj, &mnr); err != nil {
			return 0, 0, fmt.Errorf("IODevice %q: parse %s: %w", path, filepath.Join(filepath.Dir(target), "dev"), err)
		}
	}
	return maj, mnr, nil
}
