package supervisor

import (
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/unix"
)

// darwinProcs is the Seatbelt backend's ProcSource on darwin, in pure Go:
// the process table from sysctl kern.proc.all, per-process CPU time and
// physical footprint from libSystem's proc_pid_rusage through purego (the
// source plugins/resources-darwin uses for its limits).
type darwinProcs struct{}

// Table implements ProcSource.
func (darwinProcs) Table() ([]ProcInfo, error) {
	procs, err := unix.SysctlKinfoProcSlice("kern.proc.all")
	if err != nil {
		return nil, fmt.Errorf("sysctl kern.proc.all: %w", err)
	}
	out := make([]ProcInfo, 0, len(procs))
	for _, p := range procs {
		out = append(out, ProcInfo{Pid: int(p.Proc.P_pid), PPid: int(p.Eproc.Ppid), Pgid: int(p.Eproc.Pgid)})
	}
	return out, nil
}

// Use implements ProcSource.
func (darwinProcs) Use(pid int) (ProcUse, error) {
	var ri rusageInfoV2
	if rc := libSystem.procPidRusage(int32(pid), rusageInfoV2Flavor, unsafe.Pointer(&ri)); rc != 0 {
		return ProcUse{}, fmt.Errorf("proc_pid_rusage(%d) failed", pid)
	}
	return ProcUse{CPU: time.Duration(machToNanos(ri.UserTime + ri.SystemTime)), Footprint: ri.PhysFootprint}, nil
}

// libSystem functions x/sys/unix lacks.
var libSystem struct {
	once sync.Once
	err  error

	procPidRusage    func(pid int32, flavor int32, buf unsafe.Pointer) int32
	machTimebaseInfo func(info unsafe.Pointer) int32
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

// rusageInfoV2Flavor is RUSAGE_INFO_V2 of <sys/resource.h>.
const rusageInfoV2Flavor = 2

func loadLibSystem() error {
	libSystem.once.Do(func() {
		lib, err := purego.Dlopen(libSystemPath, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			libSystem.err = fmt.Errorf("dlopen %s: %w", libSystemPath, err)
			return
		}
		purego.RegisterLibFunc(&libSystem.procPidRusage, lib, "proc_pid_rusage")
		purego.RegisterLibFunc(&libSystem.machTimebaseInfo, lib, "mach_timebase_info")
		var tb struct{ numer, denom uint32 }
		if rc := libSystem.machTimebaseInfo(unsafe.Pointer(&tb)); rc != 0 || tb.denom == 0 {
			libSystem.err = fmt.Errorf("mach_timebase_info failed (%d)", rc)
			return
		}
		libSystem.numer, libSystem.denom = tb.numer, tb.denom
	})
	return libSystem.err
}

// machToNanos converts Mach absolute time units to nanoseconds.
func machToNanos(t uint64) uint64 {
	return t/uint64(libSystem.denom)*uint64(libSystem.numer) +
		t%uint64(libSystem.denom)*uint64(libSystem.numer)/uint64(libSystem.denom)
}
