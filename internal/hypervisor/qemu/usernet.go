package qemu

import (
	"net"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// probeTimeout bounds the check that a NIC's user-mode network answers.
const probeTimeout = 5 * time.Second

// probeSockets checks that every socket NIC's user-mode network accepts a
// connection. qemu 7.2's -netdev stream client connects in the background
// and, when that fails, runs the VM with the NIC's link dead and no error
// (no reconnect option before qemu 8.0): this turns that into a Start
// error. The probe connection is closed at once; the network drops it as
// a guest that went away.
func probeSockets(cfg hypervisor.Config) error {
	for i, n := range cfg.NICs {
		if n.Socket == "" {
			continue
		}
		c, err := net.DialTimeout("unix", n.Socket, probeTimeout)
		if err != nil {
			return errdefs.Unavailable("vm config: nic %d: user-mode network socket %s does not answer (is its network running?): %v", i, n.Socket, err)
		}
		c.Close()
	}
	return nil
}
