package cgroupctl

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// kernelError gives an error from cgroupfs the kind a caller can act on:
// the kernel answers EINVAL for a value it refuses, EBUSY for a limit below
// what the group uses now, ESRCH for a process that is gone.
func kernelError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ERANGE):
		return errdefs.InvalidArgument("%s: the kernel refused the value: %v", what, err)
	case errors.Is(err, syscall.EBUSY):
		return errdefs.InvalidState("%s: the group is busy (a limit below current use?): %v", what, err)
	case errors.Is(err, syscall.ESRCH):
		return errdefs.NotFound("%s: no such process: %v", what, err)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENODEV):
		return errdefs.NotImplemented("%s: this kernel lacks the file or device: %v", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
