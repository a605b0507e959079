package rpolicy

import (
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/resources"
)

func TestValidate(t *testing.T) {
	good := []resources.Limits{
		{},
		{CPUShares: 2}, {CPUShares: 262144}, {CPUs: 0.01}, {CPUs: 2},
		{CPUSetCPUs: "0-1", CPUSetMems: "0"},
		{MemoryBytes: MinMemoryBytes, MemorySoftBytes: 1, SwapBytes: -1},
		{MemoryBytes: 64 << 20, SwapBytes: 64 << 20},
		{IOReadBPS: 1, IODevice: "/"}, {Pids: -1}, {Pids: 1},
		{Devices: resources.DefaultDeviceRules()},
	}
	for _, l := range good {
		if err := Validate(l, 2); err != nil {
			t.Errorf("Validate(%+v): %v, want nil", l, err)
		}
	}
	bad := []struct {
		l     resources.Limits
		field string
	}{
		{resources.Limits{CPUShares: 1}, "CPUShares"},
		{resources.Limits{CPUs: 3}, "CPUs"},
		{resources.Limits{CPUs: 0.001}, "CPUs"},
		{resources.Limits{CPUSetCPUs: "2"}, "CPUSetCPUs"},
		{resources.Limits{CPUSetCPUs: "1-0"}, "CPUSetCPUs"},
		{resources.Limits{CPUSetMems: "a"}, "CPUSetMems"},
		{resources.Limits{MemoryBytes: MinMemoryBytes - 1}, "MemoryBytes"},
		{resources.Limits{MemoryBytes: MaxMemoryBytes + 1}, "MemoryBytes"},
		{resources.Limits{MemorySoftBytes: -1}, "MemorySoftBytes"},
		{resources.Limits{SwapBytes: -2}, "SwapBytes"},
		{resources.Limits{IODevice: "/"}, "IODevice"},
		{resources.Limits{Pids: MaxPids + 1}, "Pids"},
		{resources.Limits{Devices: []resources.DeviceRule{{Type: "c", Major: -2, Minor: 0, Access: "r"}}}, "Devices[0]"},
		{resources.Limits{Devices: []resources.DeviceRule{{Type: "c", Major: 1, Minor: 3}}}, "Devices[0]"},
	}
	for _, tc := range bad {
		err := Validate(tc.l, 2)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%+v) = %v, want InvalidArgument naming %s", tc.l, err, tc.field)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	got, err := ParseCPUList("0-2, 5,7-7")
	if err != nil || !slices.Equal(got, []int{0, 1, 2, 5, 7}) {
		t.Errorf("ParseCPUList = %v, %v", got, err)
	}
	for _, s := range []string{"", "-1", "3-1", "x", "0-99999999"} {
		if _, err := ParseCPUList(s); err == nil {
			t.Errorf("ParseCPUList(%q) succeeded", s)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "berth-1_x.y"} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "a b", strings.Repeat("x", 129)} {
		if err := ValidateID(id); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateID(%q) = %v, want InvalidArgument", id, err)
		}
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s := Store{Dir: t.TempDir() + "/groups"}
	r := Record{ID: "g1", Limits: resources.Limits{MemoryBytes: 64 << 20, Devices: resources.DefaultDeviceRules()}, Paused: true}
	if err := s.Put(r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil || len(got) != 1 || got["g1"].Limits.MemoryBytes != 64<<20 || !got["g1"].Paused || len(got["g1"].Limits.Devices) != len(r.Limits.Devices) {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	for range 2 {
		if err := s.Remove("g1"); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if got, err := s.Load(); err != nil || len(got) != 0 {
		t.Fatalf("Load after Remove = %+v, %v", got, err)
	}
	if got, err := (Store{}).Load(); err != nil || len(got) != 0 {
		t.Fatalf("empty Store Load = %+v, %v", got, err)
	}
}
