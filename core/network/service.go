// Package network is the core's network service (sdk/network.Service): it
// owns networks, their address management (IPAM) and name records, all
// persisted in <state_dir>/network/networks.db (bbolt), and it keeps each
// network's datapath (through a Datapath: bridge, NAT rules) and helper
// process (DNS server and port proxies, `berth system network-helper`)
// in step with the store.
//
// Layout under Options.Root (<state_dir>/network):
//
//	networks.db          networks, IPAM allocations, endpoints
//	<network id>/
//	  state.json         the helper's input (HelperState), rewritten
//	                     atomically on every change, then SIGHUP
//	  state.json.status  what the helper reports (written by the helper)
//	  helper.pid         the helper's pid
//	  helper.log         the helper's output
//
// Invariants: an address is held by at most one endpoint (a bbolt
// transaction allocates it and records the endpoint together); a
// network's state file lists exactly its endpoints' names and published
// ports once a call that changed them returns; helpers outlive the daemon
// and are adopted (pid file + command line check) when it starts again.
package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/netd"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	sdknet "github.com/berth-dev/berth/sdk/network"
)

// Defaults of the default network and of user networks' subnets.
var (
	// DefaultSubnet is the default network's subnet.
	DefaultSubnet = netip.MustParsePrefix("10.88.0.0/16")
	// DefaultBridge is the default network's bridge.
	DefaultBridge = "berth0"
	// userPool is where user networks without a subnet get a /24: the
	// first free one from its start upward.
	userPool    = netip.MustParsePrefix("10.89.0.0/16")
	userPoolEnd = netip.MustParseAddr("10.127.255.0")
)

// MTU of container interfaces.
const MTU = 1500

// DefaultStoreTimeout bounds the wait for networks.db's lock.
const DefaultStoreTimeout = 10 * time.Second

// Datapath builds and removes a network's kernel side: its bridge with the
// gateway address, NAT and isolation rules. Both calls are idempotent.
// internal/netdp is the Linux implementation.
type Datapath interface {
	EnsureNetwork(ctx context.Context, n DatapathNetwork) error
	RemoveNetwork(ctx context.Context, n DatapathNetwork) error
}

// DatapathNetwork is what a Datapath needs of a network.
type DatapathNetwork struct {
	ID       string
	Bridge   string
	Subnet   netip.Prefix
	Gateway  netip.Addr
	Internal bool
}

// Options configure New.
type Options struct {
	// Root is the service's directory (<state_dir>/network).
	Root   string
	Logger hclog.Logger
	// StoreTimeout bounds the wait for the store's lock; 0 is
	// DefaultStoreTimeout.
	StoreTimeout time.Duration
	// Datapath builds networks in the kernel; nil builds nothing (and
	// runs no helpers: they serve on the bridge's gateway address).
	Datapath Datapath
	// HelperArgv is the helper command before its "--state FILE"
	// arguments (the daemon: [berth, system, network-helper]); nil runs no
	// helpers.
	HelperArgv []string
	// DNSUpstreams ("IP:PORT") are written to every helper's state; empty
	// lets helpers use the host's resolv.conf.
	DNSUpstreams []string
	// HostPrefixes lists the host's own networks, which automatic subnets
	// avoid; nil reads the host's interface addresses.
	HostPrefixes func() []netip.Prefix
	// DefaultBridge and DefaultSubnet are the default network's; zero
	// values are the package's DefaultBridge and DefaultSubnet. They
	// apply when the default network is created: an existing one keeps
	// its own.
	DefaultBridge string
	DefaultSubnet netip.Prefix
	// UserMode makes every network user-mode (DatapathUser, usermode.go):
	// no kernel datapath (Datapath is ignored), HelperArgv is the
	// usernet helper's (`berth system usernet-helper`), attachments are
	// ModeUser naming the helper's socket.
	UserMode bool
}

// Service implements sdk/network.Service.
type Service struct {
	opts    Options
	log     hclog.Logger
	store   *store
	helpers *helpers

	// mu serialises every change: store, state files, datapath.
	mu sync.Mutex
	// released remembers host ports freed by Detach a moment ago: the
	// helper closes its listener after the SIGHUP, so a bind check of the
	// same port may briefly fail and is retried.
	released map[string]time.Time

	// blockers are the forward-drop chains found at start.
	blockers []string

	stop chan struct{}
	done chan struct{}
}

var _ sdknet.Service = (*Service)(nil)

// New opens the store and reconciles every network: its datapath is
// ensured, its state file rewritten and its helper adopted or started.
// A network that cannot be reconciled is logged and left for the next
// change or start; New fails only when the store cannot be opened.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	if opts.HostPrefixes == nil {
		opts.HostPrefixes = hostPrefixes
	}
	if opts.DefaultBridge == "" {
		opts.DefaultBridge = DefaultBridge
	}
	if !opts.DefaultSubnet.IsValid() {
		opts.DefaultSubnet = DefaultSubnet
	}
	st, err := openStore(filepath.Join(opts.Root, "networks.db"), opts.StoreTimeout)
	if err != nil {
		return nil, err
	}
	s := &Service{
		opts: opts, log: opts.Logger, store: st, released: map[string]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if opts.UserMode {
		opts.Datapath = nil
	}
	if (opts.Datapath != nil || opts.UserMode) && len(opts.HelperArgv) > 0 {
		s.helpers = newHelpers(opts.Root, opts.HelperArgv, opts.Logger.Named("helper"))
	}
	s.reconcile(ctx)
	s.warnForwardBlockers(ctx)
	go s.supervise()
	return s, nil
}

// Close stops supervising helpers and closes the store. Helpers and
// datapaths stay: published ports and DNS keep working until the next
// start adopts them.
func (s *Service) Close() error {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.close()
}

// reconcile brings every stored network's datapath, state file and helper
// up, and stops helpers of networks the store no longer has.
func (s *Service) reconcile(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var nets []netRecord
	if err := s.store.db.View(func(tx *bolt.Tx) (err error) { nets, err = networksIn(tx); return }); err != nil {
		s.log.Error("reconcile: read networks", "error", err)
		return
	}
	known := map[string]bool{}
	for _, n := range nets {
		known[n.ID] = true
		if err := s.bringUp(ctx, n); err != nil {
			s.log.Error("reconcile network", "network", n.Name, "network_id", n.ID, "error", err)
		}
	}
	entries, _ := os.ReadDir(s.opts.Root)
	for _, e := range entries {
		if e.IsDir() && isID(e.Name()) && !known[e.Name()] {
			s.log.Warn("removing the leftovers of a network the store does not know", "network_id", e.Name())
			if s.helpers != nil {
				s.helpers.stopHelper(e.Name())
			}
			_ = os.RemoveAll(filepath.Join(s.opts.Root, e.Name()))
		}
	}
}

// supervise restarts helpers that died, every few seconds.
func (s *Service) supervise() {
	defer close(s.done)
	if s.helpers == nil {
		return
	}
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var nets []netRecord
		_ = s.store.db.View(func(tx *bolt.Tx) (err error) { nets, err = networksIn(tx); return })
		for _, n := range nets {
			if !s.helpers.alive(n.ID) {
				s.log.Warn("network helper is gone; starting it again", "network", n.Name, "network_id", n.ID)
				if err := s.helpers.ensure(n.ID, s.statePath(n.ID)); err != nil {
					s.log.Error("start network helper", "network", n.Name, "error", err)
				}
			}
		}
		s.mu.Unlock()
	}
}

func (s *Service) statePath(id string) string { return filepath.Join(s.opts.Root, id, "state.json") }

func dp(n netRecord) DatapathNetwork {
	return DatapathNetwork{ID: n.ID, Bridge: n.Bridge, Subnet: n.Subnet, Gateway: n.Gateway, Internal: n.Internal}
}

// bringUp ensures n's datapath, state file and helper. Called with mu held.
func (s *Service) bringUp(ctx context.Context, n netRecord) error {
	if s.opts.Datapath != nil {
		if err := s.opts.Datapath.EnsureNetwork(ctx, dp(n)); err != nil {
			return fmt.Errorf("network %s datapath: %w", n.Name, err)
		}
	}
	if _, err := s.writeAnyState(n); err != nil {
		return err
	}
	if s.helpers != nil {
		if err := s.helpers.ensure(n.ID, s.statePath(n.ID)); err != nil {
			return fmt.Errorf("network %s helper: %w", n.Name, err)
		}
	}
	return nil
}

// tearDown stops n's helper, removes its datapath and its directory.
// Called with mu held; each step tolerates what is already gone.
func (s *Service) tearDown(ctx context.Context, n netRecord) error {
	if s.helpers != nil {
		s.helpers.stopHelper(n.ID)
	}
	if s.opts.Datapath != nil {
		if err := s.opts.Datapath.RemoveNetwork(ctx, dp(n)); err != nil {
			return fmt.Errorf("remove network %s datapath: %w", n.Name, err)
		}
	}
	if s.opts.UserMode {
		if err := s.removeUserSockets(n.ID); err != nil {
			return fmt.Errorf("remove network %s sockets: %w", n.Name, err)
		}
	}
	return os.RemoveAll(filepath.Join(s.opts.Root, n.ID))
}

// publishState rewrites n's state file and tells its helper. With await
// it returns the helper's status once the helper has loaded the file (nil
// without a helper, or when it did not answer in time: the helper also
// polls the file, and the supervisor restarts a dead one). Called with mu
// held.
func (s *Service) publishState(n netRecord, await bool) (*netd.Status, error) {
	raw, err := s.writeAnyState(n)
	if err != nil {
		return nil, err
	}
	if s.helpers == nil {
		return nil, nil
	}
	if err := s.helpers.reload(n.ID); err != nil {
		s.log.Warn("signal network helper; the supervisor restarts it", "network", n.Name, "error", err)
		return nil, nil
	}
	if !await {
		return nil, nil
	}
	st, ok := netd.Status{}, false
	if s.opts.UserMode {
		var ust *netd.Status
		if ust, ok, err = s.awaitUserStatus(n, raw, helperAnswerTimeout); err != nil {
			return nil, err
		}
		if ok {
			st = *ust
		}
	} else {
		st, ok = s.helpers.awaitStatus(s.statePath(n.ID), raw, helperAnswerTimeout)
	}
	if !ok {
		s.log.Warn("network helper did not report loading its new state in time", "network", n.Name, "timeout", helperAnswerTimeout)
		return nil, nil
	}
	return &st, nil
}

// helperAnswerTimeout bounds the wait for a helper to load a new state.
const helperAnswerTimeout = 5 * time.Second

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// parseSubnet checks a user's subnet.
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errdefs.InvalidArgument("subnet %q is not a CIDR prefix like 10.90.0.0/24", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, errdefs.InvalidArgument("subnet %q: only IPv4 subnets are supported", s)
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, errdefs.InvalidArgument("subnet %q: prefix length must be from /8 to /30", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, errdefs.InvalidArgument("subnet %q has host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// hostPrefixes are the networks of the host's interface addresses.
func hostPrefixes() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(ipn.String()); err == nil && p.Addr().Is4() {
				out = append(out, p.Masked())
			}
		}
	}
	return out
}

// conflict returns the network whose subnet overlaps p, reserving the
// default network's subnet even before it exists.
func conflict(nets []netRecord, p, defaultSubnet netip.Prefix, forDefault bool) (string, netip.Prefix, bool) {
	defaultSeen := forDefault
	for _, n := range nets {
		if n.Name == sdknet.DefaultNetwork {
			defaultSeen = true
		}
		if n.Subnet.Overlaps(p) {
			return n.Name, n.Subnet, true
		}
	}
	if !defaultSeen && defaultSubnet.Overlaps(p) {
		return sdknet.DefaultNetwork, defaultSubnet, true
	}
	return "", netip.Prefix{}, false
}

// pickSubnet returns the first /24 of the user pool that overlaps neither
// a network nor one of the host's own networks.
func (s *Service) pickSubnet(nets []netRecord) (netip.Prefix, error) {
	host := s.opts.HostPrefixes()
	ours := map[netip.Prefix]bool{}
	for _, n := range nets {
		ours[n.Subnet] = true
	}
	for a := userPool.Addr(); !userPoolEnd.Less(a); {
		p := netip.PrefixFrom(a, 24)
		_, _, taken := conflict(nets, p, s.opts.DefaultSubnet, false)
		for _, h := range host {
			if !ours[h] && h.Overlaps(p) {
				taken = true
			}
		}
		if !taken {
			return p, nil
		}
		b := a.As4()
		if b[2] == 255 {
			b[1]++
			b[2] = 0
		} else {
			b[2]++
		}
		a = netip.AddrFrom4(b)
	}
	return netip.Prefix{}, errdefs.InvalidState("no free /24 subnet left between %s and %s/24; give --subnet", userPool.Addr(), userPoolEnd)
}

// Create implements sdknet.Service.
func (s *Service) Create(ctx context.Context, spec sdknet.CreateSpec) (sdknet.Network, error) {
	if spec.Name == sdknet.None || spec.Name == sdknet.Host {
		return sdknet.Network{}, errdefs.InvalidArgument("network name %q is reserved (it means %s networking)", spec.Name, spec.Name)
	}
	if !nameRE.MatchString(spec.Name) {
		return sdknet.Network{}, errdefs.InvalidArgument("network name %q: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit", spec.Name)
	}
	if spec.Name == sdknet.DefaultNetwork {
		return sdknet.Network{}, errdefs.AlreadyExists("network %q is the default network; it is created on first use", spec.Name)
	}
	if spec.Internal && s.opts.UserMode {
		return sdknet.Network{}, errdefs.NotImplemented("network %s: --internal needs the kernel datapath (the user-mode datapath always NATs): run the daemon as root with network_datapath = \"kernel\" or \"auto\"", spec.Name)
	}
	var subnet netip.Prefix
	if spec.Subnet != "" {
		var err error
		if subnet, err = parseSubnet(spec.Subnet); err != nil {
			return sdknet.Network{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.createLocked(ctx, spec.Name, subnet, spec.Internal, spec.Labels)
	if err != nil {
		return sdknet.Network{}, err
	}
	return s.publicLocked(n)
}

// createLocked stores a network and brings it up, undoing both on failure.
func (s *Service) createLocked(ctx context.Context, name string, subnet netip.Prefix, internal bool, labels map[string]string) (netRecord, error) {
	n := netRecord{ID: newID(), Name: name, Internal: internal, Labels: labels, CreatedAt: time.Now().UTC()}
	if name == sdknet.DefaultNetwork {
		n.Bridge = s.opts.DefaultBridge
	} else {
		n.Bridge = "br-" + n.ID[:12]
	}
	err := s.store.db.Update(func(tx *bolt.Tx) error {
		if id := tx.Bucket(bucketNames).Get([]byte(name)); id != nil {
			return errdefs.AlreadyExists("network %q already exists (id %.12s)", name, id)
		}
		nets, err := networksIn(tx)
		if err != nil {
			return err
		}
		if subnet.IsValid() {
			if other, os, bad := conflict(nets, subnet, s.opts.DefaultSubnet, name == sdknet.DefaultNetwork); bad {
				return errdefs.InvalidArgument("subnet %s overlaps network %s (%s)", subnet, other, os)
			}
		} else if subnet, err = s.pickSubnet(nets); err != nil {
			return err
		}
		n.Subnet, n.Gateway = subnet, gatewayOf(subnet)
		if err := putJSON(tx.Bucket(bucketNetworks), n.ID, n); err != nil {
			return err
		}
		return tx.Bucket(bucketNames).Put([]byte(name), []byte(n.ID))
	})
	if err != nil {
		return netRecord{}, err
	}
	if err := s.bringUp(ctx, n); err != nil {
		undoCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if uerr := s.tearDown(undoCtx, n); uerr != nil {
			s.log.Error("undo a failed network create", "network", name, "error", uerr)
		}
		if derr := s.deleteRecord(n); derr != nil {
			s.log.Error("remove the record of a failed network create", "network", name, "error", derr)
		}
		return netRecord{}, fmt.Errorf("create network %s: %w", name, err)
	}
	s.log.Info("network created", "network", name, "network_id", n.ID, "subnet", n.Subnet, "bridge", n.Bridge, "internal", internal)
	return n, nil
}

func (s *Service) deleteRecord(n netRecord) error {
	return s.store.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketNetworks).Delete([]byte(n.ID)); err != nil {
			return err
		}
		if id := tx.Bucket(bucketNames).Get([]byte(n.Name)); string(id) == n.ID {
			if err := tx.Bucket(bucketNames).Delete([]byte(n.Name)); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketIPAM).Bucket([]byte(n.ID)) != nil {
			if err := tx.Bucket(bucketIPAM).DeleteBucket([]byte(n.ID)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketCursors).Delete([]byte(n.ID))
	})
}

// ensureDefaultLocked creates the default network when it does not exist.
func (s *Service) ensureDefaultLocked(ctx context.Context) (netRecord, error) {
	n, err := s.resolveLocked(sdknet.DefaultNetwork)
	if err == nil {
		return n, nil
	}
	if !errdefs.IsNotFound(err) {
		return netRecord{}, err
	}
	return s.createLocked(ctx, sdknet.DefaultNetwork, s.opts.DefaultSubnet, false, nil)
}

// resolveLocked finds the network ref names: a name, an ID or a unique ID
// prefix.
func (s *Service) resolveLocked(ref string) (netRecord, error) {
	var n netRecord
	err := s.store.db.View(func(tx *bolt.Tx) error {
		if ref == "" {
			return errdefs.InvalidArgument("no network given")
		}
		id := tx.Bucket(bucketNames).Get([]byte(ref))
		if id == nil {
			var matches []string
			_ = tx.Bucket(bucketNetworks).ForEach(func(k, _ []byte) error {
				if strings.HasPrefix(string(k), ref) {
					matches = append(matches, string(k))
				}
				return nil
			})
			switch len(matches) {
			case 0:
				return errdefs.NotFound("network %q not found", ref)
			case 1:
				id = []byte(matches[0])
			default:
				return errdefs.InvalidArgument("network ID prefix %q is ambiguous: it matches %d networks", ref, len(matches))
			}
		}
		ok, err := getJSON(tx.Bucket(bucketNetworks), string(id), &n)
		if err == nil && !ok {
			err = errdefs.NotFound("network %q not found", ref)
		}
		return err
	})
	return n, err
}

// publicLocked renders n with the containers attached to it.
func (s *Service) publicLocked(n netRecord) (sdknet.Network, error) {
	var eps []epRecord
	if err := s.store.db.View(func(tx *bolt.Tx) (err error) { eps, err = endpointsIn(tx); return }); err != nil {
		return sdknet.Network{}, err
	}
	return s.public(n, eps), nil
}

func (s *Service) public(n netRecord, eps []epRecord) sdknet.Network {
	out := sdknet.Network{
		ID: n.ID, Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet.String(), Gateway: n.Gateway.String(),
		Internal: n.Internal, Labels: n.Labels, CreatedAt: n.CreatedAt,
	}
	if s.opts.UserMode {
		out.Bridge = "" // a user-mode switch, no kernel bridge
	}
	for _, c := range s.blockers {
		out.Warnings = append(out.Warnings, fmt.Sprintf("forwarded traffic is dropped by firewall chain %q (found at daemon start): %s", c, ForwardBlockersHint))
	}
	for _, e := range eps {
		if e.NetworkID == n.ID {
			out.Containers = append(out.Containers, e.ContainerID)
		}
	}
	slices.Sort(out.Containers)
	return out
}

// List implements sdknet.Service; it creates the default network on first
// use, as Docker always lists it.
func (s *Service) List(ctx context.Context) ([]sdknet.Network, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.ensureDefaultLocked(ctx); err != nil {
		return nil, err
	}
	var nets []netRecord
	var eps []epRecord
	err := s.store.db.View(func(tx *bolt.Tx) (err error) {
		if nets, err = networksIn(tx); err != nil {
			return err
		}
		eps, err = endpointsIn(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]sdknet.Network, 0, len(nets))
	for _, n := range nets {
		out = append(out, s.public(n, eps))
	}
	slices.SortFunc(out, func(a, b sdknet.Network) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Inspect implements sdknet.Service.
func (s *Service) Inspect(ctx context.Context, ref string) (sdknet.Network, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n netRecord
	var err error
	if ref == sdknet.DefaultNetwork {
		n, err = s.ensureDefaultLocked(ctx)
	} else {
		n, err = s.resolveLocked(ref)
	}
	if err != nil {
		return sdknet.Network{}, err
	}
	return s.publicLocked(n)
}

// Remove implements sdknet.Service.
func (s *Service) Remove(ctx context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.resolveLocked(ref)
	if err != nil {
		return err
	}
	return s.removeLocked(ctx, n)
}

func (s *Service) removeLocked(ctx context.Context, n netRecord) error {
	var eps []epRecord
	if err := s.store.db.View(func(tx *bolt.Tx) (err error) { eps, err = endpointsIn(tx); return }); err != nil {
		return err
	}
	var users []string
	for _, e := range eps {
		if e.NetworkID == n.ID {
			users = append(users, fmt.Sprintf("%s (%.12s)", e.Name, e.ContainerID))
		}
	}
	if len(users) > 0 {
		slices.Sort(users)
		return errdefs.InvalidState("network %s is in use by %d container(s): %s; remove them or their network first",
			n.Name, len(users), strings.Join(users, ", "))
	}
	if err := s.tearDown(ctx, n); err != nil {
		return err
	}
	if err := s.deleteRecord(n); err != nil {
		return err
	}
	s.log.Info("network removed", "network", n.Name, "network_id", n.ID)
	return nil
}

// Prune implements sdknet.Service.
func (s *Service) Prune(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var nets []netRecord
	var eps []epRecord
	err := s.store.db.View(func(tx *bolt.Tx) (err error) {
		if nets, err = networksIn(tx); err != nil {
			return err
		}
		eps, err = endpointsIn(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, e := range eps {
		used[e.NetworkID] = true
	}
	var removed []string
	var errs []error
	for _, n := range nets {
		if n.Name == sdknet.DefaultNetwork || used[n.ID] {
			continue
		}
		if err := s.removeLocked(ctx, n); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n.Name)
	}
	slices.Sort(removed)
	return removed, errors.Join(errs...)
}

// Endpoints implements sdknet.Service.
func (s *Service) Endpoints(_ context.Context, ref string) ([]sdknet.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	filter := ""
	if ref != "" {
		n, err := s.resolveLocked(ref)
		if err != nil {
			return nil, err
		}
		filter = n.ID
	}
	var nets []netRecord
	var eps []epRecord
	err := s.store.db.View(func(tx *bolt.Tx) (err error) {
		if nets, err = networksIn(tx); err != nil {
			return err
		}
		eps, err = endpointsIn(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	byID := map[string]netRecord{}
	for _, n := range nets {
		byID[n.ID] = n
	}
	var out []sdknet.Endpoint
	for _, e := range eps {
		if filter != "" && e.NetworkID != filter {
			continue
		}
		n := byID[e.NetworkID]
		out = append(out, sdknet.Endpoint{
			ContainerID: e.ContainerID, ContainerName: e.Name, NetworkID: n.ID, Network: n.Name,
			Hostname: e.Hostname, Aliases: e.Aliases, IP: e.IP.String(), PrefixLen: n.Subnet.Bits(),
			MAC: e.MAC, Gateway: n.Gateway.String(), Ports: e.Ports, CreatedAt: e.CreatedAt,
		})
	}
	slices.SortFunc(out, func(a, b sdknet.Endpoint) int {
		if c := strings.Compare(a.Network, b.Network); c != 0 {
			return c
		}
		return strings.Compare(a.ContainerName, b.ContainerName)
	})
	return out, nil
}

// macOf derives a container's MAC address from its IPv4 address, with a
// locally administered prefix of our own (02:be).
func macOf(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("02:be:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// signalAlive reports whether pid exists.
func signalAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// attachmentOf builds what the isolation plugin wires for e on n. The
// container's resolver is the network's (its gateway), which answers the
// network's names and forwards the rest to the container's own --dns
// servers (HelperState.Clients); only when no helper serves the gateway
// (no datapath) do the --dns servers go into resolv.conf themselves.
func (s *Service) attachmentOf(n netRecord, e epRecord) isolation.NetworkAttachment {
	a := isolation.NetworkAttachment{
		Mode: sdknet.ModeBridge,
		Interfaces: []isolation.Interface{{
			Name: "eth0", Bridge: n.Bridge, MAC: e.MAC,
			Addresses: []string{netip.PrefixFrom(e.IP, n.Subnet.Bits()).String()},
			Gateway:   n.Gateway.String(), MTU: MTU,
		}},
		DNS:      isolation.DNS{Servers: []string{n.Gateway.String()}, Search: e.DNSSearch},
		Hostname: e.Hostname,
		Ports:    e.Ports,
	}
	if len(e.DNS) > 0 && s.helpers == nil {
		a.DNS.Servers = e.DNS
	}
	a.Hosts = append(a.Hosts, isolation.HostEntry{Name: sdknet.HostGatewayName, IP: n.Gateway.String()})
	for _, h := range e.ExtraHosts {
		if h.IP == sdknet.HostGateway {
			h.IP = n.Gateway.String()
		}
		a.Hosts = append(a.Hosts, h)
	}
	if s.opts.UserMode {
		s.userAttachment(&a, n, e)
	}
	return a
}
