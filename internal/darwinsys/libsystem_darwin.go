// Package darwinsys reaches the libSystem functions golang.org/x/sys/unix
// lacks — process resource usage with the physical footprint, the Mach
// timebase its times are in, and the disk IO policy — without cgo, through
// purego, so darwin binaries stay pure Go and cross-build from Linux.
// It is used by plugins/resources-darwin (limits) and the sandbox's
// Seatbelt supervisor (stats).
package darwinsys

import (
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

var lib struct {
	once sync.Once
	err  error

	procPidRusage    func(pid int32, flavor int32, buf unsafe.Pointer) int32
	machTimebaseInfo func(info unsafe.Pointer) int32
	setiopolicyNP    func(iotype, scope, policy int32) int32
	numer, denom     uint32
}

const libSystemPath = "/usr/lib/libSystem.B.dylib"

// rusageInfoV2 is struct rusage_info_v2 of <sys/resource.h>.
type rusageInfoV2 struct {
	UUID                [16]byte
	UserTime            uint64
	SystemTime          uint64
	PkgIdleWkups        uint64
	InterruptWkups      uint64
	Pageins             uint64
	WiredSize           uint64
	ResidentSize        uint64
	PhysFootprint       uint64
	ProcStartAbstime    uint64
	ProcExitAbstime     uint64
	ChildUserTime       uint64
	ChildSystemTime     uint64
	ChildPkgIdleWkups   uint64
	ChildInterruptWkups uint64
	ChildPageins        uint64
	ChildElapsedAbstime uint64
	DiskioBytesread     uint64
	DiskioByteswritten  uint64
}

// Constants of <sys/resource.h> and <libproc.h>.
const (
	rusageInfoV2Flavor = 2
	iopolTypeDisk      = 0
	iopolScopeProcess  = 0
	iopolThrottle      = 3
)

// Load opens libSystem and reads the Mach timebase, once. Every other
// function needs it to have succeeded.
func Load() error {
	lib.once.Do(func() {
		h, err := purego.Dlopen(libSystemPath, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			lib.err = fmt.Errorf("dlopen %s: %w", libSystemPath, err)
			return
		}
		purego.RegisterLibFunc(&lib.procPidRusage, h, "proc_pid_rusage")
		purego.RegisterLibFunc(&lib.machTimebaseInfo, h, "mach_timebase_info")
		purego.RegisterLibFunc(&lib.setiopolicyNP, h, "setiopolicy_np")
		var tb struct{ numer, denom uint32 }
		if rc := lib.machTimebaseInfo(unsafe.Pointer(&tb)); rc != 0 || tb.denom == 0 {
			lib.err = fmt.Errorf("mach_timebase_info failed (%d)", rc)
			return
		}
		lib.numer, lib.denom = tb.numer, tb.denom
	})
	return lib.err
}

// Usage is one process's resource use from proc_pid_rusage.
type Usage struct {
	// CPU is user plus system time.
	CPU time.Duration
	// Footprint is the physical footprint, what Activity Monitor shows as
	// memory.
	Footprint  uint64
	ReadBytes  uint64
	WriteBytes uint64
}

// PidUsage returns pid's resource use. Load must have succeeded.
func PidUsage(pid int) (Usage, error) {
	var ri rusageInfoV2
	if rc := lib.procPidRusage(int32(pid), rusageInfoV2Flavor, unsafe.Pointer(&ri)); rc != 0 {
		return Usage{}, fmt.Errorf("proc_pid_rusage(%d) failed", pid)
	}
	return Usage{
		CPU:        time.Duration(machToNanos(ri.UserTime + ri.SystemTime)),
		Footprint:  ri.PhysFootprint,
		ReadBytes:  ri.DiskioBytesread,
		WriteBytes: ri.DiskioByteswritten,
	}, nil
}

// ThrottleDiskIO sets the calling process's disk IO policy to
// IOPOL_THROTTLE; children inherit it. It loads libSystem if needed.
func ThrottleDiskIO() error {
	if err := Load(); err != nil {
		return err
	}
	if rc := lib.setiopolicyNP(iopolTypeDisk, iopolScopeProcess, iopolThrottle); rc != 0 {
		return fmt.Errorf("setiopolicy_np(IOPOL_TYPE_DISK, IOPOL_SCOPE_PROCESS, IOPOL_THROTTLE) failed")
	}
	return nil
}

// machToNanos converts Mach absolute time units (ticks on Apple silicon)
// to nanoseconds without overflowing.
func machToNanos(t uint64) uint64 {
	return t/uint64(lib.denom)*uint64(lib.numer) +
		t%uint64(lib.denom)*uint64(lib.numer)/uint64(lib.denom)
}
