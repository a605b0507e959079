package supervisor

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/darwinsys"
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
	u, err := darwinsys.PidUsage(pid)
	if err != nil {
		return ProcUse{}, err
	}
	return ProcUse{CPU: u.CPU, Footprint: u.Footprint}, nil
}
