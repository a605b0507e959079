// Command benchinit is the trivial init of the VM benchmark's peer: a bare
// qemu boot of the same kernel, modules and rootfs image as a VM
// container, with no agent. As PID 1 it mounts /dev and /proc, loads
// /modules/*.ko in lexical order, mounts /dev/vda (ext4) read-only, runs
// the command given after "--" on the kernel command line (berth.cmd=…,
// split on commas) chrooted there with its output on the console, and
// powers off.
package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = unix.Mount("proc", "/proc", "proc", 0, "")
	console, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		poweroff()
	}
	mods, _ := filepath.Glob("/modules/*.ko")
	for _, m := range mods {
		if f, err := os.Open(m); err == nil {
			if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
				console.WriteString("benchinit: load " + m + ": " + err.Error() + "\n")
			}
			f.Close()
		}
	}
	_ = os.MkdirAll("/newroot", 0o755)
	if err := unix.Mount("/dev/vda", "/newroot", "ext4", unix.MS_RDONLY, ""); err != nil {
		console.WriteString("benchinit: mount /dev/vda: " + err.Error() + "\n")
		poweroff()
	}
	args := []string{"/bin/echo", "hi"}
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, "berth.cmd="); ok {
				args = strings.Split(v, ",")
			}
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = console, console
	cmd.Env = []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: "/newroot"}
	if err := cmd.Run(); err != nil {
		console.WriteString("benchinit: " + err.Error() + "\n")
	}
	// Let the console drain before the power goes.
	_ = unix.IoctlSetInt(int(console.Fd()), unix.TCSBRK, 1)
	poweroff()
}

func poweroff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
