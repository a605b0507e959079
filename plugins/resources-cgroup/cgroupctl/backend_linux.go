package cgroupctl

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// Placement annotations: how the isolation layer joins the group.
const (
	// annotationMode is "v1" or "v2".
	annotationMode = "berth.resources.cgroup/mode"
	// annotationRoot is where the hierarchies are mounted; CgroupPath is
	// relative to <root>/<controller> (v1) or <root> (v2).
	annotationRoot = "berth.resources.cgroup/root"
	// annotationControllers lists the v1 hierarchies to join, comma-separated.
	annotationControllers = "berth.resources.cgroup/controllers"
)

const defaultCgroupRoot = "/sys/fs/cgroup"

// newBackend picks the hierarchy: mode "auto" takes v2 where
// /sys/fs/cgroup (or cgroup_root) is a cgroup2 mount and v1 otherwise
// (legacy and hybrid hosts); "v1" and "v2" force one. ioDir is where IO
// limits apply when a group names no IODevice.
func newBackend(s settings, ioDir string, log hclog.Logger) (backend, error) {
	if ioDir == "" {
		ioDir = os.TempDir()
	}
	mode, root := s.Mode, s.CgroupRoot
	if mode == modeAuto {
		probe := root
		if probe == "" {
			probe = defaultCgroupRoot
		}
		var st unix.Statfs_t
		if err := unix.Statfs(probe, &st); err != nil {
			return nil, errdefs.Unavailable("resources-cgroup: cgroup root %s: %v (is cgroupfs mounted?)", probe, err)
		}
		mode = modeV1
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			mode = modeV2
		}
		log.Debug("detected cgroup layout", "root", probe, "host_mode", hostMode(), "using", mode)
	}
	switch mode {
	case modeV2:
		if root == "" {
			root = defaultCgroupRoot
			if cgroups.Mode() == cgroups.Hybrid {
				root = filepath.Join(defaultCgroupRoot, "unified")
			}
		}
		return newV2Backend(root, s.Parent, ioDir, log)
	default:
		if root == "" {
			root = defaultCgroupRoot
		}
		return newV1Backend(root, s.Parent, ioDir, log)
	}
}

// hostMode names the host's cgroup layout as the library detects it.
func hostMode() string {
	switch cgroups.Mode() {
	case cgroups.Legacy:
		return "legacy"
	case cgroups.Hybrid:
		return "hybrid"
	case cgroups.Unified:
		return "unified"
	}
	return "unavailable"
}

// processAlive returns NotFound when pid names no live process. A zombie
// counts as gone: it can no longer be moved anywhere useful.
func processAlive(pid int) error {
	if err := unix.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return errdefs.NotFound("process %d does not exist (it exited or was never started)", pid)
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err == nil {
		// The state follows the command name in parentheses.
		for i := len(data) - 1; i > 0; i-- {
			if data[i] == ')' {
				if i+2 < len(data) && data[i+2] == 'Z' {
					return errdefs.NotFound("process %d has exited (it is a zombie waiting to be reaped)", pid)
				}
				break
			}
		}
	}
	return nil
}

func closeFD(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}

func now() time.Time { return time.Now() }

// readPidsEvents returns the "max" count of a pids.events file: how many
// forks the pids limit refused. (The library parses pids.current and
// pids.max only.)
func readPidsEvents(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "max "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}
