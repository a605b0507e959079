package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/mount"
)

// IsBlockMount reports whether mounts is one block mount descriptor: a
// disk image file (Source) holding a filesystem of Type, with an optional
// "format=raw" or "format=qcow2" option (raw when absent), as block
// snapshotters such as snapshot-ext4 return for VMs.
func IsBlockMount(mounts []mount.Mount) bool {
	if len(mounts) != 1 || mounts[0].Type == "bind" || mounts[0].Type == "overlay" {
		return false
	}
	st, err := os.Stat(mounts[0].Source)
	return err == nil && st.Mode().IsRegular()
}

// blockFormat returns the format= option of m ("raw" when absent).
func blockFormat(m mount.Mount) string {
	for _, o := range m.Options {
		if f, ok := strings.CutPrefix(o, "format="); ok {
			return f
		}
	}
	return "raw"
}

// MountBlock is an Options.Mount for block snapshotters (the suite also
// uses it by default when Options.Mount is nil and the mounts are one
// block descriptor, see IsBlockMount). It presents the disk image at a
// fresh directory with the kernel's own filesystem driver: `mount -o loop`
// read-only or read-write as the descriptor's "ro"/"rw" says. A qcow2
// image is exported as a raw file by qemu-storage-daemon (FUSE), so what
// the suite writes lands in the snapshotter's disk as a VM's writes would.
// It needs Linux, root and, for qcow2, qemu-storage-daemon and /dev/fuse;
// otherwise the check skips or fails and says why.
func MountBlock(t *testing.T, mounts []mount.Mount) (string, func()) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("mounting a block image needs Linux (this is %s)", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a block image needs root (a loop device; CI runs as root)")
	}
	if !IsBlockMount(mounts) {
		t.Fatalf("MountBlock: %+v is not one block mount descriptor of an image file", mounts)
	}
	m := mounts[0]
	ro := m.ReadOnly()
	format := blockFormat(m)
	img := m.Source
	tmp := t.TempDir()
	writeBack := func() error { return nil }
	switch format {
	case "raw":
	case "qcow2":
		var stop func() error
		img, stop = exportQcow2(t, m.Source, ro, tmp)
		writeBack = stop
	default:
		t.Fatalf("MountBlock: unknown image format %q in %+v", format, m)
	}
	dir := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "loop,rw"
	if ro {
		opts = "loop,ro"
	}
	if out, err := exec.Command("mount", "-t", m.Type, "-o", opts, img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -t %s -o %s %s: %v\n%s", m.Type, opts, img, err, out)
	}
	loop := loopDevice(dir)
	done := false
	unmount := func() {
		if done {
			return
		}
		done = true
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			_ = exec.Command("umount", "-l", dir).Run()
			t.Errorf("umount %s: %v\n%s", dir, err, out)
			return
		}
		// The filesystem is written out when its last mount goes, which
		// is later than this umount when another process unshared its
		// mount namespace meanwhile (a container starting elsewhere on the
		// host) and still holds a copy: wait for the loop device to be
		// released, so the writes are in the image when the check goes on.
		if err := waitDetached(loop, img, 2*time.Minute); err != nil {
			t.Errorf("after umount %s: %v", dir, err)
			return
		}
		if err := writeBack(); err != nil {
			t.Errorf("write the changes back into %s: %v", m.Source, err)
		}
	}
	t.Cleanup(unmount)
	return dir, unmount
}

// exportQcow2 presents qcow2 image src as a raw file (a FUSE export of
// qemu-storage-daemon, from qemu-system-common) that a loop device can
// attach, so writes land in src's own clusters exactly as a VM's would. It
// returns the file and a function stopping the export (after the loop
// device let go of it).
func exportQcow2(t *testing.T, src string, ro bool, tmp string) (string, func() error) {
	t.Helper()
	qsd, err := exec.LookPath("qemu-storage-daemon")
	if err != nil {
		t.Fatalf("mounting a qcow2 image needs qemu-storage-daemon (qemu-system-common): %v", err)
	}
	exp := filepath.Join(tmp, "export.raw")
	if err := os.WriteFile(exp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	roOpt, writable := "off", "on"
	if ro {
		roOpt, writable = "on", "off"
	}
	cmd := exec.Command(qsd,
		"--blockdev", "driver=file,node-name=file,filename="+src+",read-only="+roOpt,
		"--blockdev", "driver=qcow2,node-name=disk,file=file,read-only="+roOpt,
		"--export", "type=fuse,id=export,node-name=disk,mountpoint="+exp+",writable="+writable)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-storage-daemon: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopDaemon := func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
			return nil
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			_ = exec.Command("umount", "-l", exp).Run()
			return fmt.Errorf("qemu-storage-daemon exporting %s did not stop within 30 s: %s", src, out.String())
		}
	}
	var once sync.Once
	var stopErr error
	stop := func() error { once.Do(func() { stopErr = stopDaemon() }); return stopErr }
	t.Cleanup(func() { _ = stop() }) // also when the mount fails
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := os.Stat(exp); err == nil && st.Size() > 0 {
			return exp, stop
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("qemu-storage-daemon exporting %s exited: %v\n%s", src, err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-storage-daemon did not export %s within 30 s: %s", src, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loopDevice returns the loop device (e.g. "loop3") mounted at dir, or ""
// when /proc/self/mountinfo does not show one.
func loopDevice(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 || f[4] != dir {
			continue
		}
		if name, ok := strings.CutPrefix(g[1], "/dev/"); ok && strings.HasPrefix(name, "loop") {
			return name
		}
	}
	return ""
}

// waitDetached waits until loop device loop no longer has img as its
// backing file.
func waitDetached(loop, img string, timeout time.Duration) error {
	if loop == "" {
		return nil
	}
	want, err := filepath.EvalSymlinks(img)
	if err != nil {
		want = img
	}
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(filepath.Join("/sys/block", loop, "loop", "backing_file"))
		if err != nil || strings.TrimSpace(string(b)) != want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still holds %s %s after the umount: another mount namespace keeps a copy of the mount, so the writes may not be in the image", loop, img, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
