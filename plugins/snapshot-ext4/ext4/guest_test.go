//go:build linux

package ext4

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

// guestInit is a static PID 1: it loads /modules/*.ko, mounts the
// container's disk (/dev/vda) read-write and the image's view (/dev/vdb)
// read-only, reads a file of the image through both, writes one into the
// container's disk, prints one line and powers off.
const guestInit = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

func main() {
	_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	mods, _ := filepath.Glob("/modules/*.ko")
	for _, m := range mods {
		if f, err := os.Open(m); err == nil {
			empty := []byte{0}
			syscall.Syscall(313, f.Fd(), uintptr(unsafe.Pointer(&empty[0])), 0)
			f.Close()
		}
	}
	report := func(format string, args ...any) {
		fmt.Printf("BERTH-EXT4 "+format+"\n", args...)
		syscall.Syscall(syscall.SYS_IOCTL, os.Stdout.Fd(), 0x5409, 1)
		syscall.Sync()
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
		select {}
	}
	_ = os.MkdirAll("/rw", 0o755)
	_ = os.MkdirAll("/ro", 0o755)
	if err := syscall.Mount("/dev/vda", "/rw", "ext4", 0, ""); err != nil {
		report("error=mount-vda:%v", err)
	}
	if err := syscall.Mount("/dev/vdb", "/ro", "ext4", syscall.MS_RDONLY, ""); err != nil {
		report("error=mount-vdb:%v", err)
	}
	a, err1 := os.ReadFile("/rw/etc/from-image")
	b, err2 := os.ReadFile("/ro/etc/from-image")
	if err1 != nil || err2 != nil {
		report("error=read:%v,%v", err1, err2)
	}
	if err := os.WriteFile("/rw/from-guest", []byte("written by the guest"), 0o640); err != nil {
		report("error=write:%v", err)
	}
	if err := os.WriteFile("/ro/nope", []byte("x"), 0o644); err == nil {
		report("error=wrote-into-the-read-only-view")
	}
	var st syscall.Statfs_t
	_ = syscall.Statfs("/rw", &st)
	_ = syscall.Unmount("/rw", 0)
	_ = syscall.Unmount("/ro", 0)
	report("rw=%q ro=%q free_mib=%d ok", a, b, st.Bavail*uint64(st.Bsize)>>20)
}
`

// TestGuestKernelUsesDisks boots Debian's 6.1 kernel under qemu (TCG) with
// a container's copy-on-write disk (qcow2 overlay written in Go, on a chain
// image made by mkfs.ext4 -d) as /dev/vda and a view of the image as a
// read-only /dev/vdb: the guest's ext4 mounts both with their features,
// reads the image's file, writes into the container's disk, sees free
// space. Back on the host the write is in the container's disk only, the
// disk is clean, and a Commit (docker commit) reads it back.
func TestGuestKernelUsesDisks(t *testing.T) {
	needRoot(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)")
	}
	k := vmkerneltest.Kernel(t)
	mods, err := k.ModulesFor("virtio_pci", "virtio_blk", "ext4")
	if err != nil {
		t.Fatal(err)
	}
	initrd := vmkerneltest.Initramfs(t, vmkernel.InitramfsSpec{Agent: buildStatic(t, guestInit), Modules: mods})

	ctx := context.Background()
	sn := configure(t, t.TempDir(), nil)
	unpack(t, sn, "image", "", map[string]string{"etc/": "", "etc/from-image": "hello from the image"})
	ms, err := sn.Prepare(ctx, "ctr", "image")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := sn.View(ctx, "view", "image")
	if err != nil {
		t.Fatal(err)
	}
	format := strings.TrimPrefix(ms[0].Options[1], "format=")
	runCtx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, qemu, "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "1", "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
		"-kernel", k.Image(), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet 8250.nr_uarts=1",
		"-drive", "file="+ms[0].Source+",format="+format+",if=none,id=rw,cache=writeback",
		"-device", "virtio-blk-pci,drive=rw",
		"-drive", "file="+vs[0].Source+",format=raw,if=none,id=ro,readonly=on",
		"-device", "virtio-blk-pci,drive=ro")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil || runCtx.Err() != nil {
		t.Fatalf("qemu: %v (%v); console:\n%s", err, runCtx.Err(), out.String())
	}
	var line string
	for sc := bufio.NewScanner(&out); sc.Scan(); {
		if i := strings.Index(sc.Text(), "BERTH-EXT4 "); i >= 0 {
			line = sc.Text()[i:]
		}
	}
	t.Logf("guest (%s): %s", time.Since(start).Round(time.Millisecond), line)
	if !strings.HasSuffix(line, " ok") || !strings.Contains(line, `rw="hello from the image" ro="hello from the image"`) {
		t.Fatalf("the guest reported %q; console:\n%s", line, out.String())
	}
	if got := readFiles(t, vs, "from-guest"); len(got) != 0 {
		t.Errorf("the guest's write shows in the image: %v", got)
	}
	raw := filepath.Join(t.TempDir(), "ctr.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", ms[0].Source, raw).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	fsck(t, raw)
	if err := sn.Commit(ctx, "committed", "ctr"); err != nil {
		t.Fatalf("Commit of the disk the guest wrote: %v", err)
	}
	v2, err := sn.View(ctx, "v2", "committed")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFiles(t, v2, "from-guest", "etc/from-image"); got["from-guest"] != "written by the guest" || got["etc/from-image"] != "hello from the image" {
		t.Errorf("the committed snapshot holds %v", got)
	}
}

// buildStatic builds a one-file Go program as a static linux/amd64 binary.
func buildStatic(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module guestinit\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the guest init: %v\n%s", err, b)
	}
	return out
}
