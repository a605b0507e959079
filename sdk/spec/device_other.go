//go:build !linux

package spec

import (
	"fmt"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostDevice fails off Linux: host device nodes cannot be passed to a
// Linux container there.
func hostDevice(string) (specs.LinuxDevice, error) {
	return specs.LinuxDevice{}, fmt.Errorf("passing host devices needs a Linux host (this is %s)", runtime.GOOS)
}
