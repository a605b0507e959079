// Package rpolicy holds what Berth's resources plugins share whatever the
// platform: the checks every Limits value goes through, the on-disk record
// of groups, and (engine.go) the OS-neutral policy engine that enforces
// limits by sampling where the kernel has no cgroups (darwin).
package rpolicy

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/resources"
)

// Bounds that make a limit absurd rather than merely large. They follow
// Docker's checks where Docker has one.
const (
	// MinMemoryBytes is Docker's minimum memory limit (6 MiB): below it a
	// container cannot even start its init.
	MinMemoryBytes = 6 << 20
	// MaxMemoryBytes is 1 PiB; no host this runs on has that much.
	MaxMemoryBytes = 1 << 50
	// MinCPUShares and MaxCPUShares are the kernel's bounds of cpu.shares.
	MinCPUShares = 2
	MaxCPUShares = 262144
	// MinCPUs is Docker's smallest --cpus (one hundredth of a CPU).
	MinCPUs = 0.01
	// MaxPids is PID_MAX_LIMIT on 64-bit Linux.
	MaxPids = 4 << 20
)

// ValidateID checks that id can name a group: it becomes a directory name,
// so it must be a plain path component of letters, digits, '-', '_' and '.'.
func ValidateID(id string) error {
	if id == "" {
		return errdefs.InvalidArgument("group id is empty")
	}
	if len(id) > 128 {
		return errdefs.InvalidArgument("group id %q is %d bytes long, at most 128 are allowed", id, len(id))
	}
	if id[0] == '.' {
		return errdefs.InvalidArgument("group id %q starts with '.'", id)
	}
	for _, ch := range id {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '.':
		default:
			return errdefs.InvalidArgument("group id %q has %q: only letters, digits, '-', '_' and '.' are allowed", id, ch)
		}
	}
	return nil
}

// Validate checks l for values no controller can honour (negative,
// out-of-range or absurd) and returns an InvalidArgument error naming the
// field and value. ncpu is the number of CPUs of the host (0 = runtime's).
// It says nothing about whether a platform can enforce a field; that is
// each controller's business (ErrNotImplemented).
func Validate(l resources.Limits, ncpu int) error {
	if ncpu <= 0 {
		ncpu = runtime.NumCPU()
	}
	if l.CPUShares != 0 && (l.CPUShares < MinCPUShares || l.CPUShares > MaxCPUShares) {
		return errdefs.InvalidArgument("CPUShares = %d is out of range: use %d–%d (1024 is the default weight) or 0 for the default", l.CPUShares, MinCPUShares, MaxCPUShares)
	}
	if math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0) || l.CPUs < 0 {
		return errdefs.InvalidArgument("CPUs = %v is not a positive number of CPUs (0 = no quota)", l.CPUs)
	}
	if l.CPUs != 0 && (l.CPUs < MinCPUs || l.CPUs > float64(ncpu)) {
		return errdefs.InvalidArgument("CPUs = %v is out of range: use %.2f–%d, as this host has %d CPUs", l.CPUs, MinCPUs, ncpu, ncpu)
	}
	if l.CPUSetCPUs != "" {
		cpus, err := ParseCPUList(l.CPUSetCPUs)
		if err != nil {
			return errdefs.InvalidArgument("CPUSetCPUs = %q: %v", l.CPUSetCPUs, err)
		}
		for _, c := range cpus {
			if c >= ncpu {
				return errdefs.InvalidArgument("CPUSetCPUs = %q names CPU %d, but this host has CPUs 0–%d", l.CPUSetCPUs, c, ncpu-1)
			}
		}
	}
	if l.CPUSetMems != "" {
		if _, err := ParseCPUList(l.CPUSetMems); err != nil {
			return errdefs.InvalidArgument("CPUSetMems = %q: %v", l.CPUSetMems, err)
		}
	}
	if l.MemoryBytes < 0 || (l.MemoryBytes != 0 && l.MemoryBytes < MinMemoryBytes) || l.MemoryBytes > MaxMemoryBytes {
		return errdefs.InvalidArgument("MemoryBytes = %d is out of range: use %d (6 MiB) to %d (1 PiB), or 0 for no limit", l.MemoryBytes, MinMemoryBytes, int64(MaxMemoryBytes))
	}
	if l.MemorySoftBytes < 0 || l.MemorySoftBytes > MaxMemoryBytes {
		return errdefs.InvalidArgument("MemorySoftBytes = %d is out of range: use 1 to %d (1 PiB), or 0 for no soft limit", l.MemorySoftBytes, int64(MaxMemoryBytes))
	}
	if l.MemoryBytes != 0 && l.MemorySoftBytes > l.MemoryBytes {
		return errdefs.InvalidArgument("MemorySoftBytes = %d is above MemoryBytes = %d: the soft limit must not exceed the hard limit", l.MemorySoftBytes, l.MemoryBytes)
	}
	if l.SwapBytes < -1 || l.SwapBytes > MaxMemoryBytes {
		return errdefs.InvalidArgument("SwapBytes = %d is out of range: use -1 (unlimited), 0 (default) or a byte count up to 1 PiB", l.SwapBytes)
	}
	if l.SwapBytes > 0 && l.MemoryBytes == 0 {
		return errdefs.InvalidArgument("SwapBytes = %d needs MemoryBytes: swap is allowed beyond the hard memory limit, so set one", l.SwapBytes)
	}
	if l.IODevice != "" && l.IOReadBPS == 0 && l.IOWriteBPS == 0 {
		return errdefs.InvalidArgument("IODevice = %q is given without IOReadBPS or IOWriteBPS", l.IODevice)
	}
	if l.Pids < -1 || l.Pids > MaxPids {
		return errdefs.InvalidArgument("Pids = %d is out of range: use 1–%d, -1 for unlimited or 0 for the default", l.Pids, MaxPids)
	}
	for i, d := range l.Devices {
		if err := validateDevice(d); err != nil {
			return errdefs.InvalidArgument("Devices[%d] = %+v: %v", i, d, err)
		}
	}
	return nil
}

func validateDevice(d resources.DeviceRule) error {
	switch d.Type {
	case "a", "b", "c":
	default:
		return fmt.Errorf("Type %q is not one of \"a\", \"b\", \"c\"", d.Type)
	}
	if d.Major < -1 || d.Minor < -1 {
		return fmt.Errorf("Major/Minor must be device numbers or -1 (any)")
	}
	if d.Access == "" {
		return fmt.Errorf("Access is empty: use a combination of \"r\", \"w\", \"m\"")
	}
	for _, ch := range d.Access {
		if !strings.ContainsRune("rwm", ch) {
			return fmt.Errorf("Access %q has %q: use a combination of \"r\", \"w\", \"m\"", d.Access, ch)
		}
	}
	return nil
}

// ParseCPUList parses the kernel's list format ("0-2,5") into the numbers
// it names, in order.
func ParseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("%q is not a number or range like 0-3", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a range like 0-3", part)
			}
		}
		if b-a > 1<<16 {
			return nil, fmt.Errorf("range %q is too large", part)
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}
