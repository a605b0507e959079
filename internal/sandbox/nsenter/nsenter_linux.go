// Package nsenter, imported for its side effect by the sandbox init binary,
// joins a running container's namespaces before the Go runtime starts any
// thread (a multithreaded process cannot setns into a mount or user
// namespace), as runc's libcontainer/nsenter does.
//
// It acts only when _BERTH_NSENTER_PID names a process: it enters that
// process's user (if different), ipc, uts, net, cgroup, pid and mount
// namespaces, forks so the child is inside the pid namespace, and the
// parent reports "P<child pid>\n" (or "E<reason>\n") on the fd named by
// _BERTH_NSENTER_PIPE and exits. The child continues into Go.
package nsenter

/*
#cgo CFLAGS: -Wall -Werror
extern void berth_nsenter(void);
void __attribute__((constructor)) berth_nsenter_init(void) { berth_nsenter(); }
*/
import "C"
