package cgroupctl

import (
	"github.com/berth-dev/berth/sdk/resources"
)

// backend is one cgroup hierarchy layout (v1 or v2). It knows how to put
// Limits into cgroupfs and read usage back; the controller owns ids,
// records and locking, and calls a backend with its lock held for that
// group.
type backend interface {
	// mode is "v1" or "v2".
	mode() string
	// prepare readies the parent cgroup; Configure calls it, Info does not
	// (Info has no side effects).
	prepare() error
	// capabilities are what this host's hierarchy can enforce.
	capabilities() []string
	// unsupported returns ErrNotImplemented naming the first field of l
	// this hierarchy cannot enforce, or nil.
	unsupported(l resources.Limits) error
	// create makes the cgroup of id with limits l. On error nothing of it
	// is left behind.
	create(id string, l resources.Limits) error
	// update replaces old limits by l.
	update(id string, old, l resources.Limits) error
	// exists tells whether the cgroup of id is there.
	exists(id string) bool
	// ids lists the groups under the parent.
	ids() ([]string, error)
	attach(id string, pid int) error
	pids(id string) ([]int, error)
	usage(id string) (resources.Usage, error)
	// remove deletes the cgroup of id, moving processes still in it to the
	// plugin's own cgroup first. Removing a missing cgroup succeeds.
	remove(id string) error
	placement(id string) resources.Placement
	// memoryEvents and throttling feed the monitor.
	memoryEvents(id string) (memoryCounters, error)
	throttling(id string) (periods, nanos uint64, err error)
	// pidsRefused is how many forks pids.max refused (pids.events "max").
	pidsRefused(id string) (uint64, error)
}

// memoryCounters are the cumulative memory events of a group.
type memoryCounters struct {
	OOMKills uint64
	// High counts memory.high breaches (v2); v1 has no counter.
	High    uint64
	Usage   uint64
	SoftMax uint64 // soft limit in force, 0 = none
}
