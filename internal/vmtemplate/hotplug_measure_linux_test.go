package vmtemplate_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor/qemu/qmp"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

// hotplugInit is the measuring guest's /init: modules, then report when a
// virtio-blk disk and a virtio-net NIC appear.
const hotplugInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /bin /proc /sys /dev
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod $m; done
echo HP-READY
b=0; n=0
while [ $b = 0 ] || [ $n = 0 ]; do
  if [ $b = 0 ] && [ -e /sys/block/vda ]; then echo HP-BLK; b=1; fi
  if [ $n = 0 ] && ls /sys/class/net | grep -q eth; then echo HP-NET; n=1; fi
  usleep 5000
done
while true; do sleep 100; done
`

// TestMeasureHotplug (BERTH_VMTEMPLATE_MEASURE=1, root) times q35 PCIe
// hot-plug of a virtio-blk disk and a virtio-net NIC (qemu's blockdev-add,
// netdev_add, device_add onto pcie-root-ports) until the guest has them:
// the alternative to microvm's placeholders (issue 10 "measure both"),
// whose devices are there as soon as the restore ends. Numbers go to NOTES.
func TestMeasureHotplug(t *testing.T) {
	if os.Getenv("BERTH_VMTEMPLATE_MEASURE") == "" {
		t.Skip("set BERTH_VMTEMPLATE_MEASURE=1 to measure")
	}
	sandboxtest.RequireRoot(t)
	k := vmkerneltest.Kernel(t)
	mods, err := k.ModulesFor("virtio_pci", "virtio_blk", "virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	initScript := filepath.Join(dir, "init")
	if err := os.WriteFile(initScript, []byte(hotplugInit), 0o755); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := vmkernel.BuildInitramfs(f, vmkernel.InitramfsSpec{Agent: initScript, Modules: mods,
		Files: []vmkernel.InitramfsFile{{Path: "/bin/busybox", Source: "/bin/busybox", Mode: 0o755}}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for run := range 3 {
		run1 := func() {
			rd, err := os.MkdirTemp("", "hpm")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(rd)
			con := filepath.Join(rd, "console.log")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg,thread=multi,tb-size=16", "-cpu", "max",
				"-smp", "1", "-m", "256M", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
				"-kernel", k.Image(), "-initrd", initrd,
				"-append", "console=ttyS0 panic=-1 quiet cryptomgr.notests no_timer_check i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 mitigations=off random.trust_cpu=on",
				"-serial", "file:"+con, "-qmp", "unix:"+filepath.Join(rd, "qmp.sock")+",server=on,wait=off",
				"-device", "pcie-root-port,id=rp1,chassis=1,slot=1", "-device", "pcie-root-port,id=rp2,chassis=2,slot=2")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			seen := func(what string, limit time.Duration) time.Time {
				for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
					if b, _ := os.ReadFile(con); strings.Contains(string(b), what) {
						return time.Now()
					}
				}
				b, _ := os.ReadFile(con)
				t.Fatalf("no %s on the console:\n%s", what, b)
				return time.Time{}
			}
			seen("HP-READY", 2*time.Minute)
			var c *qmp.Client
			for deadline := time.Now().Add(30 * time.Second); c == nil; time.Sleep(20 * time.Millisecond) {
				if c, err = qmp.Dial(ctx, filepath.Join(rd, "qmp.sock")); err != nil && time.Now().After(deadline) {
					t.Fatal(err)
				}
			}
			defer c.Close()
			t0 := time.Now()
			for _, s := range []struct {
				cmd  string
				args map[string]any
			}{
				{"blockdev-add", map[string]any{"driver": "raw", "node-name": "d1", "file": map[string]any{"driver": "file", "filename": img}}},
				{"device_add", map[string]any{"driver": "virtio-blk-pci", "drive": "d1", "bus": "rp1", "id": "vblk"}},
				// A TAP qemu creates (not persistent: gone with qemu).
				{"netdev_add", map[string]any{"type": "tap", "id": "n1", "ifname": "bhpm" + filepath.Base(rd)[3:], "script": "no", "downscript": "no"}},
				{"device_add", map[string]any{"driver": "virtio-net-pci", "netdev": "n1", "bus": "rp2", "id": "vnet", "mac": "02:b5:fe:00:00:01"}},
			} {
				if err := c.Run(ctx, s.cmd, s.args, nil); err != nil {
					t.Fatalf("%s: %v", s.cmd, err)
				}
			}
			sent := time.Since(t0)
			blk, nic := seen("HP-BLK", time.Minute).Sub(t0), seen("HP-NET", time.Minute).Sub(t0)
			t.Logf("MEASURE q35 hot-plug run %d: QMP commands %v, guest has the disk after %v, the NIC after %v",
				run, sent.Round(time.Millisecond), blk.Round(time.Millisecond), nic.Round(time.Millisecond))
		}
		run1()
	}
}
