//go:build linux

package boot

import (
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// System is the real guest-wide side of the agent (agent.System).
type System struct {
	Log hclog.Logger
}

// SetClock sets CLOCK_REALTIME.
func (s System) SetClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock_settime: %w", err)
	}
	return nil
}

// rndAddEntropy and rndReseedCRNG are RNDADDENTROPY and RNDRESEEDCRNG
// (linux/random.h).
const (
	rndAddEntropy = 0x40085203
	rndReseedCRNG = 0x5207
)

// AddEntropy credits b to the input pool (RNDADDENTROPY, 8 bits per byte)
// and reseeds the CRNG at once (RNDRESEEDCRNG): writing /dev/urandom does
// neither on 6.x kernels, and a guest restored from a snapshot must not
// repeat the snapshot's random numbers.
func (s System) AddEntropy(b []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+len(b))
	*(*int32)(unsafe.Pointer(&buf[0])) = int32(8 * len(b))
	*(*int32)(unsafe.Pointer(&buf[4])) = int32(len(b))
	copy(buf[8:], b)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndAddEntropy, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndReseedCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

// SetHostname sets the UTS hostname and writes /etc/hostname and, given,
// /etc/machine-id.
func (s System) SetHostname(name, machineID string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return err
	}
	if err := os.WriteFile("/etc/hostname", []byte(name+"\n"), 0o644); err != nil {
		return err
	}
	if machineID != "" {
		return os.WriteFile("/etc/machine-id", []byte(machineID+"\n"), 0o444)
	}
	return nil
}

// Poweroff syncs, unmounts what it can and powers off.
func (s System) Poweroff() {
	unix.Sync()
	unmountAll(s.Log)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		s.Log.Error("power off", "error", err)
	}
	select {}
}

// unmountAll unmounts every mount but the root and the pseudo
// filesystems, deepest first (read from /proc/self/mountinfo).
func unmountAll(log hclog.Logger) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var targets []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		t := f[4]
		switch t {
		case "/", "/proc", "/sys", "/dev":
			continue
		}
		targets = append(targets, t)
	}
	for i := len(targets) - 1; i >= 0; i-- {
		if err := unix.Unmount(targets[i], unix.MNT_DETACH); err != nil {
			log.Debug("unmount at power off", "target", targets[i], "error", err)
		}
	}
}
