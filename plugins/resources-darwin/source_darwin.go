package main

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/darwinsys"
	"github.com/berth-dev/berth/internal/rpolicy"
)

// darwinSource is the engine's Source on darwin: the process table from
// sysctl kern.proc.all, per-process use from proc_pid_rusage (CPU time,
// physical footprint, disk IO), priority through PRIO_DARWIN_BG.
type darwinSource struct{}

// newSource returns the darwin source, or nil when libSystem cannot be
// reached (then the plugin declares no capability).
func newSource() rpolicy.Source {
	if err := darwinsys.Load(); err != nil {
		return nil
	}
	return darwinSource{}
}

// Table implements rpolicy.Source.
func (darwinSource) Table() ([]rpolicy.Proc, error) {
	procs, err := unix.SysctlKinfoProcSlice("kern.proc.all")
	if err != nil {
		return nil, fmt.Errorf("sysctl kern.proc.all: %w", err)
	}
	out := make([]rpolicy.Proc, 0, len(procs))
	for _, p := range procs {
		st := p.Proc.P_starttime
		out = append(out, rpolicy.Proc{
			Pid: int(p.Proc.P_pid), PPid: int(p.Eproc.Ppid), Pgid: int(p.Eproc.Pgid),
			Start: uint64(st.Sec)*1_000_000 + uint64(st.Usec),
		})
	}
	return out, nil
}

// Stat implements rpolicy.Source.
func (darwinSource) Stat(pid int) (rpolicy.ProcStat, error) {
	u, err := darwinsys.PidUsage(pid)
	if err != nil {
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			return rpolicy.ProcStat{}, fmt.Errorf("process %d: %w", pid, os.ErrNotExist)
		}
		return rpolicy.ProcStat{}, err
	}
	return rpolicy.ProcStat{CPU: u.CPU, Footprint: u.Footprint, ReadBytes: u.ReadBytes, WriteBytes: u.WriteBytes}, nil
}

// Background implements rpolicy.Source: PRIO_DARWIN_BG lowers CPU, disk
// and network priority together; off restores the nice value of the
// group's shares.
func (darwinSource) Background(pid int, on bool, shares uint64) error {
	bg := 0
	if on {
		bg = unix.PRIO_DARWIN_BG
	}
	if err := unix.Setpriority(unix.PRIO_DARWIN_PROCESS, pid, bg); err != nil {
		return fmt.Errorf("setpriority PRIO_DARWIN_PROCESS %d: %w", pid, err)
	}
	if !on {
		return unix.Setpriority(unix.PRIO_PROCESS, pid, rpolicy.NiceForShares(shares))
	}
	return nil
}

// Signal implements rpolicy.Source.
func (darwinSource) Signal(pid int, sig syscall.Signal) error { return unix.Kill(pid, sig) }
