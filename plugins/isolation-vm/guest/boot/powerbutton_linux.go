//go:build linux

package boot

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Input event constants (linux/input-event-codes.h).
const (
	evKey    = 1
	keyPower = 116
	// inputEventSize is struct input_event on 64-bit kernels: a timeval
	// (two 64-bit words), type u16, code u16, value s32.
	inputEventSize = 24
)

// WatchPowerButton calls press once when an input device reports
// KEY_POWER down: the ACPI power button the hypervisor presses for a
// graceful shutdown (qemu system_powerdown; the guest needs the button and
// evdev modules). Nothing in the kernel acts on it by itself. Devices that
// appear later are picked up (checked every 2 s).
func WatchPowerButton(log hclog.Logger, press func()) {
	var once sync.Once
	fire := func() { once.Do(press) }
	watched := map[string]bool{}
	go func() {
		for {
			devs, _ := filepath.Glob("/dev/input/event*")
			for _, d := range devs {
				if watched[d] {
					continue
				}
				watched[d] = true
				go readKeys(log, d, fire)
			}
			time.Sleep(2 * time.Second)
		}
	}()
}

func readKeys(log hclog.Logger, dev string, fire func()) {
	f, err := os.Open(dev)
	if err != nil {
		log.Debug("open input device", "device", dev, "error", err)
		return
	}
	defer f.Close()
	log.Debug("watching for the power button", "device", dev)
	buf := make([]byte, inputEventSize*16)
	for {
		n, err := f.Read(buf)
		for i := 0; i+inputEventSize <= n; i += inputEventSize {
			ev := buf[i : i+inputEventSize]
			typ := binary.NativeEndian.Uint16(ev[16:])
			code := binary.NativeEndian.Uint16(ev[18:])
			value := int32(binary.NativeEndian.Uint32(ev[20:]))
			if typ == evKey && code == keyPower && value == 1 {
				log.Info("power button pressed", "device", dev)
				fire()
			}
		}
		if err != nil {
			return
		}
	}
}
