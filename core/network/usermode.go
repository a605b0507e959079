package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/internal/usernet"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// Datapath kinds (config `berth { network_datapath = ... }`).
const (
	// DatapathAuto is DatapathKernel for a root daemon on Linux, else
	// DatapathUser.
	DatapathAuto = "auto"
	// DatapathKernel: a bridge and nft rules per network (internal/netdp)
	// and a `berth system network-helper` (internal/netd) for DNS and
	// published ports. Linux, root.
	DatapathKernel = "kernel"
	// DatapathUser: a user-mode switch per network in a `berth system
	// usernet-helper` process (internal/usernet: NAT through host sockets,
	// DNS, published ports); VMs attach to its socket. No root, Linux and
	// macOS; sandbox containers cannot join (no kernel link).
	DatapathUser = "user"
)

// ModeUser is the attachment mode (isolation.NetworkAttachment.Mode) of a
// user-mode network: Interfaces[0].Bridge is then the path of the unix
// socket the VM's NIC connects to (a qemu stream socket shared by the
// network's VMs on Linux; on macOS a vfkit datagram socket of this
// container's own), the rest (MAC, address, gateway, MTU, DNS = the
// gateway) as for "bridge". Ports are served by the helper: the isolation
// plugin publishes nothing.
const ModeUser = "user"

// ChooseDatapath resolves the network_datapath setting ("" = auto) for a
// daemon on goos running as root or not: auto is kernel for root on Linux,
// else user; kernel elsewhere is an error naming the setting.
func ChooseDatapath(setting, goos string, root bool) (string, error) {
	switch setting {
	case "", DatapathAuto:
		if goos == "linux" && root {
			return DatapathKernel, nil
		}
		return DatapathUser, nil
	case DatapathKernel:
		if goos != "linux" || !root {
			return "", errdefs.InvalidArgument("network_datapath = %q needs a Linux host and a daemon running as root (this is %s, root=%v); use %q or %q",
				setting, goos, root, DatapathUser, DatapathAuto)
		}
		return DatapathKernel, nil
	case DatapathUser:
		return DatapathUser, nil
	}
	return "", errdefs.InvalidArgument("network_datapath %q: want %q, %q or %q", setting, DatapathAuto, DatapathKernel, DatapathUser)
}

// userVfkit: user-mode VMs attach by a vfkit datagram socket each (vz on
// macOS) rather than the network's qemu stream socket.
var userVfkit = runtime.GOOS == "darwin"

// maxSocketPath is the longest unix socket path both Linux (108) and
// macOS (104) accept, with the terminating NUL.
const maxSocketPath = 103

// qemuSocketPath is network id's qemu stream socket: short (a socket path
// has at most ~104 bytes), next to the network directories.
func (s *Service) qemuSocketPath(id string) string {
	return filepath.Join(s.opts.Root, id[:16]+".qemu.sock")
}

// vfkitSocketPath is container ctr's vfkit datagram socket on network id.
func (s *Service) vfkitSocketPath(id, ctr string) string {
	if len(ctr) > 12 {
		ctr = ctr[:12]
	}
	return filepath.Join(s.opts.Root, id[:12]+"-"+ctr+".vfkit.sock")
}

// userStateOf converts network n's helper state into usernet's.
func (s *Service) userStateOf(tx *bolt.Tx, n netRecord) (usernet.State, error) {
	st, err := stateOf(tx, n, s.opts.DNSUpstreams)
	if err != nil {
		return usernet.State{}, err
	}
	out := usernet.State{
		Subnet: n.Subnet.String(), Gateway: n.Gateway.String(), MTU: MTU, Upstreams: st.Upstreams,
		Records: map[string][]netip.Addr{},
	}
	if userVfkit {
		eps, err := endpointsIn(tx)
		if err != nil {
			return usernet.State{}, err
		}
		for _, e := range eps {
			if e.NetworkID == n.ID {
				out.VfkitSockets = append(out.VfkitSockets, s.vfkitSocketPath(n.ID, e.ContainerID))
			}
		}
	} else {
		out.QemuSocket = s.qemuSocketPath(n.ID)
	}
	for _, r := range st.Records {
		for _, ip := range r.IPs {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return usernet.State{}, fmt.Errorf("network %s: record %s: %w", n.Name, r.Name, err)
			}
			out.Records[r.Name] = append(out.Records[r.Name], a)
		}
	}
	for _, p := range st.Ports {
		ip, err := netip.ParseAddr(p.TargetIP)
		if err != nil {
			return usernet.State{}, fmt.Errorf("network %s: port target %q: %w", n.Name, p.TargetIP, err)
		}
		out.Ports = append(out.Ports, usernet.Port{HostIP: p.HostIP, HostPort: p.HostPort, GuestIP: ip, GuestPort: p.TargetPort, Protocol: p.Protocol})
	}
	return out, nil
}

// writeAnyState rewrites n's helper state file: usernet's in user mode,
// else netd's.
func (s *Service) writeAnyState(n netRecord) ([]byte, error) {
	if s.opts.UserMode {
		return s.writeUserState(n)
	}
	return s.writeState(n)
}

// writeUserState rewrites n's usernet state file, atomically.
func (s *Service) writeUserState(n netRecord) ([]byte, error) {
	if p := s.qemuSocketPath(n.ID); len(p) > maxSocketPath {
		return nil, errdefs.InvalidArgument("network %s: socket path %s is longer than %d bytes: use a shorter state_dir", n.Name, p, maxSocketPath)
	}
	var st usernet.State
	if err := s.store.db.View(func(tx *bolt.Tx) (err error) { st, err = s.userStateOf(tx, n); return }); err != nil {
		return nil, err
	}
	path := s.statePath(n.ID)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return netd.WriteJSON(path, st)
}

// awaitUserStatus waits until network n's usernet helper reports having
// loaded raw, and renders its status as netd's (port errors by target),
// so Attach checks both kinds alike. A helper error (its socket could not
// be bound) is returned: a VM could not attach.
func (s *Service) awaitUserStatus(n netRecord, raw []byte, timeout time.Duration) (*netd.Status, bool, error) {
	sum := sha256.Sum256(raw)
	want := hex.EncodeToString(sum[:])
	path := s.statePath(n.ID)
	deadline := time.Now().Add(timeout)
	var st usernet.Status
	for {
		b, err := os.ReadFile(usernet.StatusPath(path))
		if err == nil && json.Unmarshal(b, &st) == nil && st.StateSHA256 == want {
			break
		}
		if time.Now().After(deadline) {
			return nil, false, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Error != "" {
		return nil, true, fmt.Errorf("network %s: the user-mode helper: %s", n.Name, st.Error)
	}
	var in usernet.State
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, true, err
	}
	out := &netd.Status{StateSHA256: st.StateSHA256}
	for _, p := range in.Ports {
		if msg, bad := st.PortErrors[p.String()]; bad {
			out.Ports = append(out.Ports, netd.PortStatus{
				Port:  netd.Port{HostIP: p.HostIP, HostPort: p.HostPort, Protocol: p.Protocol, TargetIP: p.GuestIP.String(), TargetPort: p.GuestPort},
				Error: msg,
			})
		}
	}
	return out, true, nil
}

// userAttachment turns a bridge attachment of e on n into a user-mode one.
// The user-mode resolver has no per-container upstreams (netd's Clients):
// a container's --dns servers replace the network's resolver in its
// resolv.conf, as without a helper.
func (s *Service) userAttachment(a *isolation.NetworkAttachment, n netRecord, e epRecord) {
	a.Mode = ModeUser
	a.Interfaces[0].Bridge = s.qemuSocketPath(n.ID)
	if userVfkit {
		a.Interfaces[0].Bridge = s.vfkitSocketPath(n.ID, e.ContainerID)
	}
	if len(e.DNS) > 0 {
		a.DNS.Servers = e.DNS
	}
}

// removeUserSockets removes what a killed helper may have left of network
// id's sockets. Called with mu held, after the helper stopped.
func (s *Service) removeUserSockets(id string) error {
	var errs []error
	paths := []string{s.qemuSocketPath(id)}
	if m, _ := filepath.Glob(filepath.Join(s.opts.Root, id[:12]+"-*.vfkit.sock")); len(m) > 0 {
		paths = append(paths, m...)
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
