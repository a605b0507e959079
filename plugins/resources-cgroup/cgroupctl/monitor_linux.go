package cgroupctl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/rpolicy"
	"github.com/berth-dev/berth/sdk/resources"
)

// eventfdSource is a backend that signals memory events through eventfds
// (cgroup v1: memory.oom_control and usage thresholds).
type eventfdSource interface {
	eventfds(id string, soft int64) (oom, threshold int, err error)
}

// eventsFileSource is a backend whose memory events are counters in a file
// the monitor watches with inotify (cgroup v2: memory.events).
type eventsFileSource interface {
	memoryEventsFile(id string) string
}

// oomSettle is how long the monitor keeps looking for the kill counter to
// move after a v1 OOM notification: the kernel notifies before it kills.
const oomSettle = 3 * time.Second

// epollMonitor is the one monitor of all groups. A single goroutine waits in
// epoll_wait on:
//   - a wake eventfd (close),
//   - per v1 group, its OOM eventfd and, with a soft limit, an eventfd that
//     fires when memory usage crosses the soft limit,
//   - one inotify descriptor watching memory.events of every v2 group;
//
// and the same goroutine, on epoll_wait's timeout, samples CPU throttling
// of the groups that have a CPU quota. No goroutine or timer exists per
// group, so the plugin's threads and idle CPU do not grow with the number
// of containers.
type epollMonitor struct {
	be       backend
	broker   *rpolicy.Broker
	interval time.Duration
	log      hclog.Logger

	epfd, wakefd, inofd int

	mu     sync.Mutex
	groups map[string]*watched
	byFD   map[int]fdWatch
	byWD   map[int32]string
	closed bool
	done   chan struct{}
}

type fdKind int

const (
	fdOOM fdKind = iota
	fdThreshold
)

type fdWatch struct {
	id   string
	kind fdKind
}

// watched is the monitor's state of one group; cumulative counters are
// compared with what was last seen, so each event is reported once.
type watched struct {
	limits          resources.Limits
	oomFD, threshFD int
	wd              int32
	oomKills, high  uint64
	pressure        uint64
	throttled       uint64
	pidsRefused     uint64
	oomPendingUntil time.Time
}

func newMonitor(be backend, br *rpolicy.Broker, interval time.Duration, log hclog.Logger) (monitor, error) {
	m := &epollMonitor{
		be: be, broker: br, interval: interval, log: log.Named("monitor"),
		epfd: -1, wakefd: -1, inofd: -1,
		groups: map[string]*watched{}, byFD: map[int]fdWatch{}, byWD: map[int32]string{},
		done: make(chan struct{}),
	}
	var err error
	if m.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if m.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		m.release()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := m.add(m.wakefd); err != nil {
		m.release()
		return nil, err
	}
	if _, ok := be.(eventsFileSource); ok {
		if m.inofd, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
			m.release()
			return nil, fmt.Errorf("inotify_init1: %w", err)
		}
		if err := m.add(m.inofd); err != nil {
			m.release()
			return nil, err
		}
	}
	go m.loop()
	return m, nil
}

func (m *epollMonitor) add(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(m.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add fd %d: %w", fd, err)
	}
	return nil
}

func (m *epollMonitor) release() {
	closeFD(m.inofd)
	closeFD(m.wakefd)
	closeFD(m.epfd)
}

// watch implements monitor.
func (m *epollMonitor) watch(id string, l resources.Limits) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("monitor is closed")
	}
	w := m.groups[id]
	if w == nil {
		w = &watched{oomFD: -1, threshFD: -1, wd: -1}
		m.groups[id] = w
		// Counters already there (a restart) are not news.
		if c, err := m.be.memoryEvents(id); err == nil {
			w.oomKills, w.high = c.OOMKills, c.High
		}
		if p, _, err := m.be.throttling(id); err == nil {
			w.throttled = p
		}
		if n, err := m.be.pidsRefused(id); err == nil {
			w.pidsRefused = n
		}
	}
	w.limits = l
	if src, ok := m.be.(eventfdSource); ok {
		m.dropFDsLocked(w)
		oom, thresh, err := src.eventfds(id, l.MemorySoftBytes)
		if err != nil {
			return fmt.Errorf("register memory events of group %s: %w", id, err)
		}
		w.oomFD, w.threshFD = oom, thresh
		for _, fd := range []struct {
			fd   int
			kind fdKind
		}{{oom, fdOOM}, {thresh, fdThreshold}} {
			if fd.fd < 0 {
				continue
			}
			err := unix.SetNonblock(fd.fd, true)
			if err == nil {
				err = m.add(fd.fd)
			}
			if err != nil {
				m.dropFDsLocked(w)
				return fmt.Errorf("watch memory events of group %s: %w", id, err)
			}
			m.byFD[fd.fd] = fdWatch{id: id, kind: fd.kind}
		}
	}
	if src, ok := m.be.(eventsFileSource); ok && w.wd < 0 {
		if file := src.memoryEventsFile(id); file != "" {
			wd, err := unix.InotifyAddWatch(m.inofd, file, unix.IN_MODIFY)
			if err != nil {
				return fmt.Errorf("watch %s: %w", file, err)
			}
			w.wd = int32(wd)
			m.byWD[w.wd] = id
		}
	}
	return nil
}

// dropFDsLocked unregisters and closes w's eventfds; closing an eventfd
// also unregisters it from cgroup.event_control.
func (m *epollMonitor) dropFDsLocked(w *watched) {
	for _, fd := range []int{w.oomFD, w.threshFD} {
		if fd < 0 {
			continue
		}
		_ = unix.EpollCtl(m.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		delete(m.byFD, fd)
		closeFD(fd)
	}
	w.oomFD, w.threshFD = -1, -1
}

// unwatch implements monitor.
func (m *epollMonitor) unwatch(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.groups[id]
	if w == nil {
		return
	}
	m.dropFDsLocked(w)
	if w.wd >= 0 {
		_, _ = unix.InotifyRmWatch(m.inofd, uint32(w.wd))
		delete(m.byWD, w.wd)
	}
	delete(m.groups, id)
}

// close implements monitor: it stops the loop and waits for it, then
// releases every descriptor.
func (m *epollMonitor) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(m.wakefd, one[:])
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.groups {
		m.dropFDsLocked(w)
	}
	m.groups = map[string]*watched{}
	m.release()
}

func (m *epollMonitor) loop() {
	defer close(m.done)
	events := make([]unix.EpollEvent, 64)
	nextSample := time.Now().Add(m.interval)
	for {
		wait := time.Until(nextSample)
		if m.oomPending() {
			wait = min(wait, 100*time.Millisecond)
		}
		n, err := unix.EpollWait(m.epfd, events, int(max(wait, 0)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			m.log.Error("epoll_wait failed; limit events stop", "error", err)
			return
		}
		for _, ev := range events[:max(n, 0)] {
			fd := int(ev.Fd)
			switch fd {
			case m.wakefd:
				m.mu.Lock()
				closed := m.closed
				m.mu.Unlock()
				if closed {
					return
				}
				drain(fd)
			case m.inofd:
				for _, id := range m.readInotify() {
					m.checkMemory(id, false)
				}
			default:
				drain(fd)
				m.mu.Lock()
				fw, ok := m.byFD[fd]
				m.mu.Unlock()
				if ok {
					m.checkMemory(fw.id, fw.kind == fdOOM)
				}
			}
		}
		m.settleOOM()
		if !time.Now().Before(nextSample) {
			m.sampleThrottling()
			nextSample = time.Now().Add(m.interval)
		}
	}
}

// drain reads an eventfd's counter so it stops being readable.
func drain(fd int) {
	var buf [8]byte
	_, _ = unix.Read(fd, buf[:])
}

// readInotify returns the groups whose memory.events changed.
func (m *epollMonitor) readInotify() []string {
	var buf [4096]byte
	var ids []string
	for {
		n, err := unix.Read(m.inofd, buf[:])
		if n <= 0 || err != nil {
			return ids
		}
		m.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			if id, ok := m.byWD[ev.Wd]; ok {
				ids = append(ids, id)
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		m.mu.Unlock()
	}
}

// checkMemory reads the group's memory counters after a notification and
// publishes what changed. oomNotified marks a v1 OOM notification, after
// which the kill counter is awaited for a while.
func (m *epollMonitor) checkMemory(id string, oomNotified bool) {
	c, err := m.be.memoryEvents(id)
	if err != nil {
		m.log.Debug("cannot read memory events", "group", id, "error", err)
		return
	}
	m.mu.Lock()
	w := m.groups[id]
	if w == nil {
		m.mu.Unlock()
		return
	}
	var out []resources.LimitEvent
	t := time.Now()
	if c.OOMKills > w.oomKills {
		out = append(out, resources.LimitEvent{GroupID: id, Resource: resources.ResourceMemory, Kind: resources.EventOOMKill, Count: c.OOMKills, Time: t,
			Message: fmt.Sprintf("group %s hit its memory limit of %d bytes: the kernel OOM-killed %d process(es), %d in all", id, w.limits.MemoryBytes, c.OOMKills-w.oomKills, c.OOMKills)})
		w.oomKills = c.OOMKills
		w.oomPendingUntil = time.Time{}
	} else if oomNotified {
		w.oomPendingUntil = t.Add(oomSettle)
	}
	if c.High > w.high {
		w.pressure++
		w.high = c.High
		out = append(out, resources.LimitEvent{GroupID: id, Resource: resources.ResourceMemory, Kind: resources.EventMemoryPressure, Count: c.High, Time: t,
			Message: fmt.Sprintf("group %s is above its soft memory limit of %d bytes (memory.high breached %d times; usage %d bytes): memory is being reclaimed", id, w.limits.MemorySoftBytes, c.High, c.Usage)})
	}
	if _, v1 := m.be.(eventfdSource); v1 && !oomNotified && w.limits.MemorySoftBytes > 0 && c.Usage >= uint64(w.limits.MemorySoftBytes) {
		w.pressure++
		out = append(out, resources.LimitEvent{GroupID: id, Resource: resources.ResourceMemory, Kind: resources.EventMemoryPressure, Count: w.pressure, Time: t,
			Message: fmt.Sprintf("group %s went above its soft memory limit of %d bytes (usage %d bytes): it is reclaimed first under host memory pressure", id, w.limits.MemorySoftBytes, c.Usage)})
	}
	m.mu.Unlock()
	for _, ev := range out {
		m.broker.Publish(ev)
	}
}

func (m *epollMonitor) oomPending() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.groups {
		if !w.oomPendingUntil.IsZero() {
			return true
		}
	}
	return false
}

// settleOOM re-checks groups whose OOM notification has not yet shown up
// in the kill counter.
func (m *epollMonitor) settleOOM() {
	var ids []string
	t := time.Now()
	m.mu.Lock()
	for id, w := range m.groups {
		if w.oomPendingUntil.IsZero() {
			continue
		}
		if t.After(w.oomPendingUntil) {
			w.oomPendingUntil = time.Time{}
			m.log.Debug("OOM notification without a kill (the OOM killer may be disabled)", "group", id)
			continue
		}
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		m.checkMemory(id, false)
	}
}

// sampleThrottling reads, for each group with a CPU quota, its throttling
// counter and, for each group with a pids limit, its refused forks, and
// reports increases.
func (m *epollMonitor) sampleThrottling() {
	m.mu.Lock()
	var cpuIDs, pidIDs []string
	for id, w := range m.groups {
		if w.limits.CPUs > 0 {
			cpuIDs = append(cpuIDs, id)
		}
		if w.limits.Pids > 0 {
			pidIDs = append(pidIDs, id)
		}
	}
	m.mu.Unlock()
	var events []resources.LimitEvent
	for _, id := range cpuIDs {
		periods, nanos, err := m.be.throttling(id)
		if err != nil {
			continue
		}
		m.mu.Lock()
		if w := m.groups[id]; w != nil && periods > w.throttled {
			events = append(events, resources.LimitEvent{GroupID: id, Resource: resources.ResourceCPU, Kind: resources.EventCPUThrottled, Count: periods, Time: time.Now(),
				Message: fmt.Sprintf("group %s was throttled to its quota of %.2f CPUs in %d more periods (%d in all, %s throttled)", id, w.limits.CPUs, periods-w.throttled, periods, time.Duration(nanos))})
			w.throttled = periods
		}
		m.mu.Unlock()
	}
	for _, id := range pidIDs {
		refused, err := m.be.pidsRefused(id)
		if err != nil {
			continue
		}
		m.mu.Lock()
		if w := m.groups[id]; w != nil && refused > w.pidsRefused {
			events = append(events, resources.LimitEvent{GroupID: id, Resource: resources.ResourcePids, Kind: resources.EventPidsLimit, Count: refused, Time: time.Now(),
				Message: fmt.Sprintf("group %s reached its limit of %d processes: %d more forks refused (%d in all)", id, w.limits.Pids, refused-w.pidsRefused, refused)})
			w.pidsRefused = refused
		}
		m.mu.Unlock()
	}
	for _, ev := range events {
		m.broker.Publish(ev)
	}
}
