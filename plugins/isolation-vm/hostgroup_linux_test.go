package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/procwait"
	"github.com/berth-dev/berth/plugins/lifecycle-local/manager"
	"github.com/berth-dev/berth/plugins/resources-cgroup/cgroupctl"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/isolation/conformance"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
)

// groupDirs are the directories of a placement's cgroup, from its
// annotations: <root>/<controller>/<path> for each listed v1 controller,
// <root>/<path> on v2.
func groupDirs(t *testing.T, p resources.Placement) []string {
	t.Helper()
	root := p.Annotations["berth.resources.cgroup/root"]
	if root == "" {
		t.Fatalf("placement %+v has no cgroup root annotation", p)
	}
	if p.Annotations["berth.resources.cgroup/mode"] == "v2" {
		return []string{filepath.Join(root, p.CgroupPath)}
	}
	var dirs []string
	for _, c := range strings.Split(p.Annotations["berth.resources.cgroup/controllers"], ",") {
		dirs = append(dirs, filepath.Join(root, c, p.CgroupPath))
	}
	if len(dirs) == 0 {
		t.Fatalf("placement %+v lists no controllers", p)
	}
	return dirs
}

// cgroupFile reads file v1 (or, on v2, file v2) from whichever of the
// group's directories has it.
func cgroupFile(t *testing.T, dirs []string, v1, v2 string) string {
	t.Helper()
	for _, d := range dirs {
		for _, name := range []string{v1, v2} {
			if b, err := os.ReadFile(filepath.Join(d, name)); err == nil {
				return strings.TrimSpace(string(b))
			}
		}
	}
	t.Fatalf("neither %s nor %s in %v", v1, v2, dirs)
	return ""
}

func pssKB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// TestVMHostGroup: a VM task whose spec carries a real resources-cgroup
// placement (sized by lifecycle's rule) has its supervisor and qemu in the
// group in every controller; the group's memory limit is the VM's + the
// overhead, not the container's 32 MiB, which the guest enforces (a 64 MiB
// allocation is OOM-killed inside the VM while the host group is far from
// its limit); a checkpoint restored (new supervisor and qemu) is in the group
// again; after Delete the group is removed and nothing runs.
func TestVMHostGroup(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	parent := fmt.Sprintf("berth-vmhg-%d", os.Getpid())
	res := cgroupctl.New(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	cfg := fmt.Sprintf(`{"parent":%q}`, parent)
	if err := res.Configure(ctx, plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(cfg)}, APIVersion: plugin.APIVersion, StateDir: t.TempDir()}); err != nil {
		t.Fatalf("resources Configure: %v", err)
	}
	t.Cleanup(func() {
		res.Close()
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove the test's parent cgroup %s: %v", d, err)
			}
		}
	})

	id := "vm-hostgroup"
	limits := resources.Limits{MemoryBytes: 32 << 20, Pids: 64, CPUs: 1, Devices: resources.DefaultDeviceRules()}
	placement, err := res.CreateGroup(ctx, id, manager.VMHostLimits(limits, 0))
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	groupGone := false
	defer func() {
		if !groupGone {
			_ = res.Delete(context.Background(), id)
		}
	}()
	dirs := groupDirs(t, placement)

	spec := newSpec(t, id, conformance.SpecOptions{Args: []string{"sh", "-c", "while [ ! -e /done ]; do sleep 0.2; done"}})
	spec.OCI.Linux.Resources = manager.VMGuestResources(spec.OCI.Linux.Resources, limits)
	spec.OCI.Linux.CgroupsPath = placement.CgroupPath
	spec.Placement = placement
	// The init and its shell stay out of the guest OOM killer's way (see
	// TestRunInVM).
	unkillable := -1000
	spec.OCI.Process.OOMScoreAdj = &unkillable
	info, err := rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	deleted := false
	defer func() {
		if !deleted {
			// A failed test may leave it running: Delete refuses that.
			bg, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_ = rt.Signal(bg, id, "", syscall.SIGKILL, true)
			_, _ = rt.Wait(bg, id, "")
			if _, err := rt.Delete(bg, id); err != nil {
				t.Errorf("cleanup: Delete: %v", err)
			}
		}
	}()
	vmMem := int64(32<<20 + vmOverhead)
	if info.Spec == nil || info.Spec.VM == nil || info.Spec.VM.MemoryBytes != vmMem || info.Spec.VM.CPUs != 1 {
		t.Fatalf("Create reported VM %+v; want %d bytes, 1 CPU", info.Spec, vmMem)
	}
	if err := res.Update(ctx, id, manager.VMHostLimits(limits, info.Spec.VM.MemoryBytes)); err != nil {
		t.Fatalf("size the group: %v", err)
	}
	// inGroup reads the task's pids and checks that its supervisor and
	// qemu are in the group in every controller.
	inGroup := func(when string) State {
		t.Helper()
		var st State
		if err := readJSON(filepath.Join(stateDir, "tasks", id, stateFile), &st); err != nil {
			t.Fatal(err)
		}
		if st.VMPid == 0 || st.SupervisorPid == 0 {
			t.Fatalf("%s: state %+v lacks the supervisor's or qemu's pid", when, st)
		}
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				t.Fatal(err)
			}
			procs := strings.Fields(string(b))
			for _, pid := range []int{st.SupervisorPid, st.VMPid} {
				if !slices.Contains(procs, strconv.Itoa(pid)) {
					t.Errorf("%s: pid %d not in %s/cgroup.procs %v", when, pid, d, procs)
				}
			}
		}
		return st
	}
	st := inGroup("after Create")
	wantLimit := strconv.FormatInt(vmMem+manager.VMHostOverhead, 10)
	if got := cgroupFile(t, dirs, "memory.limit_in_bytes", "memory.max"); got != wantLimit {
		t.Errorf("host memory limit %s; want %s (VM %d + overhead %d)", got, wantLimit, vmMem, manager.VMHostOverhead)
	}
	if got := cgroupFile(t, dirs, "pids.max", "pids.max"); got != "max" {
		t.Errorf("host pids.max %s; the container's 64 is the guest's", got)
	}

	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	run := func(execID string, args ...string) isolation.ExitStatus {
		t.Helper()
		// Execs inherit the init's oomScoreAdj (-1000) unless they set
		// their own: the hog must stay killable.
		plain := 0
		if _, err := rt.Exec(ctx, id, execID, &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, OOMScoreAdj: &plain}); err != nil {
			t.Fatalf("Exec %v: %v", args, err)
		}
		e, err := rt.Wait(ctx, id, execID)
		if err != nil {
			t.Fatalf("Wait exec %v: %v", args, err)
		}
		return e
	}
	// Idle: what the group holds (reported, not asserted beyond the limit).
	time.Sleep(3 * time.Second)
	usage := cgroupFile(t, dirs, "memory.usage_in_bytes", "memory.current")
	peak := cgroupFile(t, dirs, "memory.max_usage_in_bytes", "memory.peak")
	t.Logf("MEASURE idle VM (%d MiB guest) host group: usage %s, peak %s, limit %s; PSS supervisor %d kB + qemu %d kB",
		vmMem>>20, usage, peak, wantLimit, pssKB(st.SupervisorPid), pssKB(st.VMPid))
	if stat := cgroupFile(t, dirs, "memory.stat", "memory.stat"); stat != "" {
		f := strings.Fields(stat)
		t.Logf("memory.stat: %s", strings.Join(f[:min(24, len(f))], " "))
	}
	if e := run("hog", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"); e.Signal != syscall.SIGKILL && e.Code != 137 {
		t.Errorf("a 64 MiB allocation under the container's 32 MiB limit exited %+v; want killed in the guest", e)
	}
	if n, _ := strconv.ParseInt(cgroupFile(t, dirs, "memory.failcnt", "memory.events"), 10, 64); n > 0 {
		t.Logf("host group memory.failcnt %d", n)
	}
	for _, pid := range []int{st.SupervisorPid, st.VMPid} {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("pid %d is gone after the guest OOM kill: %v", pid, err)
		}
	}
	// Checkpoint (as lifecycle does it: paused, the VM ends), delete,
	// restore: the new supervisor and qemu are in the group too.
	if err := rt.Pause(ctx, id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	ckDir := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.Mkdir(ckDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := rt.Checkpoint(ctx, id, isolation.CheckpointOptions{Dir: ckDir}); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete of the checkpointed task: %v", err)
	}
	procwait.Gone(st.VMPid, time.Minute)
	restored := *info.Spec // with the VM size lifecycle records
	info, err = rt.Restore(ctx, restored, ckDir)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if info.Spec == nil || info.Spec.VM == nil || info.Spec.VM.MemoryBytes != vmMem {
		t.Errorf("Restore reported VM %+v; want %d bytes", info.Spec, vmMem)
	}
	st = inGroup("after Restore")
	t.Logf("MEASURE restored VM host group: usage %s", cgroupFile(t, dirs, "memory.usage_in_bytes", "memory.current"))
	run("done", "touch", "/done")
	if e, err := rt.Wait(ctx, id, ""); err != nil || e.Code != 0 {
		t.Fatalf("Wait = %+v, %v", e, err)
	}
	if _, err := rt.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	deleted = true
	for _, pid := range []int{st.SupervisorPid, st.VMPid} {
		procwait.Gone(pid, time.Minute)
		// A zombie (exited, its new parent not yet reaping) counts as gone.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("pid %d still runs after Delete: %s", pid, b)
		}
	}
	if err := res.Delete(ctx, id); err != nil {
		t.Fatalf("resources Delete: %v", err)
	}
	groupGone = true
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after Delete (%v)", d, err)
		}
	}
	noLeaks(t, stateDir, runDir)
}

// TestPlacementCgroup: the annotations name the directories exactly, and
// a bad or missing one is an error naming it (no VM).
func TestPlacementCgroup(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"memory/berth/c1", "pids/berth/c1", "berth/c2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ann := func(mode, ctls string) map[string]string {
		return map[string]string{annotationCgroupMode: mode, annotationCgroupRoot: root, annotationCgroupControllers: ctls}
	}
	cg, err := placementCgroup(resources.Placement{CgroupPath: "/berth/c1", Annotations: ann("v1", "memory,pids")})
	if err != nil || cg.V1["memory"] != filepath.Join(root, "memory/berth/c1") || cg.V1["pids"] != filepath.Join(root, "pids/berth/c1") || cg.V2 != "" {
		t.Errorf("v1 placement = %+v, %v", cg, err)
	}
	cg, err = placementCgroup(resources.Placement{CgroupPath: "/berth/c2", Annotations: ann("v2", "")})
	if err != nil || cg.V2 != filepath.Join(root, "berth/c2") || len(cg.V1) != 0 {
		t.Errorf("v2 placement = %+v, %v", cg, err)
	}
	for _, c := range []struct {
		p    resources.Placement
		want string
	}{
		{resources.Placement{CgroupPath: "/berth/c1", Annotations: ann("v3", "memory")}, annotationCgroupMode},
		{resources.Placement{CgroupPath: "/berth/c1", Annotations: ann("v1", "memory,../x")}, annotationCgroupControllers},
		{resources.Placement{CgroupPath: "/berth/c1", Annotations: ann("v1", "memory,cpu")}, filepath.Join(root, "cpu/berth/c1")},
		{resources.Placement{CgroupPath: "/berth/../c1", Annotations: ann("v1", "memory")}, "/berth/../c1"},
		{resources.Placement{CgroupPath: "/berth/gone", Annotations: ann("v2", "")}, filepath.Join(root, "berth/gone")},
	} {
		if _, err := placementCgroup(c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("placementCgroup(%+v) = %v; want an error naming %s", c.p, err, c.want)
		}
	}
	if err := joinPlacement(hclog.NewNullLogger(), resources.Placement{}); err != nil {
		t.Errorf("an empty placement joins nothing, got %v", err)
	}
}
