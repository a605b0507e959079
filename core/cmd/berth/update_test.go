package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/sdk/resources"
)

// applyUpdate parses update's flags and applies them to from.
func applyUpdate(t *testing.T, from resources.Limits, args ...string) (resources.Limits, error) {
	t.Helper()
	var f updateFlags
	cmd := &cobra.Command{}
	f.register(cmd.Flags())
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	err := f.apply(cmd, &from)
	return from, err
}

func TestUpdateFlags(t *testing.T) {
	base := resources.Limits{MemoryBytes: 64 << 20, Pids: 50, IODevice: "/dev/vda", IOReadBPS: 1 << 20}
	for _, tc := range []struct {
		args []string
		want resources.Limits
	}{
		// Docker's --memory-swap is memory plus swap; the rest stays.
		{[]string{"--memory-swap", "96m"}, resources.Limits{MemoryBytes: 64 << 20, SwapBytes: 32 << 20, Pids: 50, IODevice: "/dev/vda", IOReadBPS: 1 << 20}},
		{[]string{"-m", "128m", "--memory-swap", "256m"}, resources.Limits{MemoryBytes: 128 << 20, SwapBytes: 128 << 20, Pids: 50, IODevice: "/dev/vda", IOReadBPS: 1 << 20}},
		{[]string{"--memory-swap", "-1"}, resources.Limits{MemoryBytes: 64 << 20, SwapBytes: -1, Pids: 50, IODevice: "/dev/vda", IOReadBPS: 1 << 20}},
		// A rate alone keeps the device; both rates may name a new one.
		{[]string{"--device-write-bps", "/dev/vda:2mb"}, resources.Limits{MemoryBytes: 64 << 20, Pids: 50, IODevice: "/dev/vda", IOReadBPS: 1 << 20, IOWriteBPS: 2 << 20}},
		{[]string{"--device-read-bps", "/dev/vdb:3mb", "--device-write-bps", "/dev/vdb:4mb"}, resources.Limits{MemoryBytes: 64 << 20, Pids: 50, IODevice: "/dev/vdb", IOReadBPS: 3 << 20, IOWriteBPS: 4 << 20}},
	} {
		got, err := applyUpdate(t, base, tc.args...)
		if err != nil || got.MemoryBytes != tc.want.MemoryBytes || got.SwapBytes != tc.want.SwapBytes || got.Pids != tc.want.Pids ||
			got.IODevice != tc.want.IODevice || got.IOReadBPS != tc.want.IOReadBPS || got.IOWriteBPS != tc.want.IOWriteBPS {
			t.Errorf("update %q = %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		from resources.Limits
		args []string
		want string
	}{
		{resources.Limits{}, []string{"--memory-swap", "96m"}, "needs a memory limit"},
		{base, []string{"--memory-swap", "32m"}, "at least as large"},
		{base, []string{"--memory-swap", "64m"}, "cannot be expressed"},
		{base, []string{"--memory-swap", "lots"}, "--memory-swap"},
		{base, []string{"--device-write-bps", "/dev/vdb:1mb"}, "one device only"},
	} {
		if _, err := applyUpdate(t, tc.from, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("update %q from %+v: error %v, want one containing %q", tc.args, tc.from, err, tc.want)
		}
	}
}
