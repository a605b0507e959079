package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (USER_HZ).
// It is 100 on every Linux architecture Berth runs on; reading it with
// sysconf(_SC_CLK_TCK) would need cgo, so the plugin assumes 100 and CPU
// time is therefore counted in 10ms steps.
const clockTicks = 100

// nanosPerTick converts clock ticks to nanoseconds.
const nanosPerTick = 1_000_000_000 / clockTicks

// procStat is what the plugin reads about one process.
type procStat struct {
	// StartTicks is when the process started, in clock ticks after boot;
	// with the pid it names one process even after the pid is reused.
	StartTicks uint64
	// CPUTicks is user + system time, in clock ticks.
	CPUTicks uint64
	// Zombie is true for a process that exited and was not yet reaped.
	Zombie bool
}

// readStat reads <root>/<pid>/stat. An error wrapping os.ErrNotExist means
// there is no such process.
func readStat(root string, pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat parses the text of /proc/<pid>/stat (proc(5)). The command
// name, field 2, is in parentheses and may itself hold spaces and
// parentheses, so the fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return procStat{}, fmt.Errorf("stat: no command name in %q", b)
	}
	// rest[0] is field 3 (state); field n is rest[n-3].
	rest := strings.Fields(string(b[end+1:]))
	const (
		state     = 3
		utime     = 14
		stime     = 15
		starttime = 22
	)
	if len(rest) <= starttime-3 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name, want at least %d", len(rest), starttime-2)
	}
	field := func(n int) (uint64, error) {
		v, err := strconv.ParseUint(rest[n-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: field %d: %w", n, err)
		}
		return v, nil
	}
	u, err := field(utime)
	if err != nil {
		return procStat{}, err
	}
	s, err := field(stime)
	if err != nil {
		return procStat{}, err
	}
	start, err := field(starttime)
	if err != nil {
		return procStat{}, err
	}
	return procStat{StartTicks: start, CPUTicks: u + s, Zombie: rest[state-3] == "Z"}, nil
}

// readRSS returns the resident set size of pid in bytes, from the second
// field of <root>/<pid>/statm (resident pages).
func readRSS(root string, pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0, err
	}
	return parseStatm(b)
}

func parseStatm(b []byte) (uint64, error) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %d fields, want at least 2", len(f))
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm: resident: %w", err)
	}
	return pages * uint64(os.Getpagesize()), nil
}
