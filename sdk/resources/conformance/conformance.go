// Package conformance is the conformance suite of the resources layer: it
// checks that a resources.Controller keeps the contract written in
// sdk/resources, whoever wrote it and however it is reached.
//
// Run it against an implementation in process, through the real gRPC
// adapters with RunOverGRPC, and against the client of a plugin launched as
// a process (by the core's plugin host, say):
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) resources.Controller {
//			c := mine.New(hclog.NewNullLogger())
//			if err := c.Configure(ctx, plugin.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
//				t.Fatal(err)
//			}
//			return c
//		}, conformance.Options{Capabilities: []string{resources.CapUsage}})
//	}
//
// newController is called once per subtest. It may return a fresh
// controller each time or the same live one: the suite names its groups
// uniquely (Options.GroupPrefix) and deletes them when a subtest ends, so it
// can run against a controller other tests share.
//
// The suite attaches real processes (children of the test binary, `sleep`
// and a shell busy loop by default), so it runs where the controller can see
// them: same host, same pid namespace. It never asserts timings: what must
// happen eventually is polled for, up to Options.Timeout. Controllers that
// need privileges (cgroups) are run by their own tests as root; the suite
// itself asks for none.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
)

// Options tune the suite to the controller under test.
type Options struct {
	// Capabilities the controller must declare. The suite fails when one is
	// missing; it also fails when the controller declares none at all, so a
	// plugin cannot pass by promising nothing. Every capability the
	// controller declares is checked whatever this says.
	Capabilities []string
	// Spawn starts a process that idles until it is killed and returns its
	// pid; it must arrange (t.Cleanup) for the process to be killed and
	// reaped. nil means SpawnCommand(t, "sleep", "3600").
	Spawn func(t *testing.T) int
	// SpawnBusy starts a process that burns CPU until it is killed, for the
	// usage counters. nil means a shell busy loop.
	SpawnBusy func(t *testing.T) int
	// Reconfigure, when set, is a ConfigureRequest the suite may send again
	// to a configured controller: Configure must be safe to call more than
	// once and must keep the groups that exist. Leave it nil for a
	// controller whose configuration the test does not own.
	Reconfigure *plugin.ConfigureRequest
	// GroupPrefix starts the id of every group the suite creates;
	// "conformance-" when empty.
	GroupPrefix string
	// Timeout bounds each wait for something that happens eventually (CPU
	// time accounted, a dead process leaving List, an events channel
	// closing); 30s when zero. It is a deadline, never an expectation.
	Timeout time.Duration
}

// KnownCapabilities are the capabilities defined by sdk/resources. A
// controller declaring anything else fails the suite (a typo would make a
// feature silently unused).
var KnownCapabilities = []string{
	resources.CapCPUShares, resources.CapCPUQuota, resources.CapCPUSet,
	resources.CapMemoryHard, resources.CapMemorySoft, resources.CapSwap,
	resources.CapIOBandwidth, resources.CapPids, resources.CapDevices,
	resources.CapUsage, resources.CapEventsOOM, resources.CapEventsMemory,
	resources.CapEventsCPU,
}

// limitCases maps each limit capability to Limits that use only that
// capability. A controller that declares the capability must accept them; one
// that does not must refuse them with errdefs.ErrNotImplemented.
var limitCases = []struct {
	capability string
	field      string
	limits     resources.Limits
}{
	{resources.CapCPUShares, "CPUShares", resources.Limits{CPUShares: 512}},
	{resources.CapCPUQuota, "CPUs", resources.Limits{CPUs: 0.5}},
	{resources.CapCPUSet, "CPUSetCPUs", resources.Limits{CPUSetCPUs: "0"}},
	{resources.CapMemoryHard, "MemoryBytes", resources.Limits{MemoryBytes: 256 << 20}},
	{resources.CapMemorySoft, "MemorySoftBytes", resources.Limits{MemorySoftBytes: 128 << 20}},
	{resources.CapIOBandwidth, "IOReadBPS", resources.Limits{IOReadBPS: 10 << 20}},
	{resources.CapPids, "Pids", resources.Limits{Pids: 128}},
	{resources.CapDevices, "Devices", resources.Limits{Devices: resources.DefaultDeviceRules()}},
}

// suite is one run of the conformance tests.
type suite struct {
	newController func(t *testing.T) resources.Controller
	opts          Options
}

// runID tells apart the groups of several runs in one test binary (a live
// plugin shared by subtests keeps groups of earlier runs until they are
// deleted).
var runID atomic.Uint64

// Run runs the suite against the controllers newController returns. Each
// check is a subtest named after the part of the contract it covers.
func Run(t *testing.T, newController func(t *testing.T) resources.Controller, opts Options) {
	t.Helper()
	if opts.GroupPrefix == "" {
		opts.GroupPrefix = "conformance-"
	}
	opts.GroupPrefix += strconv.FormatUint(runID.Add(1), 10) + "-"
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Spawn == nil {
		opts.Spawn = func(t *testing.T) int { return SpawnCommand(t, "sleep", "3600") }
	}
	if opts.SpawnBusy == nil {
		opts.SpawnBusy = func(t *testing.T) int { return SpawnCommand(t, "sh", "-c", "while :; do :; done") }
	}
	s := &suite{newController: newController, opts: opts}
	tests := []struct {
		name string
		fn   func(t *testing.T, c resources.Controller)
	}{
		{"Info", s.testInfo},
		{"ConfigSchema", s.testConfigSchema},
		{"CreateGroupTwice", s.testCreateGroupTwice},
		{"Limits", s.testLimits},
		{"InvalidLimits", s.testInvalidLimits},
		{"AttachMissingGroup", s.testAttachMissing},
		{"AttachExitedProcess", s.testAttachExited},
		{"AttachAndList", s.testAttachAndList},
		{"ExitedProcessLeavesList", s.testExitedProcess},
		{"UsageMissingGroup", s.testUsageMissing},
		{"Usage", s.testUsage},
		{"UpdateMissingGroup", s.testUpdateMissing},
		{"Update", s.testUpdate},
		{"SetPaused", s.testSetPaused},
		{"Delete", s.testDelete},
		{"Events", s.testEvents},
		{"Reconfigure", s.testReconfigure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newController(t))
		})
	}
}

// SpawnCommand starts name with args as a child of the test binary and
// returns its pid; the process is killed and reaped when t ends.
func SpawnCommand(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("spawn %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.opts.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// groupID returns a group id unique to this run and subtest.
func (s *suite) groupID(t *testing.T, suffix string) string {
	return s.opts.GroupPrefix + sanitize(t.Name()) + "-" + suffix
}

// createGroup creates a group with no limits and deletes it when t ends.
func (s *suite) createGroup(t *testing.T, c resources.Controller, suffix string) string {
	t.Helper()
	id := s.groupID(t, suffix)
	if _, err := c.CreateGroup(s.ctx(t), id, resources.Limits{}); err != nil {
		t.Fatalf("CreateGroup(%q, no limits): %v", id, err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), id) })
	return id
}

func (s *suite) testInfo(t *testing.T, c resources.Controller) {
	info, err := c.Info(s.ctx(t))
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Layer != plugin.LayerResources {
		t.Errorf("Info.Layer = %q, want %q", info.Layer, plugin.LayerResources)
	}
	if info.Name == "" {
		t.Error("Info.Name is empty")
	}
	if !slices.Contains(info.APIVersions, plugin.APIVersion) {
		t.Errorf("Info.APIVersions = %q, want it to contain %q", info.APIVersions, plugin.APIVersion)
	}
	if info.OS == "" || info.Arch == "" {
		t.Errorf("Info.OS/Arch = %q/%q, want the platform the plugin runs on", info.OS, info.Arch)
	}
	if len(info.Capabilities) == 0 {
		t.Error("Info.Capabilities is empty: a resources plugin must declare what it enforces or reports (a plugin that cannot serve this platform fails this suite, as it should)")
	}
	for _, cp := range info.Capabilities {
		if !slices.Contains(KnownCapabilities, cp) {
			t.Errorf("Info.Capabilities has unknown capability %q (known: %q)", cp, KnownCapabilities)
		}
	}
	for _, want := range s.opts.Capabilities {
		if !info.HasCapability(want) {
			t.Errorf("Info.Capabilities = %q, missing %q which the test expects", info.Capabilities, want)
		}
	}
}

func (s *suite) testConfigSchema(t *testing.T, c resources.Controller) {
	spec, err := c.ConfigSchema(s.ctx(t))
	if err != nil {
		t.Fatalf("ConfigSchema: %v", err)
	}
	if spec == nil {
		t.Fatal("ConfigSchema returned nil; a plugin with no settings returns schema.Empty()")
	}
	if spec.Object == nil {
		t.Errorf("ConfigSchema root is not an Object: %+v", spec)
	}
	if err := spec.Validate(); err != nil {
		t.Errorf("ConfigSchema is not a valid schema: %v", err)
	}
}

func (s *suite) testCreateGroupTwice(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	id := s.createGroup(t, c, "g")
	_, err := c.CreateGroup(ctx, id, resources.Limits{})
	wantKind(t, err, errdefs.ErrAlreadyExists, "CreateGroup(%q) again", id)
	groups := list(t, ctx, c)
	if n := countGroup(groups, id); n != 1 {
		t.Errorf("List after a refused second CreateGroup(%q) shows it %d times, want once", id, n)
	}
}

func (s *suite) testLimits(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	for _, lc := range limitCases {
		t.Run(lc.field, func(t *testing.T) {
			id := s.groupID(t, "g")
			_, err := c.CreateGroup(ctx, id, lc.limits)
			if err == nil {
				t.Cleanup(func() { _ = c.Delete(context.Background(), id) })
			}
			if info.HasCapability(lc.capability) {
				if err != nil {
					t.Errorf("CreateGroup with %s set: %v, but the plugin declares %q", lc.field, err, lc.capability)
				}
				return
			}
			wantKind(t, err, errdefs.ErrNotImplemented, "CreateGroup with %s set by a plugin that does not declare %q", lc.field, lc.capability)
			if err != nil && countGroup(list(t, ctx, c), id) != 0 {
				t.Errorf("refused CreateGroup(%q) left the group behind in List", id)
			}
			// The same limits through Update are refused as well.
			plain := s.createGroup(t, c, "plain")
			wantKind(t, c.Update(ctx, plain, lc.limits), errdefs.ErrNotImplemented,
				"Update with %s set by a plugin that does not declare %q", lc.field, lc.capability)
		})
	}
}

// invalidCases are limits no controller may accept: negative or absurd
// values of the field a capability covers.
var invalidCases = []struct {
	capability string
	field      string
	limits     resources.Limits
}{
	{resources.CapCPUShares, "CPUShares", resources.Limits{CPUShares: 1 << 40}},
	{resources.CapCPUQuota, "CPUs", resources.Limits{CPUs: -1}},
	{resources.CapCPUSet, "CPUSetCPUs", resources.Limits{CPUSetCPUs: "not-a-cpu-list"}},
	{resources.CapMemoryHard, "MemoryBytes", resources.Limits{MemoryBytes: -1}},
	{resources.CapMemorySoft, "MemorySoftBytes", resources.Limits{MemorySoftBytes: -1}},
	{resources.CapPids, "Pids", resources.Limits{Pids: -5}},
	{resources.CapDevices, "Devices", resources.Limits{Devices: []resources.DeviceRule{{Allow: true, Type: "x", Major: 1, Minor: 3, Access: "rwm"}}}},
}

// testInvalidLimits checks that bad values are refused with an error that
// names the field, leave no group behind, and do not change a group's
// limits through Update. A plugin that does not declare the capability may
// refuse with ErrNotImplemented instead.
func (s *suite) testInvalidLimits(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	for _, ic := range invalidCases {
		t.Run(ic.field, func(t *testing.T) {
			id := s.groupID(t, "g")
			_, err := c.CreateGroup(ctx, id, ic.limits)
			if err == nil {
				_ = c.Delete(context.Background(), id)
				t.Fatalf("CreateGroup with %s = %+v succeeded, want an error", ic.field, ic.limits)
			}
			if info.HasCapability(ic.capability) {
				wantKind(t, err, errdefs.ErrInvalidArgument, "CreateGroup with an invalid %s", ic.field)
				if !strings.Contains(err.Error(), ic.field) {
					t.Errorf("CreateGroup with an invalid %s: error %q does not name the field", ic.field, err)
				}
			} else if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotImplemented) {
				t.Errorf("CreateGroup with an invalid %s: %v, want InvalidArgument or NotImplemented", ic.field, err)
			}
			if countGroup(list(t, ctx, c), id) != 0 {
				t.Errorf("refused CreateGroup(%q) left the group in List", id)
			}
			plain := s.createGroup(t, c, "plain")
			if err := c.Update(ctx, plain, ic.limits); err == nil {
				t.Errorf("Update with an invalid %s succeeded", ic.field)
			}
			if g, _ := findGroup(list(t, ctx, c), plain); !reflect.DeepEqual(g.Limits, resources.Limits{}) {
				t.Errorf("refused Update changed the limits of %q to %+v", plain, g.Limits)
			}
		})
	}
	_, err = c.CreateGroup(ctx, "", resources.Limits{})
	wantKind(t, err, errdefs.ErrInvalidArgument, "CreateGroup with an empty id")
}

// testAttachExited checks that attaching a process that has exited (and
// been reaped) is refused with ErrNotFound naming the pid.
func (s *suite) testAttachExited(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	id := s.createGroup(t, c, "g")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	pid := cmd.Process.Pid
	err := c.Attach(ctx, id, pid)
	wantKind(t, err, errdefs.ErrNotFound, "Attach(%q, %d) of a process that exited", id, pid)
	if err != nil && !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Errorf("Attach of exited pid %d: error %q does not name the pid", pid, err)
	}
	if g, _ := findGroup(list(t, ctx, c), id); slices.Contains(g.Pids, pid) {
		t.Errorf("group %q lists exited pid %d", id, pid)
	}
}

func (s *suite) testAttachMissing(t *testing.T, c resources.Controller) {
	pid := s.opts.Spawn(t)
	id := s.groupID(t, "missing")
	wantKind(t, c.Attach(s.ctx(t), id, pid), errdefs.ErrNotFound, "Attach(%q, %d) to a group that does not exist", id, pid)
}

func (s *suite) testAttachAndList(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	id := s.createGroup(t, c, "g")
	pid := s.opts.Spawn(t)
	if err := c.Attach(ctx, id, pid); err != nil {
		t.Fatalf("Attach(%q, %d): %v", id, pid, err)
	}
	g, ok := findGroup(list(t, ctx, c), id)
	if !ok {
		t.Fatalf("List does not show group %q after Attach", id)
	}
	if !slices.Contains(g.Pids, pid) {
		t.Errorf("List shows group %q with pids %v, want it to contain %d", id, g.Pids, pid)
	}
	// Attaching the same process again changes nothing.
	if err := c.Attach(ctx, id, pid); err != nil {
		t.Errorf("Attach(%q, %d) again: %v", id, pid, err)
	}
	if g, _ := findGroup(list(t, ctx, c), id); countInt(g.Pids, pid) != 1 {
		t.Errorf("after a second Attach, group %q has pids %v, want %d once", id, g.Pids, pid)
	}
}

func (s *suite) testExitedProcess(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	id := s.createGroup(t, c, "g")
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("spawn sleep: %v", err)
	}
	pid := cmd.Process.Pid
	if err := c.Attach(ctx, id, pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("Attach(%q, %d): %v", id, pid, err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// Group.Pids are the processes in the group now: the reaped process
	// leaves it, and the group stays usable.
	s.eventually(t, func() (bool, string) {
		g, ok := findGroup(list(t, ctx, c), id)
		if !ok {
			return false, fmt.Sprintf("group %q is gone from List after its process exited", id)
		}
		return !slices.Contains(g.Pids, pid), fmt.Sprintf("group %q still lists exited pid %d: %v", id, pid, g.Pids)
	})
	if _, err := c.Usage(ctx, id); err != nil {
		t.Errorf("Usage(%q) after its only process exited: %v", id, err)
	}
	if err := c.Delete(ctx, id); err != nil {
		t.Errorf("Delete(%q) after its only process exited: %v", id, err)
	}
}

func (s *suite) testUsageMissing(t *testing.T, c resources.Controller) {
	id := s.groupID(t, "missing")
	_, err := c.Usage(s.ctx(t), id)
	wantKind(t, err, errdefs.ErrNotFound, "Usage(%q) of a group that does not exist", id)
}

func (s *suite) testUsage(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	id := s.createGroup(t, c, "g")
	u, err := c.Usage(ctx, id)
	if err != nil {
		t.Fatalf("Usage(%q) of an empty group: %v", id, err)
	}
	if u.Time.IsZero() {
		t.Errorf("Usage(%q).Time is zero, want the instant of the reading", id)
	}
	if !info.HasCapability(resources.CapUsage) {
		return
	}
	pid := s.opts.SpawnBusy(t)
	if err := c.Attach(ctx, id, pid); err != nil {
		t.Fatalf("Attach(%q, %d): %v", id, pid, err)
	}
	// The busy process must show up in the counters eventually; how soon
	// is not the suite's business.
	s.eventually(t, func() (bool, string) {
		u, err := c.Usage(ctx, id)
		if err != nil {
			return false, fmt.Sprintf("Usage(%q): %v", id, err)
		}
		ok := !u.Time.IsZero() && u.CPUUsageNanos > 0 && u.MemoryBytes > 0 && u.Pids >= 1
		return ok, fmt.Sprintf("Usage(%q) of a group running a busy process (pid %d) = %+v; want Time set, CPUUsageNanos > 0, MemoryBytes > 0, Pids >= 1", id, pid, u)
	})
	first, err := c.Usage(ctx, id)
	if err != nil {
		t.Fatalf("Usage(%q): %v", id, err)
	}
	second, err := c.Usage(ctx, id)
	if err != nil {
		t.Fatalf("Usage(%q): %v", id, err)
	}
	// Counters are cumulative: CPU time never goes backwards.
	if second.CPUUsageNanos < first.CPUUsageNanos {
		t.Errorf("Usage(%q).CPUUsageNanos went backwards: %d then %d", id, first.CPUUsageNanos, second.CPUUsageNanos)
	}
	// A controller that reports a peak (zero means it does not) reports
	// one no lower than a reading taken before it.
	if second.MemoryPeakBytes != 0 && second.MemoryPeakBytes < first.MemoryBytes {
		t.Errorf("Usage(%q).MemoryPeakBytes = %d is below an earlier MemoryBytes = %d", id, second.MemoryPeakBytes, first.MemoryBytes)
	}
}

func (s *suite) testUpdateMissing(t *testing.T, c resources.Controller) {
	id := s.groupID(t, "missing")
	wantKind(t, c.Update(s.ctx(t), id, resources.Limits{}), errdefs.ErrNotFound, "Update(%q) of a group that does not exist", id)
}

func (s *suite) testUpdate(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	id := s.createGroup(t, c, "g")
	if err := c.Update(ctx, id, resources.Limits{}); err != nil {
		t.Errorf("Update(%q, no limits): %v", id, err)
	}
	if _, ok := findGroup(list(t, ctx, c), id); !ok {
		t.Errorf("group %q is gone from List after Update", id)
	}
}

func (s *suite) testSetPaused(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	missing := s.groupID(t, "missing")
	wantKind(t, c.SetPaused(ctx, missing, true), errdefs.ErrNotFound, "SetPaused(%q) of a group that does not exist", missing)

	id := s.createGroup(t, c, "g")
	if g, _ := findGroup(list(t, ctx, c), id); g.Paused {
		t.Errorf("new group %q is listed as paused", id)
	}
	for _, paused := range []bool{true, true, false} {
		if err := c.SetPaused(ctx, id, paused); err != nil {
			t.Fatalf("SetPaused(%q, %v): %v", id, paused, err)
		}
		g, ok := findGroup(list(t, ctx, c), id)
		if !ok {
			t.Fatalf("group %q is gone from List after SetPaused", id)
		}
		if g.Paused != paused {
			t.Errorf("after SetPaused(%q, %v), List shows Paused = %v", id, paused, g.Paused)
		}
	}
}

func (s *suite) testDelete(t *testing.T, c resources.Controller) {
	ctx := s.ctx(t)
	never := s.groupID(t, "never")
	if err := c.Delete(ctx, never); err != nil {
		t.Errorf("Delete(%q) of a group that never existed: %v, want nil", never, err)
	}
	id := s.createGroup(t, c, "g")
	pid := s.opts.Spawn(t)
	if err := c.Attach(ctx, id, pid); err != nil {
		t.Fatalf("Attach(%q, %d): %v", id, pid, err)
	}
	for i := range 2 {
		if err := c.Delete(ctx, id); err != nil {
			t.Errorf("Delete(%q) #%d: %v, want nil", id, i+1, err)
		}
	}
	if _, ok := findGroup(list(t, ctx, c), id); ok {
		t.Errorf("List still shows group %q after Delete", id)
	}
	_, err := c.Usage(ctx, id)
	wantKind(t, err, errdefs.ErrNotFound, "Usage(%q) after Delete", id)
	// The id is free again.
	if _, err := c.CreateGroup(ctx, id, resources.Limits{}); err != nil {
		t.Errorf("CreateGroup(%q) after Delete: %v", id, err)
	}
}

func (s *suite) testEvents(t *testing.T, c resources.Controller) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if events == nil {
		t.Fatal("Events returned a nil channel")
	}
	// Limit events may arrive for groups of others (a shared controller);
	// the suite only requires the channel to close once ctx is done.
	cancel()
	deadline := time.NewTimer(s.opts.Timeout)
	defer deadline.Stop()
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-deadline.C:
			t.Fatalf("Events channel still open %s after its ctx was cancelled", s.opts.Timeout)
		}
	}
}

func (s *suite) testReconfigure(t *testing.T, c resources.Controller) {
	if s.opts.Reconfigure == nil {
		t.Skip("Options.Reconfigure is nil: the test does not own the controller's configuration")
	}
	ctx := s.ctx(t)
	id := s.createGroup(t, c, "g")
	pid := s.opts.Spawn(t)
	if err := c.Attach(ctx, id, pid); err != nil {
		t.Fatalf("Attach(%q, %d): %v", id, pid, err)
	}
	if err := c.SetPaused(ctx, id, true); err != nil {
		t.Fatalf("SetPaused(%q, true): %v", id, err)
	}
	for i := range 2 {
		if err := c.Configure(ctx, *s.opts.Reconfigure); err != nil {
			t.Fatalf("Configure #%d of a configured controller: %v", i+1, err)
		}
	}
	g, ok := findGroup(list(t, ctx, c), id)
	if !ok {
		t.Fatalf("group %q is gone from List after Configure was called again", id)
	}
	if !g.Paused || !slices.Contains(g.Pids, pid) {
		t.Errorf("after Configure again, group %q = %+v, want paused with pid %d", id, g, pid)
	}
}

// eventually polls cond until it holds or the suite's timeout passes, then
// fails with cond's last message.
func (s *suite) eventually(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(s.opts.Timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", s.opts.Timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantKind(t *testing.T, err, kind error, format string, args ...any) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: got error %v (kind %v), want kind %q", fmt.Sprintf(format, args...), err, errdefs.Kind(err), kind)
	}
}

func list(t *testing.T, ctx context.Context, c resources.Controller) []resources.Group {
	t.Helper()
	groups, err := c.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return groups
}

func findGroup(groups []resources.Group, id string) (resources.Group, bool) {
	for _, g := range groups {
		if g.ID == id {
			return g, true
		}
	}
	return resources.Group{}, false
}

func countGroup(groups []resources.Group, id string) int {
	n := 0
	for _, g := range groups {
		if g.ID == id {
			n++
		}
	}
	return n
}

func countInt(xs []int, x int) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// sanitize keeps group ids to letters, digits, '-' and '_', which every
// backend accepts in a path component.
func sanitize(name string) string {
	b := []byte(name)
	for i, ch := range b {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}
