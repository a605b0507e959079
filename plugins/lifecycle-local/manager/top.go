package manager

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// Top implements lifecycle.Manager. The container's processes are those of
// its resource group (its cgroup), or, without one, its init process and
// its descendants. Without psArgs (or with "-ef", docker top's default)
// the table is read from /proc with ps -ef's columns; other ps options run
// the host's ps and keep the rows of the container's processes, as docker
// top does.
func (m *Manager) Top(ctx context.Context, ref string, psArgs []string) (lifecycle.TopResult, error) {
	st, layers, err := m.env()
	if err != nil {
		return lifecycle.TopResult{}, err
	}
	rec, err := st.Lookup(ref)
	if err != nil {
		return lifecycle.TopResult{}, err
	}
	name := rec.Container.Name
	if runsInVM(layers, rec.Container.Isolation) {
		return lifecycle.TopResult{}, errdefs.NotImplemented("top %s: the container runs in a VM (isolation %s); its processes are inside the guest", name, rec.Container.Isolation)
	}
	if s := rec.Container.State; s != lifecycle.StateRunning && s != lifecycle.StatePaused {
		return lifecycle.TopResult{}, errdefs.InvalidState("container %s is %s; only a running container has processes to list", name, s)
	}
	pids := m.containerPids(ctx, layers, rec)
	if len(pids) == 0 {
		return lifecycle.TopResult{}, errdefs.InvalidState("container %s has no processes (it may have just exited)", name)
	}
	if len(psArgs) == 0 || slices.Equal(psArgs, []string{"-ef"}) {
		return procTable(pids), nil
	}
	return psTable(ctx, psArgs, pids)
}

// containerPids lists the container's processes, sorted.
func (m *Manager) containerPids(ctx context.Context, layers Layers, rec store.Record) []int {
	var pids []int
	if rec.Group != "" {
		if res, err := layers.Resources(); err == nil {
			if groups, err := res.List(ctx); err == nil {
				for _, g := range groups {
					if g.ID == rec.Group {
						pids = slices.Clone(g.Pids)
					}
				}
			}
		}
	}
	if len(pids) == 0 && rec.Container.Pid > 0 {
		pids = descendants(rec.Container.Pid)
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// descendants returns pid and every process below it, from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readStat(p); err == nil {
			children[s.ppid] = append(children[s.ppid], p)
		}
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		return nil
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// procStat is what top needs of /proc/<pid>/stat.
type procStat struct {
	comm         string
	ppid         int
	ttyNr        int64
	utime, stime uint64
	startTicks   uint64
}

// clockTicks is USER_HZ, 100 on every Linux architecture Berth runs on.
const clockTicks = 100

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// pid (comm) state ppid pgrp session tty_nr … ; comm may hold spaces
	// and parentheses, so split at the last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	s := procStat{comm: string(b[open+1 : end])}
	s.ppid, _ = strconv.Atoi(f[1])
	s.ttyNr, _ = strconv.ParseInt(f[4], 10, 64)
	s.utime, _ = strconv.ParseUint(f[11], 10, 64)
	s.stime, _ = strconv.ParseUint(f[12], 10, 64)
	s.startTicks, _ = strconv.ParseUint(f[19], 10, 64)
	return s, nil
}

// procTable is ps -ef's table of pids, read from /proc.
func procTable(pids []int) lifecycle.TopResult {
	out := lifecycle.TopResult{Titles: []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}}
	boot, uptime := bootTime()
	now := time.Now()
	for _, pid := range pids {
		s, err := readStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		cpu := s.utime + s.stime
		started := boot.Add(time.Duration(s.startTicks) * time.Second / clockTicks)
		c := 0
		if ran := uptime - float64(s.startTicks)/clockTicks; ran > 0 {
			c = min(int(float64(cpu)/clockTicks/ran*100), 99)
		}
		stime := started.Format("Jan02")
		if y1, m1, d1 := started.Date(); true {
			if y2, m2, d2 := now.Date(); y1 == y2 && m1 == m2 && d1 == d2 {
				stime = started.Format("15:04")
			}
		}
		secs := cpu / clockTicks
		out.Processes = append(out.Processes, []string{
			procUser(pid), strconv.Itoa(pid), strconv.Itoa(s.ppid), strconv.Itoa(c), stime, ttyName(s.ttyNr),
			fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60), procCmd(pid, s.comm),
		})
	}
	return out
}

// bootTime returns when the host booted and how long ago, from
// /proc/stat's btime and /proc/uptime.
func bootTime() (time.Time, float64) {
	var boot time.Time
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					boot = time.Unix(n, 0)
				}
			}
		}
	}
	var up float64
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			up, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return boot, up
}

// procUser is the real user of pid, by the host's name for it (as ps).
func procUser(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			if u, err := user.LookupId(f[0]); err == nil {
				return u.Username
			}
			return f[0]
		}
	}
	return "?"
}

// procCmd is pid's command line, or [comm] for a kernel thread or a
// zombie.
func procCmd(pid int, comm string) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if cmd == "" {
		return "[" + comm + "]"
	}
	return cmd
}

// ttyName turns a tty_nr into ps's name: pts/N, ttyN, or ?.
func ttyName(nr int64) string {
	major := (nr >> 8) & 0xfff
	minor := (nr & 0xff) | ((nr >> 12) & 0xfff00)
	switch {
	case nr == 0:
		return "?"
	case major >= 136 && major <= 143:
		return "pts/" + strconv.FormatInt((major-136)*256+minor, 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatInt(minor, 10)
	case major == 4:
		return "ttyS" + strconv.FormatInt(minor-64, 10)
	default:
		return "?"
	}
}

// psTable runs the host's ps with args and keeps the header and the rows
// of pids; the PID column is found by its title.
func psTable(ctx context.Context, args []string, pids []int) (lifecycle.TopResult, error) {
	out, err := exec.CommandContext(ctx, "ps", args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return lifecycle.TopResult{}, errdefs.InvalidArgument("ps %s: %s", strings.Join(args, " "), msg)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	titles := strings.Fields(lines[0])
	col := slices.Index(titles, "PID")
	if col < 0 {
		return lifecycle.TopResult{}, errdefs.InvalidArgument("ps %s: its output has no PID column to find the container's processes by", strings.Join(args, " "))
	}
	res := lifecycle.TopResult{Titles: titles}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) <= col {
			continue
		}
		pid, err := strconv.Atoi(f[col])
		if err != nil || !slices.Contains(pids, pid) {
			continue
		}
		if len(f) > len(titles) { // the last column (the command) has spaces
			f = append(f[:len(titles)-1], strings.Join(f[len(titles)-1:], " "))
		}
		res.Processes = append(res.Processes, f)
	}
	return res, nil
}
