// Package procwait waits for processes the caller did not start (so cannot
// wait(2) for): supervisors and VMs found again after a plugin restart.
package procwait

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Gone returns once pid has exited (its pidfd becomes readable) or d has
// passed, whichever comes first. Without pidfds it polls /proc, counting
// a zombie as gone. It reports nothing: callers check what they need.
func Gone(pid int, d time.Duration) {
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, int(d.Milliseconds()))
			if !errors.Is(err, unix.EINTR) {
				return
			}
		}
	} else if errors.Is(err, unix.ESRCH) {
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			return
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
