package rpolicy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ProcSource is the Engine's Source on Linux, reading procfs. It exists so
// that the engine darwin uses is tested on Linux against real processes;
// Linux containers use cgroups (plugins/resources-cgroup).
type ProcSource struct {
	// Root is where procfs is mounted; "/proc" when empty.
	Root string
}

var _ Source = ProcSource{}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Berth runs on.
const clockTick = 10 * time.Millisecond

func (s ProcSource) root() string {
	if s.Root == "" {
		return "/proc"
	}
	return s.Root
}

// statFields returns the fields of /proc/<pid>/stat after the command
// name (which may hold spaces and parentheses): fields[0] is the state.
func (s ProcSource) statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(s.root(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 > len(data) {
		return nil, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 22 {
		return nil, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// Table implements Source.
func (s ProcSource) Table() ([]Proc, error) {
	entries, err := os.ReadDir(s.root())
	if err != nil {
		return nil, err
	}
	out := make([]Proc, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := s.statFields(pid)
		if err != nil {
			continue // exited while we read
		}
		// Fields (1-based in proc(5)): 4 ppid, 5 pgrp, 22 starttime; here
		// shifted by the two before the state.
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		start, _ := strconv.ParseUint(f[19], 10, 64)
		out = append(out, Proc{Pid: pid, PPid: ppid, Pgid: pgid, Start: start})
	}
	return out, nil
}

// Stat implements Source: CPU from utime+stime, footprint from the
// resident set, IO from /proc/<pid>/io (read_bytes, write_bytes).
func (s ProcSource) Stat(pid int) (ProcStat, error) {
	f, err := s.statFields(pid)
	if err != nil {
		return ProcStat{}, err
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	st := ProcStat{CPU: time.Duration(utime+stime) * clockTick, Footprint: uint64(max(rss, 0)) * uint64(os.Getpagesize())}
	if data, err := os.ReadFile(filepath.Join(s.root(), strconv.Itoa(pid), "io")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "read_bytes":
				st.ReadBytes = n
			case "write_bytes":
				st.WriteBytes = n
			}
		}
	}
	return st, nil
}

// Background implements Source with nice values.
func (s ProcSource) Background(pid int, on bool, shares uint64) error {
	nice := NiceForShares(shares)
	if on {
		nice = 19
	}
	return unix.Setpriority(unix.PRIO_PROCESS, pid, nice)
}

// Signal implements Source.
func (s ProcSource) Signal(pid int, sig syscall.Signal) error { return unix.Kill(pid, sig) }
