package main

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/darwinsys"
)

// applyPolicy is the darwin side of the wrapper: the background band
// (PRIO_DARWIN_BG) and the throttled disk IO policy (setiopolicy_np,
// which only works on the calling process and is inherited from there).
func applyPolicy(o wrapOptions) error {
	if o.background {
		if err := unix.Setpriority(unix.PRIO_DARWIN_PROCESS, 0, unix.PRIO_DARWIN_BG); err != nil {
			return fmt.Errorf("setpriority PRIO_DARWIN_BG: %w", err)
		}
	}
	if o.ioThrottle {
		if err := darwinsys.ThrottleDiskIO(); err != nil {
			return err
		}
	}
	return nil
}
