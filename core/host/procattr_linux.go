package host

import "syscall"

// dieWithParent makes the kernel kill the plugin when the thread that forked
// it exits (see instance.supervise).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
