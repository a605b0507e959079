//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/resources"
)

var mountFlags = map[string]struct {
	flag  uintptr
	clear bool
}{
	"ro": {unix.MS_RDONLY, false}, "rw": {unix.MS_RDONLY, true},
	"nosuid": {unix.MS_NOSUID, false}, "suid": {unix.MS_NOSUID, true},
	"nodev": {unix.MS_NODEV, false}, "dev": {unix.MS_NODEV, true},
	"noexec": {unix.MS_NOEXEC, false}, "exec": {unix.MS_NOEXEC, true},
	"noatime": {unix.MS_NOATIME, false}, "relatime": {unix.MS_RELATIME, false},
	"nodiratime": {unix.MS_NODIRATIME, false}, "sync": {unix.MS_SYNCHRONOUS, false},
	"dirsync": {unix.MS_DIRSYNC, false},
}

// parseOptions splits mount(8) options into flags and data; snapshot
// descriptor options that are not mount options (format=raw, loop) are
// dropped.
func parseOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if o == "" || o == "loop" || o == "bind" || o == "rbind" || o == "defaults" || strings.HasPrefix(o, "format=") {
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

// mountRootfs mounts the container's rootfs on target: a block device
// (waiting a bounded time for its node: virtio-blk probes asynchronously)
// or a directory bound there.
func mountRootfs(ctx context.Context, r *agentpb.Rootfs, target string) error {
	flags, data := parseOptions(r.Options)
	st, err := os.Stat(r.Source)
	if r.Fstype == "bind" || (err == nil && st.IsDir()) {
		if err != nil {
			return err
		}
		return bindMount(r.Source, target, flags&unix.MS_RDONLY != 0)
	}
	if r.Fstype == "" {
		return errdefs.InvalidArgument("no filesystem type for block device %s", r.Source)
	}
	deadline := time.Now().Add(10 * time.Second)
	for err != nil {
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return fmt.Errorf("device: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		_, err = os.Stat(r.Source)
	}
	if err := unix.Mount(r.Source, target, r.Fstype, flags, data); err != nil {
		return fmt.Errorf("mount -t %s -o %q: %w", r.Fstype, data, err)
	}
	return nil
}

func bindMount(src, target string, ro bool) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if ro {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return fmt.Errorf("make %s read-only: %w", target, err)
		}
	}
	return nil
}

// mountShare mounts a host directory share on target.
func mountShare(s *agentpb.Share, target string) error {
	var flags uintptr
	if s.ReadOnly {
		flags = unix.MS_RDONLY
	}
	switch s.Type {
	case vmagent.Share9P, "":
		return unix.Mount(s.Source, target, "9p", flags, "trans=virtio,version=9p2000.L,msize=512000,cache=none")
	case vmagent.ShareVirtiofs:
		return unix.Mount(s.Source, target, "virtiofs", flags, "")
	case vmagent.ShareBind:
		return bindMount(s.Source, target, s.ReadOnly)
	default:
		return errdefs.InvalidArgument("share type %q is not one of 9p, virtiofs, bind", s.Type)
	}
}

// unmount unmounts target (and what is mounted below it); a target that
// is not mounted is fine.
func unmount(target string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil:
			continue // a stacked mount: unmount the next one too
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(20 * time.Millisecond)
		default:
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
}

func cloneSpec(s *specs.Spec) *specs.Spec {
	b, err := json.Marshal(s)
	if err != nil {
		return s
	}
	var out specs.Spec
	if err := json.Unmarshal(b, &out); err != nil {
		return s
	}
	return &out
}

// limitsFromSpec maps the OCI spec's Linux.Resources to the resources
// layer's Limits, which cgroupctl enforces in the guest's cgroups.
func limitsFromSpec(s *specs.Spec) (resources.Limits, error) {
	var l resources.Limits
	if s.Linux == nil || s.Linux.Resources == nil {
		return l, nil
	}
	r := s.Linux.Resources
	if c := r.CPU; c != nil {
		if c.Shares != nil {
			l.CPUShares = *c.Shares
		}
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			l.CPUs = float64(*c.Quota) / float64(period)
		}
		l.CPUSetCPUs, l.CPUSetMems = c.Cpus, c.Mems
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			l.MemoryBytes = *m.Limit
		}
		if m.Reservation != nil && *m.Reservation > 0 {
			l.MemorySoftBytes = *m.Reservation
		}
		if m.Swap != nil && l.MemoryBytes > 0 {
			switch {
			case *m.Swap < 0:
				l.SwapBytes = -1
			case *m.Swap > l.MemoryBytes:
				l.SwapBytes = *m.Swap - l.MemoryBytes
			}
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit > 0 {
		l.Pids = *r.Pids.Limit
	}
	for _, d := range r.Devices {
		rule := resources.DeviceRule{Allow: d.Allow, Type: d.Type, Major: -1, Minor: -1, Access: d.Access}
		if rule.Type == "" {
			rule.Type = "a"
		}
		if rule.Access == "" {
			rule.Access = "rwm"
		}
		if d.Major != nil {
			rule.Major = *d.Major
		}
		if d.Minor != nil {
			rule.Minor = *d.Minor
		}
		l.Devices = append(l.Devices, rule)
	}
	return l, nil
}
