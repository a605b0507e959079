//go:build linux

// Command probe runs inside test containers and reports, one "check=result"
// line each, what the container lets a process do: the system calls
// Docker's profile denies, mounts, device access, masked and read-only
// /proc paths, visible processes and open fds. Results are errno names
// ("EPERM") or "ok". It is built statically and bind-mounted read-only.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func result(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func main() {

	_, _, e := unix.Syscall(unix.SYS_KEYCTL, 0 /* KEYCTL_GET_KEYRING_ID */, ^uintptr(2) /* session */, 0)
	fmt.Printf("keyctl=%s\n", result(errnoOrNil(e)))
	fmt.Printf("unshare_user=%s\n", result(unix.Unshare(unix.CLONE_NEWUSER)))
	_, _, e = unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	fmt.Printf("clone3=%s\n", result(errnoOrNil(e)))
	_ = os.MkdirAll("/tmp/mnt", 0o755)
	fmt.Printf("mount=%s\n", result(unix.Mount("tmpfs", "/tmp/mnt", "tmpfs", 0, "")))

	if len(os.Args) > 1 {
		// os.Args[1] is the host disk as major:minor.
		maj, min, _ := strings.Cut(os.Args[1], ":")
		ma, _ := strconv.Atoi(maj)
		mi, _ := strconv.Atoi(min)
		err := unix.Mknod("/tmp/disk", unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(ma), uint32(mi))))
		fmt.Printf("mknod_disk=%s\n", result(err))
		f, err := os.Open("/tmp/disk")
		if err == nil {
			buf := make([]byte, 512)
			_, err = f.Read(buf)
			f.Close()
		}
		fmt.Printf("read_disk=%s\n", result(err))
	}
	kcore, err := os.ReadFile("/proc/kcore")
	fmt.Printf("kcore_bytes=%d kcore_err=%s\n", len(kcore), result(err))
	fmt.Printf("proc_sys_write=%s\n", result(os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0)))
	procs, _ := os.ReadDir("/proc")
	n := 0
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err == nil {
			n++
		}
	}
	fmt.Printf("processes=%d\n", n)
	fmt.Printf("sysrq_write=%s\n", result(os.WriteFile("/proc/sysrq-trigger", []byte("h"), 0)))
	fmt.Printf("sys_write=%s\n", result(os.WriteFile("/sys/kernel/profiling", []byte("1"), 0)))
	fmt.Printf("ptrace_host_pid1=%s\n", result(unix.Kill(1, 0)))
}

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
