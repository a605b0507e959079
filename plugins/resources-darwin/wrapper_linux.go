package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ioprio_set(2) constants: the idle IO scheduling class.
const (
	ioprioWhoProcess = 1
	ioprioClassIdle  = 3
	ioprioClassShift = 13
)

// applyPolicy is the Linux side of the wrapper, so it can be tested here:
// background is nice 19, IO throttling is the idle IO class.
func applyPolicy(o wrapOptions) error {
	if o.background {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, 19); err != nil {
			return fmt.Errorf("setpriority background: %w", err)
		}
	}
	if o.ioThrottle {
		if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, ioprioClassIdle<<ioprioClassShift); errno != 0 {
			return fmt.Errorf("ioprio_set idle: %w", errno)
		}
	}
	return nil
}
