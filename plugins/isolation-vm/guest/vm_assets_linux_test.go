//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Throwaway boot assets for the VM test until internal/vmkernel's
// vmkerneltest is in: the kernel and modules straight from the cached
// Debian package, an initramfs made with cpio(1).

const kernelDeb = "/var/cache/berth/debs/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb"
const kernelRelease = "6.1.0-56-amd64"

// guestModules in load order (dependencies first; crc32c before ext4).
var guestModules = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_legacy_dev",
	"drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci", "drivers/char/virtio_console",
	"drivers/block/virtio_blk", "lib/crc16", "fs/mbcache", "fs/jbd2/jbd2", "crypto/crc32c_generic", "fs/ext4/ext4",
	"fs/netfs/netfs", "fs/fscache/fscache", "net/9p/9pnet", "net/9p/9pnet_virtio", "fs/9p/9p",
}

type assets struct{ kernel, initrd string }

func guestAssets(t *testing.T, dir string) assets {
	t.Helper()
	if _, err := os.Stat(kernelDeb); err != nil {
		t.Skipf("no cached kernel package %s (scripts/install-deps.sh fetches it)", kernelDeb)
	}
	stage := filepath.Join(dir, "initramfs")
	for _, d := range []string{"dev", "sbin", "modules", "proc", "sys", "newroot"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(stage, "init"), "github.com/berth-dev/berth/plugins/isolation-vm/guest")
	cmd := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`,
		"-o", filepath.Join(stage, "sbin", "berth-sandbox-init"), "github.com/berth-dev/berth/cmd/berth-sandbox-init")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the static sandbox init: %v\n%s", err, out)
	}
	// Kernel and modules out of the package.
	kdir := filepath.Join(dir, "kernel")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	members := []string{"./boot/vmlinuz-" + kernelRelease}
	for _, m := range guestModules {
		members = append(members, "./lib/modules/"+kernelRelease+"/kernel/"+m+".ko")
	}
	sh := fmt.Sprintf("dpkg-deb --fsys-tarfile %s | tar -x -C %s %s", kernelDeb, kdir, strings.Join(members, " "))
	run("sh", "-c", sh)
	for i, m := range guestModules {
		b, err := os.ReadFile(filepath.Join(kdir, "lib/modules", kernelRelease, "kernel", m+".ko"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stage, "modules", fmt.Sprintf("%02d-%s.ko", i, filepath.Base(m))), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// vmlinux: the XZ payload of the bzImage, for a PVH boot.
	bz, err := os.ReadFile(filepath.Join(kdir, "boot", "vmlinuz-"+kernelRelease))
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(bz, []byte("\xfd7zXZ\x00"))
	if off < 0 {
		t.Fatal("no XZ stream in the bzImage")
	}
	vmlinux := filepath.Join(dir, "vmlinux")
	xz := exec.Command("xz", "-dc", "--single-stream")
	xz.Stdin = bytes.NewReader(bz[off:])
	out, err := os.Create(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	xz.Stdout = out
	if err := xz.Run(); err != nil {
		t.Fatalf("xz -d of the bzImage: %v", err)
	}
	out.Close()
	run("mknod", filepath.Join(stage, "dev", "console"), "c", "5", "1")
	initrd := filepath.Join(dir, "initrd.cpio")
	run("sh", "-c", fmt.Sprintf("cd %s && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 > %s", stage, initrd))
	return assets{kernel: vmlinux, initrd: initrd}
}
