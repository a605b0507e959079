//go:build darwin

package vz

import (
	"fmt"
	"net"
	"os"

	"github.com/Code-Hex/vz/v3"

	"github.com/berth-dev/berth/internal/hypervisor"
)

// vfkitMagic is the first datagram a vfkit-style client sends, so a
// user-mode network listening on a datagram socket (internal/usernet,
// gvisor-tap-vsock) learns the client's address.
var vfkitMagic = []byte("VFKT")

// Socket buffer sizes of the NIC's datagram socket: Virtualization.framework
// wants SO_RCVBUF at least twice SO_SNDBUF (Lima uses 1 MiB / 4 MiB).
const (
	nicSendBuf = 1 << 20
	nicRecvBuf = 4 << 20
)

// userNetAttachment connects NIC i to the user-mode network at socket: a
// datagram socket bound at hypervisor.VZNICSocket(RunDir, i), connected to
// socket, announced with the vfkit handshake, handed to the guest as a
// FileHandleNetworkDeviceAttachment (one Ethernet frame per datagram). The
// socket stays open until the VM ends.
func (m *machine) userNetAttachment(i int, socket string) (vz.NetworkDeviceAttachment, error) {
	local := hypervisor.VZNICSocket(m.cfg.RunDir, i)
	_ = os.Remove(local) // a stale socket of an earlier run of this VM
	conn, err := net.DialUnix("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"}, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("user-mode network %s: %w", socket, err)
	}
	defer conn.Close() // the attachment keeps its own descriptor (File dups it)
	_ = conn.SetWriteBuffer(nicSendBuf)
	_ = conn.SetReadBuffer(nicRecvBuf)
	if _, err := conn.Write(vfkitMagic); err != nil {
		return nil, fmt.Errorf("user-mode network %s: handshake: %w", socket, err)
	}
	f, err := conn.File()
	if err != nil {
		return nil, fmt.Errorf("user-mode network %s: %w", socket, err)
	}
	att, err := vz.NewFileHandleNetworkDeviceAttachment(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("user-mode network %s: %w", socket, err)
	}
	if len(m.nicFiles) == 0 {
		go func() {
			<-m.done
			for _, f := range m.nicFiles {
				f.Close()
			}
			for j := range m.cfg.NICs {
				_ = os.Remove(hypervisor.VZNICSocket(m.cfg.RunDir, j))
			}
		}()
	}
	m.nicFiles = append(m.nicFiles, f)
	return att, nil
}
