//go:build linux

// Command testguest is the /init of the qemu driver's test VMs (built
// static by the tests, never shipped). It loads /modules/*.ko in lexical
// order, prints "tick N" on the console every 100 ms, and serves a line
// protocol on the virtio-serial port org.berth.agent:
//
//	ping X   → pong X
//	count    → count N (the current tick)
//	alloc N  → touches N MiB, replies "alloc ok"
//	free     → drops it and returns it to the kernel, replies "free ok"
//	meminfo  → meminfo <MemFree kB>
//	compact  → compacts guest memory, replies "compact ok"
//	diskbench N → N O_DSYNC 4 KiB writes and N 4 KiB reads on /dev/vda:
//	           "diskbench write=<µs each> read=<µs each>"
//	poweroff → powers the VM off
//
// When the host side closes, it waits for the next connection on the same
// open port.
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const portName = "org.berth.agent"

var ticks atomic.Int64

func logf(format string, args ...any) { fmt.Fprintf(os.Stdout, "testguest: "+format+"\n", args...) }

func main() {
	for _, m := range []struct{ dir, fs string }{{"/dev", "devtmpfs"}, {"/proc", "proc"}, {"/sys", "sysfs"}} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			logf("mount %s: %v", m.dir, err)
		}
	}
	loadModules()
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			fmt.Fprintf(os.Stdout, "tick %d\n", ticks.Add(1))
		}
	}()
	go powerButton()
	dev := findPort()
	logf("agent port %s", dev)
	// A blocking descriptor, outside Go's poller (see NOTES: reads through
	// the edge-triggered poller stalled now and then on virtio ports).
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		logf("open %s: %v", dev, err)
		select {}
	}
	f := os.NewFile(uintptr(fd), dev)
	for {
		// Reopening the port would discard what a new host already sent:
		// keep it open and wait until a host is connected again.
		for !hostConnected(f) {
			time.Sleep(20 * time.Millisecond)
		}
		serve(f)
	}
}

// hostConnected reports whether a host holds the port's other end (poll
// reports POLLHUP while none does).
func hostConnected(f *os.File) bool {
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
	_, err := unix.Poll(fds, 0)
	return err == nil && fds[0].Revents&unix.POLLHUP == 0
}

func loadModules() {
	mods, _ := filepath.Glob("/modules/*.ko")
	sort.Strings(mods)
	for _, p := range mods {
		f, err := os.Open(p)
		if err != nil {
			logf("module %s: %v", p, err)
			continue
		}
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
			logf("module %s: %v", p, err)
		}
		f.Close()
	}
	logf("loaded %d modules", len(mods))
}

func findPort() string {
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == portName {
				return "/dev/" + filepath.Base(filepath.Dir(n))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// powerButton powers off when an input device reports KEY_POWER (the ACPI
// power button qemu's system_powerdown presses): with no acpid or logind in
// the guest, nothing else acts on it.
func powerButton() {
	seen := map[string]bool{}
	for range time.Tick(200 * time.Millisecond) {
		evs, _ := filepath.Glob("/dev/input/event*")
		for _, ev := range evs {
			if !seen[ev] {
				seen[ev] = true
				go watchInput(ev)
			}
		}
	}
}

func watchInput(dev string) {
	f, err := os.Open(dev)
	if err != nil {
		return
	}
	var ev [24]byte // struct input_event on 64-bit: timeval, type u16, code u16, value s32
	for {
		if _, err := io.ReadFull(f, ev[:]); err != nil {
			return
		}
		typ, code := binary.LittleEndian.Uint16(ev[16:]), binary.LittleEndian.Uint16(ev[18:])
		if typ == 1 && code == 116 && binary.LittleEndian.Uint32(ev[20:]) == 1 { // EV_KEY, KEY_POWER, press
			logf("power button")
			unix.Sync()
			unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		}
	}
}

var hog [][]byte

// serve answers commands until the host goes away (EOF).
func serve(f *os.File) {
	s := bufio.NewScanner(f)
	for s.Scan() {
		cmd, arg, _ := strings.Cut(s.Text(), " ")
		var reply string
		switch cmd {
		case "ping":
			reply = "pong " + arg
		case "count":
			reply = "count " + strconv.FormatInt(ticks.Load(), 10)
		case "alloc":
			n, _ := strconv.Atoi(arg)
			for i := 0; i < n; i++ {
				b := make([]byte, 1<<20)
				for j := range len(b) / 4096 {
					b[j*4096] = 1
				}
				hog = append(hog, b)
			}
			reply = "alloc ok"
		case "free":
			hog = nil
			debug.FreeOSMemory()
			reply = "free ok"
		case "meminfo": // MemFree in kB
			b, _ := os.ReadFile("/proc/meminfo")
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "MemFree:" {
					reply = "meminfo " + f[1]
				}
			}
		case "compact": // defragment free memory so whole blocks can be reported
			os.WriteFile("/proc/sys/vm/compact_memory", []byte("1"), 0)
			reply = "compact ok"
		case "diskbench": // N synchronous 4 KiB writes to /dev/vda, then N reads
			n, _ := strconv.Atoi(arg)
			reply = diskbench(n)
		case "poweroff":
			unix.Sync()
			unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		default:
			reply = "unknown " + cmd
		}
		fmt.Fprintln(f, reply)
	}
}

func diskbench(n int) string {
	f, err := os.OpenFile("/dev/vda", os.O_RDWR|unix.O_DSYNC|unix.O_DIRECT, 0)
	if err != nil {
		return "diskbench error " + err.Error()
	}
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return "diskbench error " + err.Error()
	}
	defer unix.Munmap(buf)
	buf[0] = 1
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			return "diskbench error " + err.Error()
		}
	}
	w := time.Since(t0) / time.Duration(n)
	t1 := time.Now()
	for i := 0; i < n; i++ {
		if _, err := f.ReadAt(buf, int64(i)*4096); err != nil {
			return "diskbench error " + err.Error()
		}
	}
	r := time.Since(t1) / time.Duration(n)
	return fmt.Sprintf("diskbench write=%dus read=%dus", w.Microseconds(), r.Microseconds())
}
