package cgroupctl

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/resources"
)

// v2Controllers are the v2 controllers groups use.
var v2Controllers = []string{"cpu", "cpuset", "memory", "io", "pids"}

// v2Backend puts groups in the unified hierarchy mounted at root, at
// <parent>/<id>, with the controllers root offers enabled down to them.
type v2Backend struct {
	log    hclog.Logger
	root   string
	parent string
	// controllers are those root offers (cgroup.controllers).
	controllers []string
	ioDir       string
}

func newV2Backend(root, parent, ioDir string, log hclog.Logger) (*v2Backend, error) {
	data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, errdefs.Unavailable("resources-cgroup: %s is not a cgroup v2 mount: %v", root, err)
	}
	var ctls []string
	for _, c := range strings.Fields(string(data)) {
		if slices.Contains(v2Controllers, c) {
			ctls = append(ctls, c)
		}
	}
	return &v2Backend{log: log, root: root, parent: parent, controllers: ctls, ioDir: ioDir}, nil
}

// prepare creates the parent with every controller the groups use enabled
// in root's subtree_control, then in the parent's own, so each group can
// use them. The parent never holds processes (v2's no-internal-process
// rule would refuse the controllers).
func (b *v2Backend) prepare() error {
	if _, err := cgroup2.NewManager(b.root, "/"+b.parent, &cgroup2.Resources{}); err != nil {
		return errdefs.Unavailable("resources-cgroup: create parent cgroup %s: %v", filepath.Join(b.root, b.parent), err)
	}
	if len(b.controllers) > 0 {
		for _, dir := range []string{b.root, filepath.Join(b.root, b.parent)} {
			file := filepath.Join(dir, "cgroup.subtree_control")
			if err := os.WriteFile(file, []byte("+"+strings.Join(b.controllers, " +")), 0o644); err != nil {
				return errdefs.Unavailable("resources-cgroup: enable controllers %q in %s: %v", b.controllers, file, err)
			}
		}
	}
	return nil
}

func (b *v2Backend) mode() string { return modeV2 }

func (b *v2Backend) has(c string) bool { return slices.Contains(b.controllers, c) }

func (b *v2Backend) swap() bool {
	_, err := os.Stat(filepath.Join(b.root, b.parent, "memory.swap.max"))
	return err == nil
}

func (b *v2Backend) capabilities() []string {
	caps := []string{}
	if b.has("cpu") {
		caps = append(caps, resources.CapCPUShares, resources.CapCPUQuota, resources.CapEventsCPU)
	}
	if b.has("cpuset") {
		caps = append(caps, resources.CapCPUSet)
	}
	if b.has("memory") {
		caps = append(caps, resources.CapMemoryHard, resources.CapMemorySoft, resources.CapEventsOOM, resources.CapEventsMemory)
		if b.swap() {
			caps = append(caps, resources.CapSwap)
		}
	}
	if b.has("io") {
		caps = append(caps, resources.CapIOBandwidth)
	}
	if b.has("pids") {
		caps = append(caps, resources.CapPids)
	}
	// Device rules are eBPF programs attached to the cgroup: no controller.
	caps = append(caps, resources.CapDevices)
	if b.has("memory") {
		// cpu.stat usage is always there; memory needs the controller.
		caps = append(caps, resources.CapUsage)
	}
	return caps
}

func (b *v2Backend) unsupported(l resources.Limits) error {
	need := []struct {
		set        bool
		field, ctl string
	}{
		{l.CPUShares != 0 || l.CPUs != 0, "CPUShares/CPUs", "cpu"},
		{l.CPUSetCPUs != "" || l.CPUSetMems != "", "CPUSetCPUs/CPUSetMems", "cpuset"},
		{l.MemoryBytes != 0 || l.MemorySoftBytes != 0 || l.SwapBytes != 0, "MemoryBytes/MemorySoftBytes/SwapBytes", "memory"},
		{l.IOReadBPS != 0 || l.IOWriteBPS != 0, "IOReadBPS/IOWriteBPS", "io"},
		{l.Pids != 0, "Pids", "pids"},
	}
	for _, n := range need {
		if n.set && !b.has(n.ctl) {
			return errdefs.NotImplemented("%s cannot be enforced here: the %s controller is not available in %s (cgroup.controllers: %q)", n.field, n.ctl, b.root, b.controllers)
		}
	}
	if l.SwapBytes != 0 && !b.swap() {
		return errdefs.NotImplemented("SwapBytes cannot be enforced here: the kernel does not account swap (no memory.swap.max)")
	}
	return nil
}

func (b *v2Backend) rel(id string) string { return "/" + b.parent + "/" + id }
func (b *v2Backend) dir(id string) string { return filepath.Join(b.root, b.parent, id) }

func (b *v2Backend) load(id string) (*cgroup2.Manager, error) {
	if !b.exists(id) {
		return nil, errdefs.NotFound("the cgroup %s is gone", b.dir(id))
	}
	return cgroup2.Load(b.rel(id), cgroup2.WithMountpoint(b.root))
}

// resources turns l into the library's v2 resources, with every enforceable
// field set (the kernel default where l has none) so an update from old
// undoes what old set. The soft limit is memory.high.
func (b *v2Backend) resources(l, old resources.Limits) (*cgroup2.Resources, error) {
	res := &cgroup2.Resources{}
	unlimited := int64(math.MaxInt64) // the kernel reads it as "max"
	if b.has("cpu") {
		weight := uint64(100)
		if l.CPUShares != 0 {
			weight = cgroup2.ConvertCPUSharesToCgroupV2Value(l.CPUShares)
		}
		period := uint64(100000)
		var quota *int64
		if l.CPUs != 0 {
			q := max(int64(l.CPUs*float64(period)), 1000)
			quota = &q
		}
		res.CPU = &cgroup2.CPU{Weight: &weight, Max: cgroup2.NewCPUMax(quota, &period)}
	}
	if b.has("cpuset") && (l.CPUSetCPUs != "" || l.CPUSetMems != "") {
		if res.CPU == nil {
			res.CPU = &cgroup2.CPU{}
		}
		res.CPU.Cpus, res.CPU.Mems = l.CPUSetCPUs, l.CPUSetMems
	}
	if b.has("memory") {
		maxv, high := unlimited, unlimited
		if l.MemoryBytes != 0 {
			maxv = l.MemoryBytes
		}
		if l.MemorySoftBytes != 0 {
			high = l.MemorySoftBytes
		}
		res.Memory = &cgroup2.Memory{Max: &maxv, High: &high}
		if b.swap() {
			swap := unlimited
			switch {
			case l.MemoryBytes == 0 || l.SwapBytes == -1:
			case l.SwapBytes == 0:
				swap = l.MemoryBytes // Docker's default: as much swap as memory
			default:
				swap = l.SwapBytes
			}
			res.Memory.Swap = &swap
		}
	}
	if b.has("pids") {
		res.Pids = &cgroup2.Pids{Max: -1}
		if l.Pids > 0 {
			res.Pids.Max = l.Pids
		}
	}
	if b.has("io") && (l.IOReadBPS != 0 || l.IOWriteBPS != 0 || old.IOReadBPS != 0 || old.IOWriteBPS != 0) {
		res.IO = &cgroup2.IO{}
		add := func(limits resources.Limits, read, write uint64) error {
			maj, mnr, err := blockDevice(cmpOr(limits.IODevice, b.ioDir))
			if err != nil {
				return err
			}
			res.IO.Max = append(res.IO.Max,
				cgroup2.Entry{Type: cgroup2.ReadBPS, Major: maj, Minor: mnr, Rate: read},
				cgroup2.Entry{Type: cgroup2.WriteBPS, Major: maj, Minor: mnr, Rate: write})
			return nil
		}
		if old.IOReadBPS != 0 || old.IOWriteBPS != 0 {
			// Lift the old throttle; the new one (maybe on the same disk) follows.
			if err := add(old, math.MaxUint64, math.MaxUint64); err != nil {
				b.log.Warn("cannot find the disk of the old IO limit to lift it", "error", err)
			}
		}
		if l.IOReadBPS != 0 || l.IOWriteBPS != 0 {
			read, write := l.IOReadBPS, l.IOWriteBPS
			if read == 0 {
				read = math.MaxUint64
			}
			if write == 0 {
				write = math.MaxUint64
			}
			if err := add(l, read, write); err != nil {
				return nil, err
			}
		}
	}
	if len(l.Devices) != 0 {
		res.Devices = deviceRules(l.Devices, false)
	}
	return res, nil
}

func (b *v2Backend) create(id string, l resources.Limits) error {
	res, err := b.resources(l, resources.Limits{})
	if err != nil {
		return err
	}
	if _, err := cgroup2.NewManager(b.root, b.rel(id), res); err != nil {
		if rerr := os.Remove(b.dir(id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			b.log.Error("cannot remove a half-created cgroup", "path", b.dir(id), "error", rerr)
		}
		return kernelError(err, "create cgroup %s", b.dir(id))
	}
	return nil
}

func (b *v2Backend) update(id string, old, l resources.Limits) error {
	if !slices.Equal(old.Devices, l.Devices) && len(old.Devices) != 0 {
		// Device programs attached with BPF_F_ALLOW_MULTI only ever add
		// restrictions; replacing them needs the old program's handle.
		return errdefs.NotImplemented("changing device rules of an existing group is not supported on cgroup v2; create the group with its final rules")
	}
	res, err := b.resources(l, old)
	if err != nil {
		return err
	}
	if len(old.Devices) != 0 {
		res.Devices = nil // unchanged and already attached
	}
	mgr, err := b.load(id)
	if err != nil {
		return err
	}
	if l.CPUSetCPUs == "" && old.CPUSetCPUs != "" {
		// An empty cpuset.cpus inherits the parent's again.
		if err := os.WriteFile(filepath.Join(b.dir(id), "cpuset.cpus"), []byte("\n"), 0o644); err != nil {
			return kernelError(err, "reset cpuset.cpus of %s", b.dir(id))
		}
	}
	if l.CPUSetMems == "" && old.CPUSetMems != "" {
		if err := os.WriteFile(filepath.Join(b.dir(id), "cpuset.mems"), []byte("\n"), 0o644); err != nil {
			return kernelError(err, "reset cpuset.mems of %s", b.dir(id))
		}
	}
	return kernelError(mgr.Update(res), "update cgroup %s", b.dir(id))
}

func (b *v2Backend) exists(id string) bool {
	_, err := os.Stat(b.dir(id))
	return err == nil
}

func (b *v2Backend) ids() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(b.root, b.parent))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			seen[e.Name()] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

func (b *v2Backend) attach(id string, pid int) error {
	if err := processAlive(pid); err != nil {
		return err
	}
	mgr, err := b.load(id)
	if err != nil {
		return err
	}
	return kernelError(mgr.AddProc(uint64(pid)), "write pid %d to %s", pid, b.dir(id))
}

func (b *v2Backend) pids(id string) ([]int, error) {
	mgr, err := b.load(id)
	if err != nil {
		return nil, err
	}
	procs, err := mgr.Procs(true)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(procs))
	for _, p := range procs {
		out = append(out, int(p))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (b *v2Backend) usage(id string) (resources.Usage, error) {
	mgr, err := b.load(id)
	if err != nil {
		return resources.Usage{}, err
	}
	m, err := mgr.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatIO | cgroup2.StatPids)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return resources.Usage{}, err
	}
	u := resources.Usage{Time: now()}
	if m == nil {
		// No memory controller: the stats call fails on memory.stat; CPU
		// time is still in the core cpu.stat.
		if m, err = mgr.StatFiltered(cgroup2.StatCPU | cgroup2.StatPids); err != nil {
			return resources.Usage{}, err
		}
	}
	if m.CPU != nil {
		u.CPUUsageNanos = m.CPU.UsageUsec * 1000
		u.CPUThrottledPeriods = m.CPU.NrThrottled
		u.CPUThrottledNanos = m.CPU.ThrottledUsec * 1000
	}
	if m.Memory != nil {
		u.MemoryBytes, u.MemoryPeakBytes, u.SwapBytes = m.Memory.Usage, m.Memory.MaxUsage, m.Memory.SwapUsage
	}
	if m.Io != nil {
		for _, e := range m.Io.Usage {
			u.IOReadBytes += e.Rbytes
			u.IOWriteBytes += e.Wbytes
		}
	}
	if m.Pids != nil {
		u.Pids = m.Pids.Current
	}
	return u, nil
}

// remove moves processes still in the group to the plugin's own cgroup,
// then removes the group's directory.
func (b *v2Backend) remove(id string) error {
	mgr, err := b.load(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pids, _ := b.pids(id); len(pids) > 0 {
		_, self, err := cgroups.ParseCgroupFileUnified("/proc/self/cgroup")
		if err != nil || self == "" {
			return fmt.Errorf("find the plugin's own cgroup to move processes %v to: %v", pids, err)
		}
		dst, err := cgroup2.Load(self, cgroup2.WithMountpoint(b.root))
		if err != nil {
			return err
		}
		b.log.Warn("moving processes out of a group being deleted", "group", id, "pids", pids, "to", self)
		if err := mgr.MoveTo(dst); err != nil {
			return fmt.Errorf("move processes %v out of %s: %w", pids, b.dir(id), err)
		}
	}
	if err := mgr.Delete(); err != nil && b.exists(id) {
		return err
	}
	return nil
}

func (b *v2Backend) placement(id string) resources.Placement {
	return resources.Placement{
		CgroupPath:  b.rel(id),
		Annotations: map[string]string{annotationMode: modeV2, annotationRoot: b.root},
	}
}

func (b *v2Backend) memoryEvents(id string) (memoryCounters, error) {
	mgr, err := b.load(id)
	if err != nil {
		return memoryCounters{}, err
	}
	m, err := mgr.StatFiltered(cgroup2.StatMemoryEvents | cgroup2.StatMemory)
	if err != nil {
		return memoryCounters{}, err
	}
	var c memoryCounters
	if m.MemoryEvents != nil {
		c.OOMKills, c.High = m.MemoryEvents.OomKill, m.MemoryEvents.High
	}
	if m.Memory != nil {
		c.Usage = m.Memory.Usage
	}
	return c, nil
}

func (b *v2Backend) throttling(id string) (uint64, uint64, error) {
	mgr, err := b.load(id)
	if err != nil {
		return 0, 0, err
	}
	m, err := mgr.StatFiltered(cgroup2.StatCPU)
	if err != nil {
		return 0, 0, err
	}
	return m.CPU.NrThrottled, m.CPU.ThrottledUsec * 1000, nil
}

// memoryEventsFile is the file the monitor watches with inotify, "" when
// the memory controller is not available.
func (b *v2Backend) memoryEventsFile(id string) string {
	if !b.has("memory") {
		return ""
	}
	return filepath.Join(b.dir(id), "memory.events")
}

func (b *v2Backend) pidsRefused(id string) (uint64, error) {
	return readPidsEvents(filepath.Join(b.dir(id), "pids.events"))
}
