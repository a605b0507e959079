//go:build !linux

package qemu

import "syscall"

// procAttr puts qemu in its own process group; without Pdeathsig outside
// Linux, qemu may outlive a caller that dies without killing it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
