package manager

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// These fakes record every call the manager makes into one journal, so
// tests can assert the order across layers, and fail any call on demand.
// Each seam's real side is tested by its own plugin's tests (and the
// end-to-end test drives the real plugins).

type journal struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error // by call name, "snapshot.Prepare"
}

func newJournal() *journal { return &journal{fail: map[string]error{}} }

// call records a call and returns the injected failure for it, if any.
func (j *journal) call(name string, args ...any) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := name
	for _, a := range args {
		s += " " + fmt.Sprint(a)
	}
	j.calls = append(j.calls, s)
	return j.fail[name]
}

func (j *journal) failOn(name string, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err == nil {
		delete(j.fail, name)
	} else {
		j.fail[name] = err
	}
}

// take returns the calls since the last take.
func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.calls
	j.calls = nil
	return out
}

// count returns how many calls start with prefix, without taking them.
func (j *journal) count(prefix string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, c := range j.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// ---- images ----

type fakeImages struct {
	j      *journal
	images map[string]Image
	blobs  map[string]string
	leases map[string]string // container id → image
}

func (f *fakeImages) Resolve(_ context.Context, ref string) (Image, error) {
	if err := f.j.call("images.Resolve", ref); err != nil {
		return Image{}, err
	}
	img, ok := f.images[ref]
	if !ok {
		return Image{}, errdefs.NotFound("image %s not found", ref)
	}
	return img, nil
}

func (f *fakeImages) OpenBlob(_ context.Context, digest string) (io.ReadCloser, error) {
	if err := f.j.call("images.OpenBlob", digest); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(f.blobs[digest])), nil
}

func (f *fakeImages) AddLease(_ context.Context, id, ref string) error {
	if err := f.j.call("images.AddLease", id, ref); err != nil {
		return err
	}
	f.j.mu.Lock()
	defer f.j.mu.Unlock()
	if f.leases == nil {
		f.leases = map[string]string{}
	}
	f.leases[id] = ref
	return nil
}

func (f *fakeImages) DeleteLease(_ context.Context, id string) error {
	if err := f.j.call("images.DeleteLease", id); err != nil {
		return err
	}
	f.j.mu.Lock()
	defer f.j.mu.Unlock()
	delete(f.leases, id)
	return nil
}

func (f *fakeImages) leaseCount() int {
	f.j.mu.Lock()
	defer f.j.mu.Unlock()
	return len(f.leases)
}

// ---- snapshot ----

type fakeSnap struct {
	snapshot.Snapshotter
	j    *journal
	mu   sync.Mutex
	snap map[string]snapshot.Info
}

func newFakeSnap(j *journal) *fakeSnap { return &fakeSnap{j: j, snap: map[string]snapshot.Info{}} }

func (f *fakeSnap) Stat(_ context.Context, key string) (snapshot.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("snapshot.Stat", key); err != nil {
		return snapshot.Info{}, err
	}
	i, ok := f.snap[key]
	if !ok {
		return snapshot.Info{}, errdefs.NotFound("snapshot %s", key)
	}
	return i, nil
}

func (f *fakeSnap) Prepare(_ context.Context, key, parent string, opts ...snapshot.Opt) ([]mount.Mount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("snapshot.Prepare", key, parent); err != nil {
		return nil, err
	}
	if _, ok := f.snap[key]; ok {
		return nil, errdefs.AlreadyExists("snapshot %s", key)
	}
	if p, ok := f.snap[parent]; parent != "" && (!ok || p.Kind != snapshot.KindCommitted) {
		return nil, errdefs.NotFound("parent %s", parent)
	}
	info, _ := snapshot.ApplyOptions(opts)
	f.snap[key] = snapshot.Info{Name: key, Parent: parent, Kind: snapshot.KindActive, Labels: info.Labels}
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"upperdir=/u/" + key}}}, nil
}

func (f *fakeSnap) Apply(_ context.Context, key string, l snapshot.Layer, r io.Reader) (snapshot.ApplyResult, error) {
	if err := f.j.call("snapshot.Apply", key, l.Digest); err != nil {
		return snapshot.ApplyResult{}, err
	}
	b, _ := io.ReadAll(r)
	return snapshot.ApplyResult{DiffID: l.DiffID, Size: int64(len(b))}, nil
}

func (f *fakeSnap) Commit(_ context.Context, name, key string, _ ...snapshot.Opt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("snapshot.Commit", name, key); err != nil {
		return err
	}
	i, ok := f.snap[key]
	if !ok {
		return errdefs.NotFound("snapshot %s", key)
	}
	delete(f.snap, key)
	i.Name, i.Kind = name, snapshot.KindCommitted
	f.snap[name] = i
	return nil
}

func (f *fakeSnap) Remove(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("snapshot.Remove", key); err != nil {
		return err
	}
	if _, ok := f.snap[key]; !ok {
		return errdefs.NotFound("snapshot %s", key)
	}
	delete(f.snap, key)
	return nil
}

// active lists active snapshots.
func (f *fakeSnap) active() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k, i := range f.snap {
		if i.Kind == snapshot.KindActive {
			out = append(out, k)
		}
	}
	return out
}

// ---- resources ----

type fakeRes struct {
	resources.Controller
	j      *journal
	mu     sync.Mutex
	groups map[string]*resources.Group
	usage  resources.Usage
}

func newFakeRes(j *journal) *fakeRes { return &fakeRes{j: j, groups: map[string]*resources.Group{}} }

func (f *fakeRes) CreateGroup(_ context.Context, id string, l resources.Limits) (resources.Placement, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("resources.CreateGroup", id); err != nil {
		return resources.Placement{}, err
	}
	if _, ok := f.groups[id]; ok {
		return resources.Placement{}, errdefs.AlreadyExists("group %s", id)
	}
	p := resources.Placement{CgroupPath: "/berth/" + id}
	f.groups[id] = &resources.Group{ID: id, Limits: l, Placement: p}
	return p, nil
}

func (f *fakeRes) Update(_ context.Context, id string, l resources.Limits) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("resources.Update", id); err != nil {
		return err
	}
	g, ok := f.groups[id]
	if !ok {
		return errdefs.NotFound("group %s", id)
	}
	g.Limits = l
	return nil
}

func (f *fakeRes) SetPaused(_ context.Context, id string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("resources.SetPaused", id, paused); err != nil {
		return err
	}
	g, ok := f.groups[id]
	if !ok {
		return errdefs.NotFound("group %s", id)
	}
	g.Paused = paused
	return nil
}

func (f *fakeRes) Usage(_ context.Context, id string) (resources.Usage, error) {
	if err := f.j.call("resources.Usage", id); err != nil {
		return resources.Usage{}, err
	}
	return f.usage, nil
}

func (f *fakeRes) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("resources.Delete", id); err != nil {
		return err
	}
	delete(f.groups, id)
	return nil
}

func (f *fakeRes) Events(ctx context.Context) (<-chan resources.LimitEvent, error) {
	ch := make(chan resources.LimitEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

func (f *fakeRes) groupIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.groups {
		out = append(out, id)
	}
	return out
}

// ---- isolation ----

type fakeTask struct {
	info   isolation.TaskInfo
	exited chan struct{}
	exit   isolation.ExitStatus
	runs   int
}

type fakeIso struct {
	isolation.Runtime
	j       *journal
	mu      sync.Mutex
	tasks   map[string]*fakeTask
	nextPid int
	// ignore lists signals the fake's processes ignore.
	ignore map[syscall.Signal]bool
	// exitOnStart, when set, makes every started process exit at once
	// with this code.
	exitOnStart *int
	checkpoint  bool
	stats       isolation.Stats
	subs        []chan isolation.TaskEvent
	// crashed is closed when the fake plugin "crashes": streams and
	// waits in flight fail as they would through the core's proxy.
	crashed chan struct{}
	waiting int // Waits in flight
}

func newFakeIso(j *journal) *fakeIso {
	return &fakeIso{j: j, tasks: map[string]*fakeTask{}, nextPid: 100, ignore: map[syscall.Signal]bool{}, crashed: make(chan struct{})}
}

func (f *fakeIso) Create(_ context.Context, s isolation.Spec) (isolation.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Create", s.ID); err != nil {
		return isolation.TaskInfo{}, err
	}
	if _, ok := f.tasks[s.ID]; ok {
		return isolation.TaskInfo{}, errdefs.AlreadyExists("task %s", s.ID)
	}
	sp := s
	t := &fakeTask{info: isolation.TaskInfo{ID: s.ID, Status: isolation.StatusCreated, Spec: &sp, CreatedAt: time.Now()}, exited: make(chan struct{})}
	f.tasks[s.ID] = t
	return t.info, nil
}

func (f *fakeIso) Start(_ context.Context, id string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Start", id); err != nil {
		return 0, err
	}
	t, ok := f.tasks[id]
	if !ok {
		return 0, errdefs.NotFound("task %s", id)
	}
	if t.info.Status != isolation.StatusCreated {
		return 0, errdefs.InvalidState("task %s is %s", id, t.info.Status)
	}
	f.nextPid++
	t.info.Pid, t.info.Status = f.nextPid, isolation.StatusRunning
	t.runs++
	if f.exitOnStart != nil {
		f.exitLocked(id, *f.exitOnStart)
	} else if args := processArgs(t.info.Spec); len(args) == 2 && args[0] == "exit" {
		// The conformance suite's Exiter: the process ends by itself.
		code, _ := strconv.Atoi(args[1])
		f.exitLocked(id, code)
	}
	return t.info.Pid, nil
}

// exitLocked ends task id's init process with code.
func (f *fakeIso) exitLocked(id string, code int) {
	t := f.tasks[id]
	if t == nil || t.info.Status == isolation.StatusStopped {
		return
	}
	t.exit = isolation.ExitStatus{Code: code, ExitedAt: time.Now()}
	if code > 128 {
		t.exit.Signal = syscall.Signal(code - 128)
	}
	t.info.Status = isolation.StatusStopped
	e := t.exit
	t.info.Exit = &e
	close(t.exited)
	for _, ch := range f.subs {
		select {
		case ch <- isolation.TaskEvent{Kind: isolation.EventExit, ID: id, Exit: &e, Time: e.ExitedAt}:
		default:
		}
	}
}

// exit makes task id's process exit by itself.
func (f *fakeIso) exit(id string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exitLocked(id, code)
}

func (f *fakeIso) Signal(_ context.Context, id, execID string, sig syscall.Signal, all bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Signal", id, int(sig), all); err != nil {
		return err
	}
	t, ok := f.tasks[id]
	if !ok || t.info.Status == isolation.StatusStopped {
		return errdefs.NotFound("task %s has no process", id)
	}
	stubborn := sig == syscall.SIGTERM && slices.Equal(processArgs(t.info.Spec), []string{"ignore", "TERM"})
	if f.ignore[sig] || stubborn || t.info.Status == isolation.StatusPaused && sig != syscall.SIGKILL {
		return nil
	}
	if t.info.Status != isolation.StatusPaused {
		f.exitLocked(id, 128+int(sig))
	}
	return nil
}

// crash ends every stream and wait in flight with ErrUnavailable, as a
// plugin restart does; tasks (owned by their supervisors) live on.
func (f *fakeIso) crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.crashed)
	f.crashed = make(chan struct{})
	for _, ch := range f.subs {
		close(ch)
	}
	f.subs = nil
}

func (f *fakeIso) Wait(ctx context.Context, id, execID string) (isolation.ExitStatus, error) {
	f.mu.Lock()
	t, ok := f.tasks[id]
	crashed := f.crashed
	if ok {
		f.waiting++
	}
	f.mu.Unlock()
	if !ok {
		return isolation.ExitStatus{}, errdefs.NotFound("task %s", id)
	}
	defer func() {
		f.mu.Lock()
		f.waiting--
		f.mu.Unlock()
	}()
	select {
	case <-crashed:
		return isolation.ExitStatus{}, errdefs.Unavailable("isolation plugin restarting")
	case <-t.exited:
		f.mu.Lock()
		defer f.mu.Unlock()
		return t.exit, nil
	case <-ctx.Done():
		return isolation.ExitStatus{}, ctx.Err()
	}
}

func (f *fakeIso) Pause(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Pause", id); err != nil {
		return err
	}
	f.tasks[id].info.Status = isolation.StatusPaused
	return nil
}

func (f *fakeIso) Resume(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Resume", id); err != nil {
		return err
	}
	t := f.tasks[id]
	if t.info.Status == isolation.StatusPaused {
		t.info.Status = isolation.StatusRunning
	}
	return nil
}

func (f *fakeIso) Checkpoint(_ context.Context, id string, o isolation.CheckpointOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Checkpoint", id, o.LeaveRunning); err != nil {
		return err
	}
	if !f.checkpoint {
		return errdefs.NotImplemented("the fake sandbox has no CRIU")
	}
	if !o.LeaveRunning {
		f.exitLocked(id, 137)
	}
	return nil
}

func (f *fakeIso) Restore(_ context.Context, s isolation.Spec, dir string) (isolation.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Restore", s.ID); err != nil {
		return isolation.TaskInfo{}, err
	}
	f.nextPid++
	sp := s
	t := &fakeTask{info: isolation.TaskInfo{ID: s.ID, Pid: f.nextPid, Status: isolation.StatusRunning, Spec: &sp}, exited: make(chan struct{})}
	f.tasks[s.ID] = t
	return t.info, nil
}

func (f *fakeIso) Exec(_ context.Context, id, execID string, p *specs.Process) (int, error) {
	if err := f.j.call("isolation.Exec", id, strings.Join(p.Args, " ")); err != nil {
		return 0, err
	}
	return 999, nil
}

func (f *fakeIso) Stats(_ context.Context, id string) (isolation.Stats, error) {
	if err := f.j.call("isolation.Stats", id); err != nil {
		return isolation.Stats{}, err
	}
	return f.stats, nil
}

func (f *fakeIso) Delete(_ context.Context, id string) (isolation.ExitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.j.call("isolation.Delete", id); err != nil {
		return isolation.ExitStatus{}, err
	}
	t, ok := f.tasks[id]
	if !ok {
		return isolation.ExitStatus{}, nil
	}
	if t.info.Status == isolation.StatusRunning || t.info.Status == isolation.StatusPaused {
		return isolation.ExitStatus{}, errdefs.InvalidState("task %s is %s", id, t.info.Status)
	}
	delete(f.tasks, id)
	return t.exit, nil
}

func (f *fakeIso) List(context.Context) ([]isolation.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []isolation.TaskInfo
	for _, t := range f.tasks {
		out = append(out, t.info)
	}
	return out, nil
}

func (f *fakeIso) Recover(ctx context.Context) ([]isolation.TaskInfo, error) {
	if err := f.j.call("isolation.Recover"); err != nil {
		return nil, err
	}
	return f.List(ctx)
}

func (f *fakeIso) Events(ctx context.Context) (<-chan isolation.TaskEvent, error) {
	ch := make(chan isolation.TaskEvent, 64)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, c := range f.subs {
			if c == ch {
				f.subs = append(f.subs[:i], f.subs[i+1:]...)
				close(ch)
				break
			}
		}
	}()
	return ch, nil
}

func (f *fakeIso) taskIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.tasks {
		out = append(out, id)
	}
	return out
}

func (f *fakeIso) starts(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.tasks[id]; ok {
		return t.runs
	}
	return 0
}

// ---- layers ----

type fakeLayers struct {
	j      *journal
	images *fakeImages
	snap   *fakeSnap
	res    *fakeRes
	iso    *fakeIso
	noRes  bool
}

func newFakeLayers() *fakeLayers {
	j := newJournal()
	return &fakeLayers{
		j: j,
		images: &fakeImages{j: j, images: map[string]Image{
			"alpine": {
				Digest: "sha256:" + strings.Repeat("a", 64),
				Config: imageConfig("/bin/sh", "-c", "echo hi"),
				Layers: []snapshot.Layer{
					{Digest: "sha256:" + strings.Repeat("1", 64), DiffID: "sha256:" + strings.Repeat("d", 64)},
					{Digest: "sha256:" + strings.Repeat("2", 64), DiffID: "sha256:" + strings.Repeat("e", 64)},
				},
			},
		}, blobs: map[string]string{}},
		snap: newFakeSnap(j),
		res:  newFakeRes(j),
		iso:  newFakeIso(j),
	}
}

func (l *fakeLayers) Resources() (resources.Controller, error) {
	if l.noRes {
		return nil, errdefs.NotFound("no resources plugin")
	}
	return l.res, nil
}

func (l *fakeLayers) Isolation(mode string) (isolation.Runtime, error) {
	if mode != "sandbox" {
		return nil, errdefs.NotFound("isolation mode %q is not configured", mode)
	}
	return l.iso, nil
}

func (l *fakeLayers) Snapshotter(name string) (snapshot.Snapshotter, error) {
	if name != "overlay" {
		return nil, errdefs.NotFound("snapshotter %q", name)
	}
	return l.snap, nil
}

func (l *fakeLayers) Images() (ImageSource, error) { return l.images, nil }

func (l *fakeLayers) Modes() []Mode {
	return []Mode{{Name: "sandbox", Snapshotter: "overlay", Default: true}}
}

func (f *fakeIso) waits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

func processArgs(s *isolation.Spec) []string {
	if s == nil || s.OCI == nil || s.OCI.Process == nil {
		return nil
	}
	return s.OCI.Process.Args
}
