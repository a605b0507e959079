package main

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// libSystem functions x/sys/unix lacks, reached without cgo through
// purego: process resource usage (with the physical footprint), the Mach
// timebase its times are in, and the disk IO policy.
var libSystem struct {
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

func loadLibSystem() error {
	libSystem.once.Do(func() {
		lib, err := purego.Dlopen(libSystemPath, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			libSystem.err = fmt.Errorf("dlopen %s: %w", libSystemPath, err)
			return
		}
		purego.RegisterLibFunc(&libSystem.procPidRusage, lib, "proc_pid_rusage")
		purego.RegisterLibFunc(&libSystem.machTimebaseInfo, lib, "mach_timebase_info")
		purego.RegisterLibFunc(&libSystem.setiopolicyNP, lib, "setiopolicy_np")
		var tb struct{ numer, denom uint32 }
		if rc := libSystem.machTimebaseInfo(unsafe.Pointer(&tb)); rc != 0 || tb.denom == 0 {
			libSystem.err = fmt.Errorf("mach_timebase_info failed (%d)", rc)
			return
		}
		libSystem.numer, libSystem.denom = tb.numer, tb.denom
	})
	return libSystem.err
}

// machToNanos converts Mach absolute time units (ticks on Apple silicon)
// to nanoseconds.
func machToNanos(t uint64) uint64 {
	return t/uint64(libSystem.denom)*uint64(libSystem.numer) +
		t%uint64(libSystem.denom)*uint64(libSystem.numer)/uint64(libSystem.denom)
}
