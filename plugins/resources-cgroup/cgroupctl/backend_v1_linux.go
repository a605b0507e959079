package cgroupctl

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/resources"
)

// v1Controllers are the v1 hierarchies a group is created in, those the
// host has mounted. Named hierarchies (name=systemd) are left alone.
var v1Controllers = []cgroup1.Name{
	cgroup1.Cpu, cgroup1.Cpuacct, cgroup1.Cpuset, cgroup1.Memory, cgroup1.Blkio,
	cgroup1.Pids, cgroup1.Devices, cgroup1.Freezer,
}

// v1Backend puts groups in the cgroup v1 hierarchies mounted under root
// (one directory per controller), each at <parent>/<id>.
type v1Backend struct {
	log    hclog.Logger
	root   string
	parent string
	// present are the controllers mounted under root.
	present []cgroup1.Name
	// swap is true when the kernel accounts swap (memory.memsw.*).
	swap bool
	// ioDir is where IO limits apply when Limits.IODevice is empty.
	ioDir string
}

func newV1Backend(root, parent, ioDir string, log hclog.Logger) (*v1Backend, error) {
	b := &v1Backend{log: log, root: root, parent: parent, ioDir: ioDir}
	for _, n := range v1Controllers {
		if st, err := os.Stat(filepath.Join(root, string(n))); err == nil && st.IsDir() {
			b.present = append(b.present, n)
		}
	}
	if len(b.present) == 0 {
		return nil, errdefs.Unavailable("resources-cgroup: no cgroup v1 controller is mounted under %s", root)
	}
	if _, err := os.Stat(filepath.Join(root, "memory", "memory.memsw.limit_in_bytes")); err == nil {
		b.swap = true
	}
	return b, nil
}

func (b *v1Backend) mode() string { return modeV1 }

// prepare does nothing on v1: the library creates the parent (copying the
// cpuset of its own parent) with the first group.
func (b *v1Backend) prepare() error { return nil }

func (b *v1Backend) has(n cgroup1.Name) bool { return slices.Contains(b.present, n) }

// hierarchy builds the subsystems of the controllers present under root.
func (b *v1Backend) hierarchy() ([]cgroup1.Subsystem, error) {
	var out []cgroup1.Subsystem
	for _, n := range b.present {
		switch n {
		case cgroup1.Cpu:
			out = append(out, cgroup1.NewCpu(b.root))
		case cgroup1.Cpuacct:
			out = append(out, cgroup1.NewCpuacct(b.root))
		case cgroup1.Cpuset:
			out = append(out, cgroup1.NewCpuset(b.root))
		case cgroup1.Memory:
			out = append(out, cgroup1.NewMemory(b.root, cgroup1.OptionalSwap()))
		case cgroup1.Blkio:
			out = append(out, cgroup1.NewBlkio(b.root))
		case cgroup1.Pids:
			out = append(out, cgroup1.NewPids(b.root))
		case cgroup1.Devices:
			out = append(out, cgroup1.NewDevices(b.root))
		case cgroup1.Freezer:
			out = append(out, cgroup1.NewFreezer(b.root))
		}
	}
	return out, nil
}

func (b *v1Backend) capabilities() []string {
	caps := []string{}
	add := func(n cgroup1.Name, c ...string) {
		if b.has(n) {
			caps = append(caps, c...)
		}
	}
	add(cgroup1.Cpu, resources.CapCPUShares, resources.CapCPUQuota, resources.CapEventsCPU)
	add(cgroup1.Cpuset, resources.CapCPUSet)
	add(cgroup1.Memory, resources.CapMemoryHard, resources.CapMemorySoft, resources.CapEventsOOM, resources.CapEventsMemory)
	if b.swap {
		caps = append(caps, resources.CapSwap)
	}
	add(cgroup1.Blkio, resources.CapIOBandwidth)
	add(cgroup1.Pids, resources.CapPids)
	add(cgroup1.Devices, resources.CapDevices)
	if b.has(cgroup1.Cpuacct) && b.has(cgroup1.Memory) {
		caps = append(caps, resources.CapUsage)
	}
	return caps
}

func (b *v1Backend) unsupported(l resources.Limits) error {
	need := []struct {
		set   bool
		field string
		ok    bool
		why   string
	}{
		{l.CPUShares != 0 || l.CPUs != 0, "CPUShares/CPUs", b.has(cgroup1.Cpu), "the cpu controller is not mounted"},
		{l.CPUSetCPUs != "" || l.CPUSetMems != "", "CPUSetCPUs/CPUSetMems", b.has(cgroup1.Cpuset), "the cpuset controller is not mounted"},
		{l.MemoryBytes != 0 || l.MemorySoftBytes != 0, "MemoryBytes/MemorySoftBytes", b.has(cgroup1.Memory), "the memory controller is not mounted"},
		{l.SwapBytes != 0, "SwapBytes", b.swap, "the kernel does not account swap (boot with swapaccount=1)"},
		{l.IOReadBPS != 0 || l.IOWriteBPS != 0, "IOReadBPS/IOWriteBPS", b.has(cgroup1.Blkio), "the blkio controller is not mounted"},
		{l.Pids != 0, "Pids", b.has(cgroup1.Pids), "the pids controller is not mounted"},
		{len(l.Devices) != 0, "Devices", b.has(cgroup1.Devices), "the devices controller is not mounted"},
	}
	for _, n := range need {
		if n.set && !n.ok {
			return errdefs.NotImplemented("%s cannot be enforced here: %s", n.field, n.why)
		}
	}
	return nil
}

// rel is the group's path relative to each hierarchy's root.
func (b *v1Backend) rel(id string) string { return "/" + b.parent + "/" + id }

func (b *v1Backend) dir(n cgroup1.Name, id string) string {
	return filepath.Join(b.root, string(n), b.parent, id)
}

func (b *v1Backend) load(id string) (cgroup1.Cgroup, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(b.rel(id)), cgroup1.WithHierarchy(b.hierarchy))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil, errdefs.NotFound("the cgroup %s is gone", b.rel(id))
	}
	return cg, err
}

// spec turns l into the runtime-spec resources the library writes. Every
// field gets a value, the kernel default where l has none, so that an
// update from old also undoes what old set.
func (b *v1Backend) spec(l, old resources.Limits) (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{}
	if b.has(cgroup1.Cpu) {
		shares := uint64(1024)
		if l.CPUShares != 0 {
			shares = l.CPUShares
		}
		period, quota := uint64(100000), int64(-1)
		if l.CPUs != 0 {
			quota = max(int64(l.CPUs*float64(period)), 1000)
		}
		res.CPU = &specs.LinuxCPU{Shares: &shares, Period: &period, Quota: &quota}
	}
	if b.has(cgroup1.Cpuset) {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		res.CPU.Cpus, res.CPU.Mems = l.CPUSetCPUs, l.CPUSetMems
		// Undo an old cpuset: the parent's sets are what a new group gets.
		if res.CPU.Cpus == "" && old.CPUSetCPUs != "" {
			res.CPU.Cpus = b.parentCpuset("cpuset.cpus")
		}
		if res.CPU.Mems == "" && old.CPUSetMems != "" {
			res.CPU.Mems = b.parentCpuset("cpuset.mems")
		}
	}
	if b.has(cgroup1.Memory) {
		limit, soft := int64(-1), int64(-1)
		if l.MemoryBytes != 0 {
			limit = l.MemoryBytes
		}
		if l.MemorySoftBytes != 0 {
			soft = l.MemorySoftBytes
		}
		res.Memory = &specs.LinuxMemory{Limit: &limit, Reservation: &soft}
		if b.swap {
			memsw := int64(-1)
			switch {
			case l.MemoryBytes == 0 || l.SwapBytes == -1:
			case l.SwapBytes == 0: // Docker's default: as much swap as memory
				memsw = 2 * l.MemoryBytes
			default:
				memsw = l.MemoryBytes + l.SwapBytes
			}
			res.Memory.Swap = &memsw
		}
	}
	if b.has(cgroup1.Pids) && l.Pids > 0 {
		res.Pids = &specs.LinuxPids{Limit: &l.Pids}
	}
	if b.has(cgroup1.Blkio) {
		bio, err := b.blockIO(l, old)
		if err != nil {
			return nil, err
		}
		res.BlockIO = bio
	}
	if b.has(cgroup1.Devices) {
		res.Devices = deviceRules(l.Devices, len(old.Devices) != 0)
	}
	return res, nil
}

// blockIO throttles the disk under l's IODevice; throttles old set on
// another disk, or no longer wanted, are cleared (rate 0).
func (b *v1Backend) blockIO(l, old resources.Limits) (*specs.LinuxBlockIO, error) {
	bio := &specs.LinuxBlockIO{}
	type dev struct{ maj, min int64 }
	var newDev, oldDev *dev
	if l.IOReadBPS != 0 || l.IOWriteBPS != 0 {
		maj, mnr, err := blockDevice(cmpOr(l.IODevice, b.ioDir))
		if err != nil {
			return nil, err
		}
		newDev = &dev{maj, mnr}
	}
	if old.IOReadBPS != 0 || old.IOWriteBPS != 0 {
		if maj, mnr, err := blockDevice(cmpOr(old.IODevice, b.ioDir)); err == nil {
			oldDev = &dev{maj, mnr}
		}
	}
	throttle := func(d *dev, rate uint64) specs.LinuxThrottleDevice {
		t := specs.LinuxThrottleDevice{Rate: rate}
		t.Major, t.Minor = d.maj, d.min
		return t
	}
	if oldDev != nil && (newDev == nil || *oldDev != *newDev || l.IOReadBPS == 0) && old.IOReadBPS != 0 {
		bio.ThrottleReadBpsDevice = append(bio.ThrottleReadBpsDevice, throttle(oldDev, 0))
	}
	if oldDev != nil && (newDev == nil || *oldDev != *newDev || l.IOWriteBPS == 0) && old.IOWriteBPS != 0 {
		bio.ThrottleWriteBpsDevice = append(bio.ThrottleWriteBpsDevice, throttle(oldDev, 0))
	}
	if newDev != nil && l.IOReadBPS != 0 {
		bio.ThrottleReadBpsDevice = append(bio.ThrottleReadBpsDevice, throttle(newDev, l.IOReadBPS))
	}
	if newDev != nil && l.IOWriteBPS != 0 {
		bio.ThrottleWriteBpsDevice = append(bio.ThrottleWriteBpsDevice, throttle(newDev, l.IOWriteBPS))
	}
	return bio, nil
}

// deviceRules converts rules (for v1 and v2); reset first re-allows everything, so that an
// update replaces the old rules rather than adding to them.
func deviceRules(rules []resources.DeviceRule, reset bool) []specs.LinuxDeviceCgroup {
	var out []specs.LinuxDeviceCgroup
	if reset {
		out = append(out, specs.LinuxDeviceCgroup{Allow: true, Type: "a", Access: "rwm"})
	}
	for _, r := range rules {
		// -1 is the wildcard for both: the v1 writer prints it as "*", the
		// v2 eBPF filter needs the number set.
		major, minor := r.Major, r.Minor
		out = append(out, specs.LinuxDeviceCgroup{Allow: r.Allow, Type: r.Type, Access: r.Access, Major: &major, Minor: &minor})
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (b *v1Backend) parentCpuset(file string) string {
	data, err := os.ReadFile(filepath.Join(b.root, "cpuset", b.parent, file))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func (b *v1Backend) create(id string, l resources.Limits) error {
	res, err := b.spec(l, resources.Limits{})
	if err != nil {
		return err
	}
	if _, err := cgroup1.New(cgroup1.StaticPath(b.rel(id)), res, cgroup1.WithHierarchy(b.hierarchy)); err != nil {
		b.removeDirs(id)
		return kernelError(err, "create cgroup %s", b.rel(id))
	}
	if err := b.setPidsMax(id, l.Pids); err != nil {
		b.removeDirs(id)
		return err
	}
	if b.has(cgroup1.Memory) {
		// Attach moves a running process: its memory comes along, so usage
		// is true from the start (anonymous and file pages, bits 0 and 1).
		p := filepath.Join(b.dir(cgroup1.Memory, id), "memory.move_charge_at_immigrate")
		if err := os.WriteFile(p, []byte("3"), 0o644); err != nil {
			b.log.Debug("cannot move memory charges with attached processes", "file", p, "error", err)
		}
	}
	return nil
}

// setPidsMax writes pids.max, "max" for no limit (the library only writes
// positive limits, so it cannot lift one).
func (b *v1Backend) setPidsMax(id string, pids int64) error {
	if !b.has(cgroup1.Pids) {
		return nil
	}
	v := "max"
	if pids > 0 {
		v = strconv.FormatInt(pids, 10)
	}
	p := filepath.Join(b.dir(cgroup1.Pids, id), "pids.max")
	return kernelError(os.WriteFile(p, []byte(v), 0o644), "write %s = %s", p, v)
}

// removeDirs removes what exists of id's cgroup, for undoing a failed
// create; errors are logged, the caller already has one to report.
func (b *v1Backend) removeDirs(id string) {
	for _, n := range b.present {
		if err := os.Remove(b.dir(n, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.log.Error("cannot remove a half-created cgroup", "path", b.dir(n, id), "error", err)
		}
	}
}

func (b *v1Backend) update(id string, old, l resources.Limits) error {
	res, err := b.spec(l, old)
	if err != nil {
		return err
	}
	cg, err := b.load(id)
	if err != nil {
		return err
	}
	// memsw must stay >= the memory limit: lift it first when it goes.
	if res.Memory != nil && res.Memory.Swap != nil && *res.Memory.Swap == -1 {
		p := filepath.Join(b.dir(cgroup1.Memory, id), "memory.memsw.limit_in_bytes")
		if err := os.WriteFile(p, []byte("-1"), 0o644); err != nil {
			return kernelError(err, "write %s", p)
		}
	}
	if err := cg.Update(res); err != nil {
		return kernelError(err, "update cgroup %s", b.rel(id))
	}
	return b.setPidsMax(id, l.Pids)
}

func (b *v1Backend) exists(id string) bool {
	for _, n := range b.present {
		if _, err := os.Stat(b.dir(n, id)); err == nil {
			return true
		}
	}
	return false
}

func (b *v1Backend) ids() ([]string, error) {
	seen := map[string]bool{}
	for _, n := range b.present {
		entries, err := os.ReadDir(filepath.Join(b.root, string(n), b.parent))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() {
				seen[e.Name()] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

func (b *v1Backend) attach(id string, pid int) error {
	if err := processAlive(pid); err != nil {
		return err
	}
	cg, err := b.load(id)
	if err != nil {
		return err
	}
	return kernelError(cg.AddProc(uint64(pid)), "write pid %d to %s", pid, b.rel(id))
}

// pidsController is the hierarchy whose cgroup.procs List reads.
func (b *v1Backend) pidsController() cgroup1.Name {
	for _, n := range []cgroup1.Name{cgroup1.Pids, cgroup1.Memory, cgroup1.Cpu} {
		if b.has(n) {
			return n
		}
	}
	return b.present[0]
}

func (b *v1Backend) pids(id string) ([]int, error) {
	cg, err := b.load(id)
	if err != nil {
		return nil, err
	}
	procs, err := cg.Processes(b.pidsController(), true)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(procs))
	for _, p := range procs {
		if !slices.Contains(out, p.Pid) {
			out = append(out, p.Pid)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (b *v1Backend) usage(id string) (resources.Usage, error) {
	cg, err := b.load(id)
	if err != nil {
		return resources.Usage{}, err
	}
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return resources.Usage{}, err
	}
	u := resources.Usage{Time: now()}
	if m.CPU != nil {
		if m.CPU.Usage != nil {
			u.CPUUsageNanos = m.CPU.Usage.Total
		}
		if m.CPU.Throttling != nil {
			u.CPUThrottledPeriods = m.CPU.Throttling.ThrottledPeriods
			u.CPUThrottledNanos = m.CPU.Throttling.ThrottledTime
		}
	}
	if m.Memory != nil {
		if m.Memory.Usage != nil {
			u.MemoryBytes, u.MemoryPeakBytes = m.Memory.Usage.Usage, m.Memory.Usage.Max
		}
		if m.Memory.Swap != nil && m.Memory.Swap.Usage > u.MemoryBytes {
			u.SwapBytes = m.Memory.Swap.Usage - u.MemoryBytes
		}
	}
	if m.Blkio != nil {
		for _, e := range m.Blkio.IoServiceBytesRecursive {
			switch e.Op {
			case "Read":
				u.IOReadBytes += e.Value
			case "Write":
				u.IOWriteBytes += e.Value
			}
		}
	}
	if m.Pids != nil {
		u.Pids = m.Pids.Current
	}
	return u, nil
}

// remove moves processes still in the group to the plugin's own cgroups,
// then removes the group's directory in every hierarchy.
func (b *v1Backend) remove(id string) error {
	cg, err := b.load(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pids, _ := b.pids(id); len(pids) > 0 {
		self, err := cgroup1.Load(cgroup1.PidPath(os.Getpid()), cgroup1.WithHierarchy(b.hierarchy))
		if err != nil {
			return fmt.Errorf("find the plugin's own cgroup to move processes %v to: %w", pids, err)
		}
		b.log.Warn("moving processes out of a group being deleted", "group", id, "pids", pids)
		if err := cg.MoveTo(self); err != nil {
			return fmt.Errorf("move processes %v out of %s: %w", pids, b.rel(id), err)
		}
	}
	if err := cg.Delete(); err != nil && !errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return err
	}
	if b.exists(id) {
		return fmt.Errorf("cgroup %s is still there after removal", b.rel(id))
	}
	return nil
}

func (b *v1Backend) placement(id string) resources.Placement {
	names := make([]string, len(b.present))
	for i, n := range b.present {
		names[i] = string(n)
	}
	return resources.Placement{
		CgroupPath: b.rel(id),
		Annotations: map[string]string{
			annotationMode:        modeV1,
			annotationRoot:        b.root,
			annotationControllers: strings.Join(names, ","),
		},
	}
}

func (b *v1Backend) memoryEvents(id string) (memoryCounters, error) {
	var m v1stats.Metrics
	if err := cgroup1.NewMemory(b.root, cgroup1.OptionalSwap()).Stat(b.rel(id), &m); err != nil {
		return memoryCounters{}, err
	}
	var c memoryCounters
	if m.MemoryOomControl != nil {
		c.OOMKills = m.MemoryOomControl.OomKill
	}
	if m.Memory != nil && m.Memory.Usage != nil {
		c.Usage = m.Memory.Usage.Usage
	}
	return c, nil
}

func (b *v1Backend) throttling(id string) (uint64, uint64, error) {
	m := v1stats.Metrics{CPU: &v1stats.CPUStat{Throttling: &v1stats.Throttle{}, Usage: &v1stats.CPUUsage{}}}
	if err := cgroup1.NewCpu(b.root).Stat(b.rel(id), &m); err != nil {
		return 0, 0, err
	}
	return m.CPU.Throttling.ThrottledPeriods, m.CPU.Throttling.ThrottledTime, nil
}

// eventfds registers id's OOM notification and, when soft > 0, a
// notification of memory usage crossing soft, returning the eventfds (-1
// for none). The caller owns and closes them; closing one unregisters it.
func (b *v1Backend) eventfds(id string, soft int64) (oom, threshold int, err error) {
	cg, err := b.load(id)
	if err != nil {
		return -1, -1, err
	}
	fd, err := cg.OOMEventFD()
	if err != nil {
		return -1, -1, err
	}
	oom, threshold = int(fd), -1
	if soft > 0 {
		fd, err := cg.RegisterMemoryEvent(cgroup1.MemoryThresholdEvent(uint64(soft), false))
		if err != nil {
			closeFD(oom)
			return -1, -1, err
		}
		threshold = int(fd)
	}
	return oom, threshold, nil
}

func (b *v1Backend) pidsRefused(id string) (uint64, error) {
	return readPidsEvents(filepath.Join(b.dir(cgroup1.Pids, id), "pids.events"))
}
