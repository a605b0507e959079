package network

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// Buckets of networks.db.
//
//	networks   id → JSON netRecord
//	names      name → id
//	ipam       id → bucket: 4-byte IPv4 address → container id
//	cursors    id → 4-byte IPv4 address allocated last
//	endpoints  container id → JSON epRecord
//	meta       "schema" → "1"
var (
	bucketNetworks  = []byte("networks")
	bucketNames     = []byte("names")
	bucketIPAM      = []byte("ipam")
	bucketCursors   = []byte("cursors")
	bucketEndpoints = []byte("endpoints")
	bucketMeta      = []byte("meta")
	keySchema       = []byte("schema")
)

const schemaVersion = "1"

// netRecord is a network as stored.
type netRecord struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Bridge    string            `json:"bridge"`
	Subnet    netip.Prefix      `json:"subnet"`
	Gateway   netip.Addr        `json:"gateway"`
	Internal  bool              `json:"internal,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
}

// epRecord is a container's endpoint as stored: what Attach was asked and
// what it allocated.
type epRecord struct {
	ContainerID string                  `json:"containerId"`
	Name        string                  `json:"name"`
	Hostname    string                  `json:"hostname"`
	Aliases     []string                `json:"aliases,omitempty"`
	NetworkID   string                  `json:"networkId"`
	IP          netip.Addr              `json:"ip"`
	MAC         string                  `json:"mac"`
	Ports       []isolation.PortMapping `json:"ports,omitempty"`
	DNS         []string                `json:"dns,omitempty"`
	DNSSearch   []string                `json:"dnsSearch,omitempty"`
	ExtraHosts  []isolation.HostEntry   `json:"extraHosts,omitempty"`
	CreatedAt   time.Time               `json:"createdAt"`
	// Connected marks an endpoint Connect added (key
	// connectedKey(container, network)); the Attach endpoint is keyed by
	// the container ID alone.
	Connected bool `json:"connected,omitempty"`
}

// key is e's key in the endpoints bucket.
func (e epRecord) key() string {
	if e.Connected {
		return connectedKey(e.ContainerID, e.NetworkID)
	}
	return e.ContainerID
}

func connectedKey(containerID, networkID string) string { return containerID + "/" + networkID }

// store is networks.db.
type store struct {
	db *bolt.DB
}

// openStore opens (creating) the store at path, waiting at most timeout
// for another process's lock.
func openStore(path string, timeout time.Duration) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if err == bolt.ErrTimeout {
			return nil, errdefs.Unavailable("open %s: another process holds its lock (waited %s)", path, timeout)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNetworks, bucketNames, bucketIPAM, bucketCursors, bucketEndpoints, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte(schemaVersion))
		case string(v) != schemaVersion:
			return errdefs.InvalidState("%s has schema %s; this berth knows schema %s", path, v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func getJSON(b *bolt.Bucket, key string, v any) (bool, error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode %s record %s: %w", "network store", key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

// networks returns every stored network.
func networksIn(tx *bolt.Tx) ([]netRecord, error) {
	var out []netRecord
	err := tx.Bucket(bucketNetworks).ForEach(func(_, v []byte) error {
		var n netRecord
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("decode network record: %w", err)
		}
		out = append(out, n)
		return nil
	})
	return out, err
}

// endpointsIn returns every stored endpoint.
func endpointsIn(tx *bolt.Tx) ([]epRecord, error) {
	var out []epRecord
	err := tx.Bucket(bucketEndpoints).ForEach(func(_, v []byte) error {
		var e epRecord
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode endpoint record: %w", err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// addrKey is the IPAM key of a (4-byte) address.
func addrKey(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

func addrFromKey(k []byte) netip.Addr {
	var b [4]byte
	copy(b[:], k)
	return netip.AddrFrom4(b)
}

// hostRange returns the first and last address containers may get in p:
// after the gateway (the first host address) up to before the broadcast.
func hostRange(p netip.Prefix) (first, last netip.Addr) {
	base := p.Masked().Addr().As4()
	n := binary.BigEndian.Uint32(base[:])
	size := uint32(1) << (32 - p.Bits())
	var f, l [4]byte
	binary.BigEndian.PutUint32(f[:], n+2)
	binary.BigEndian.PutUint32(l[:], n+size-2)
	return netip.AddrFrom4(f), netip.AddrFrom4(l)
}

// gatewayOf returns the first host address of p.
func gatewayOf(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

// allocate takes an address on network id for container ctr: want when
// valid (inside the subnet, not the network, gateway or broadcast address,
// not taken), else the next free address after the last one allocated,
// wrapping around, so a released address is reused only once the others
// have been handed out.
func allocate(tx *bolt.Tx, n netRecord, ctr string, want netip.Addr) (netip.Addr, error) {
	ipam, err := tx.Bucket(bucketIPAM).CreateBucketIfNotExists([]byte(n.ID))
	if err != nil {
		return netip.Addr{}, err
	}
	first, last := hostRange(n.Subnet)
	if want.IsValid() {
		if !n.Subnet.Contains(want) || want.Less(first) || last.Less(want) {
			return netip.Addr{}, errdefs.InvalidArgument("ip %s: not an address containers may have on network %s (subnet %s, gateway %s; usable %s to %s)",
				want, n.Name, n.Subnet, n.Gateway, first, last)
		}
		if owner := ipam.Get(addrKey(want)); owner != nil {
			return netip.Addr{}, errdefs.InvalidArgument("ip %s: already in use on network %s by container %.12s", want, n.Name, owner)
		}
		return want, ipam.Put(addrKey(want), []byte(ctr))
	}
	start := first
	if c := tx.Bucket(bucketCursors).Get([]byte(n.ID)); c != nil {
		if prev := addrFromKey(c); n.Subnet.Contains(prev) && prev.Less(last) && !prev.Less(first) {
			start = prev.Next()
		}
	}
	a := start
	for {
		if ipam.Get(addrKey(a)) == nil {
			if err := ipam.Put(addrKey(a), []byte(ctr)); err != nil {
				return netip.Addr{}, err
			}
			return a, tx.Bucket(bucketCursors).Put([]byte(n.ID), addrKey(a))
		}
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			return netip.Addr{}, errdefs.InvalidState("network %s has no free address left (subnet %s)", n.Name, n.Subnet)
		}
	}
}

// release frees address a on network id when ctr holds it.
func release(tx *bolt.Tx, netID string, a netip.Addr, ctr string) error {
	ipam := tx.Bucket(bucketIPAM).Bucket([]byte(netID))
	if ipam == nil || !a.IsValid() {
		return nil
	}
	if owner := ipam.Get(addrKey(a)); owner != nil && string(owner) == ctr {
		return ipam.Delete(addrKey(a))
	}
	return nil
}

// allocations lists network id's allocated addresses and their holders.
func allocations(tx *bolt.Tx, netID string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	if ipam := tx.Bucket(bucketIPAM).Bucket([]byte(netID)); ipam != nil {
		_ = ipam.ForEach(func(k, v []byte) error {
			out[addrFromKey(k)] = string(v)
			return nil
		})
	}
	return out
}
