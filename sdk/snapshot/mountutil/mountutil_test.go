package mountutil

import (
	"fmt"
	"strings"
	"testing"
)

func TestCompactLowerdirs(t *testing.T) {
	var lower []string
	for i := range 128 {
		lower = append(lower, fmt.Sprintf("/var/lib/berth/plugins/snapshot-overlay/snapshots/%d/fs", 1000+i))
	}
	opts := []string{"workdir=/var/lib/berth/plugins/snapshot-overlay/snapshots/2000/work", "upperdir=/var/lib/berth/plugins/snapshot-overlay/snapshots/2000/fs", "lowerdir=" + strings.Join(lower, ":"), "ro"}
	if _, data := Options(opts); len(data) < 4096 {
		t.Fatalf("test options are only %d bytes; they must exceed a page", len(data))
	}
	dir, out := CompactLowerdirs(opts)
	if dir != "/var/lib/berth/plugins/snapshot-overlay/snapshots" {
		t.Errorf("common dir = %q", dir)
	}
	flags, data := Options(out)
	if len(data) >= pageLimit {
		t.Errorf("compacted data is still %d bytes", len(data))
	}
	if !strings.Contains(data, "lowerdir=1000/fs:1001/fs:") || !strings.Contains(data, "upperdir=/var/lib/berth/plugins/snapshot-overlay/snapshots/2000/fs") {
		t.Errorf("compacted data %q", data[:200])
	}
	if flags == 0 {
		t.Error("the ro option was lost")
	}

	short := []string{"lowerdir=/a/1:/a/2", "upperdir=/u"}
	if dir, out := CompactLowerdirs(short); dir != "" || strings.Join(out, ",") != strings.Join(short, ",") {
		t.Errorf("short options were rewritten: %q %v", dir, out)
	}
	scattered := []string{"lowerdir=/" + strings.Repeat("x", 3000) + "/fs:/" + strings.Repeat("y", 3000) + "/fs"}
	if dir, _ := CompactLowerdirs(scattered); dir != "" {
		t.Errorf("lowerdirs sharing only / were compacted relative to %q", dir)
	}
}
