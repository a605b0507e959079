//go:build linux

package ext4

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestWriteOverlay checks the qcow2 overlays written in Go with qemu's own
// tools: qemu-img check finds no error or leak, info names the raw
// backing file and the size, the overlay reads exactly as its backing
// file, a write through qemu-io lands in the overlay only, and readImage
// reads both the backing's and the written clusters.
func TestWriteOverlay(t *testing.T) {
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (qemu-utils) is needed to check qcow2 files: %v", tool, err)
		}
	}
	dir := t.TempDir()
	backing := filepath.Join(dir, "base.raw")
	tl := tools{}
	var err error
	if tl.mkfsPath, err = findTool("", "mkfs.ext4", mkfsDirs...); err != nil {
		t.Skip(err)
	}
	for _, size := range []int64{64 << 20, 2 << 30, 5<<30 + 4096} {
		_ = os.Remove(backing)
		if err := tl.mkfs(context.Background(), "", backing, size); err != nil {
			t.Fatal(err)
		}
		ov := filepath.Join(dir, "ov.qcow2")
		_ = os.Remove(ov)
		if err := writeOverlay(backing, ov, size); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("qemu-img", "check", "-f", "qcow2", ov).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img check of a %d-byte overlay: %v\n%s", size, err, out)
		}
		info := qemuImgInfo(t, ov)
		if info["backing-filename"] != backing || info["backing-filename-format"] != "raw" || info["virtual-size"] != float64(size) {
			t.Errorf("qemu-img info: %v", info)
		}
		if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", ov, backing).CombinedOutput(); err != nil {
			t.Errorf("qemu-img compare overlay backing: %v\n%s", err, out)
		}
		base, err := usedInodes(backing)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := usedInodes(ov); err != nil || got != base {
			t.Errorf("usedInodes through the overlay = %d, %v; want the backing's %d", got, err, base)
		}
		if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1048576 65536", ov).CombinedOutput(); err != nil {
			t.Fatalf("qemu-io write: %v\n%s", err, out)
		}
		if out, err := exec.Command("qemu-img", "check", "-f", "qcow2", ov).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img check after a write: %v\n%s", err, out)
		}
		buf := make([]byte, 512)
		if err := readImage(ov, buf, 1048576+4096); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{0xab}, 512)) {
			t.Errorf("readImage of a written cluster = %x…, %v", buf[:8], err)
		}
	}
}
