package qemu

import "syscall"

// procAttr puts qemu in its own process group and has the kernel SIGKILL it
// when the OS thread that forked it exits (launch keeps that thread locked
// until qemu has been reaped).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
