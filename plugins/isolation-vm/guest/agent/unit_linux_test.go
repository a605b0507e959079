//go:build linux

package agent

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/resources"
)

func TestLimitsFromSpec(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	s := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(150000), Period: u64(100000), Cpus: "0-1"},
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Reservation: i64(32 << 20), Swap: i64(96 << 20)},
		Pids:   &specs.LinuxPids{Limit: i64(50)},
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rw"}},
	}}}
	l, err := limitsFromSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	want := resources.Limits{CPUShares: 512, CPUs: 1.5, CPUSetCPUs: "0-1", MemoryBytes: 64 << 20, MemorySoftBytes: 32 << 20,
		SwapBytes: 32 << 20, Pids: 50, Devices: []resources.DeviceRule{
			{Allow: false, Type: "a", Major: -1, Minor: -1, Access: "rwm"},
			{Allow: true, Type: "c", Major: 1, Minor: 3, Access: "rw"}}}
	if l.CPUShares != want.CPUShares || l.CPUs != want.CPUs || l.CPUSetCPUs != want.CPUSetCPUs || l.MemoryBytes != want.MemoryBytes ||
		l.MemorySoftBytes != want.MemorySoftBytes || l.SwapBytes != want.SwapBytes || l.Pids != want.Pids || len(l.Devices) != 2 ||
		l.Devices[0] != want.Devices[0] || l.Devices[1] != want.Devices[1] {
		t.Errorf("limits = %+v\nwant     %+v", l, want)
	}
	if l, _ := limitsFromSpec(&specs.Spec{}); l.MemoryBytes != 0 || l.CPUs != 0 || l.Devices != nil {
		t.Errorf("no resources gave %+v", l)
	}
}

func TestParseOptions(t *testing.T) {
	for _, c := range []struct {
		in    []string
		flags uintptr
		data  string
	}{
		{[]string{"rw", "format=raw"}, 0, ""},
		{[]string{"ro", "noatime", "format=qcow2"}, unix.MS_RDONLY | unix.MS_NOATIME, ""},
		{[]string{"ro", "rw", "errors=remount-ro", "commit=30"}, 0, "errors=remount-ro,commit=30"},
		{[]string{"rbind", "nosuid", "nodev"}, unix.MS_NOSUID | unix.MS_NODEV, ""},
	} {
		f, d := parseOptions(c.in)
		if f != c.flags || d != c.data {
			t.Errorf("parseOptions(%q) = %#x %q, want %#x %q", c.in, f, d, c.flags, c.data)
		}
	}
}
