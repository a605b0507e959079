package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/procwait"
	"github.com/berth-dev/berth/plugins/lifecycle-local/manager"
	"github.com/berth-dev/berth/plugins/resources-cgroup/cgroupctl"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/resources"
	"github.com/berth-dev/berth/sdk/schema"
	"github.com/berth-dev/berth/sdk/snapshot"
	"github.com/berth-dev/berth/sdk/spec"
)

// vmLayers are the lifecycle manager's layers for TestVMContainerThroughLifecycle:
// the real resources-cgroup controller and this plugin's runtime, with a
// block "snapshotter" (a private copy of the demo ext4 image per
// container) and a one-image image source standing in for the snapshot
// layer and the image service (both tested against their real plugins
// elsewhere).
type vmLayers struct {
	res resources.Controller
	rt  *runtime
	sn  *copySnapshotter
}

func (l *vmLayers) Resources() (resources.Controller, error) { return l.res, nil }
func (l *vmLayers) Isolation(mode string) (isolation.Runtime, error) {
	if mode != "vm" {
		return nil, errdefs.NotFound("isolation mode %q", mode)
	}
	return l.rt, nil
}
func (l *vmLayers) Snapshotter(name string) (snapshot.Snapshotter, error) { return l.sn, nil }
func (l *vmLayers) Images() (manager.ImageSource, error)                  { return demoImage{}, nil }
func (l *vmLayers) Modes() []manager.Mode {
	return []manager.Mode{{Name: "vm", Snapshotter: "blk", Default: true, Capabilities: capabilities()}}
}

type demoImage struct{}

func (demoImage) Resolve(_ context.Context, ref string) (manager.Image, error) {
	return manager.Image{Digest: "sha256:" + strings.Repeat("d", 64), Config: spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}}, nil
}
func (demoImage) OpenBlob(context.Context, string) (io.ReadCloser, error) {
	return nil, errors.New("the demo image has no layers")
}
func (demoImage) AddLease(context.Context, string, string) error { return nil }
func (demoImage) DeleteLease(context.Context, string) error      { return nil }

// copySnapshotter prepares a container's rootfs as a copy of the demo
// ext4 image (what snapshot-ext4 returns: one block mount).
type copySnapshotter struct {
	snapshot.Snapshotter // other methods are not used by create/delete
	dir                  string
}

func (s *copySnapshotter) image(key string) string { return filepath.Join(s.dir, key+".ext4") }

func (s *copySnapshotter) Prepare(_ context.Context, key, parent string, _ ...snapshot.Opt) ([]mount.Mount, error) {
	if out, err := exec.Command("cp", "--sparse=always", baseImage, s.image(key)).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy the rootfs image: %v: %s", err, out)
	}
	return []mount.Mount{{Type: "ext4", Source: s.image(key), Options: []string{"rw", "format=raw"}}}, nil
}

func (s *copySnapshotter) Remove(_ context.Context, key string) error {
	if err := os.Remove(s.image(key)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// TestVMContainerThroughLifecycle: the lifecycle manager creates a VM
// container with a 32 MiB / 40 pids limit over the real resources
// controller and this plugin: its group holds the supervisor and qemu,
// with memory = the VM's (32 + 128 MiB) + manager.VMHostOverhead and no
// pids limit; inside the guest the container's cgroup has the container's
// limits; after Delete the group and every process are gone.
func TestVMContainerThroughLifecycle(t *testing.T) {
	requireVM(t)
	stateDir, runDir := pluginDirs(t)
	rt := configured(t, stateDir, runDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	parent := fmt.Sprintf("berth-vmlc-%d", os.Getpid())
	res := cgroupctl.New(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}))
	if err := res.Configure(ctx, plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(fmt.Sprintf(`{"parent":%q}`, parent))},
		APIVersion: plugin.APIVersion, StateDir: t.TempDir()}); err != nil {
		t.Fatalf("resources Configure: %v", err)
	}
	t.Cleanup(func() {
		res.Close()
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove the test's parent cgroup %s (something left in it?): %v", d, err)
			}
		}
	})
	m := manager.NewWithLayers(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}), &vmLayers{res: res, rt: rt, sn: &copySnapshotter{dir: t.TempDir()}})
	lcState := t.TempDir()
	if err := m.Configure(ctx, plugin.ConfigureRequest{StateDir: lcState, RuntimeDir: t.TempDir()}); err != nil {
		t.Fatalf("lifecycle Configure: %v", err)
	}
	defer m.Close()

	c, err := m.Create(ctx, "vmc", lifecycle.Config{Image: "demo", Isolation: "vm",
		Cmd:     []string{"sh", "-c", "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; while [ ! -e /done ]; do sleep 0.2; done"},
		Network: lifecycle.NetworkOptions{Network: "none"},
		Limits:  resources.Limits{MemoryBytes: 32 << 20, Pids: 40}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	deleted := false
	defer func() {
		if !deleted {
			_ = m.Delete(context.Background(), c.ID, true)
		}
	}()
	groups, err := res.List(ctx)
	i := slices.IndexFunc(groups, func(g resources.Group) bool { return g.ID == c.ID })
	if err != nil || i < 0 {
		t.Fatalf("resources List = %+v, %v; want the container's group", groups, err)
	}
	g := groups[i]
	vmMem := int64(32<<20 + vmOverhead)
	if g.Limits.MemoryBytes != vmMem+manager.VMHostOverhead || g.Limits.Pids != 0 {
		t.Errorf("group limits %+v; want memory %d (VM %d + overhead) and no pids limit", g.Limits, vmMem+manager.VMHostOverhead, vmMem)
	}
	dirs := groupDirs(t, g.Placement)
	if got := cgroupFile(t, dirs, "memory.limit_in_bytes", "memory.max"); got != strconv.FormatInt(vmMem+manager.VMHostOverhead, 10) {
		t.Errorf("memory limit in the cgroup %s", got)
	}
	var st State
	if err := readJSON(filepath.Join(stateDir, "tasks", c.ID, stateFile), &st); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, pid := range []int{st.SupervisorPid, st.VMPid} {
			if !slices.Contains(strings.Fields(string(b)), strconv.Itoa(pid)) {
				t.Errorf("pid %d not in %s/cgroup.procs %q", pid, d, b)
			}
		}
	}
	if _, err := m.Start(ctx, "vmc"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	logf := filepath.Join(lcState, "logs", c.ID+".log")
	eventually(t, "the container prints its guest limits", func() bool {
		b, _ := os.ReadFile(logf)
		return strings.Count(string(b), `"stream":"stdout"`) >= 2
	})
	b, _ := os.ReadFile(logf)
	if !strings.Contains(string(b), `"log":"33554432\n"`) || !strings.Contains(string(b), `"log":"40\n"`) {
		t.Errorf("inside the guest the container's limits are not 32 MiB / 40 pids; log:\n%s", b)
	}
	if _, err := m.Stop(ctx, "vmc", time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := m.Delete(ctx, "vmc", true); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	deleted = true
	for _, pid := range []int{st.SupervisorPid, st.VMPid} {
		procwait.Gone(pid, time.Minute)
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("pid %d still runs after Delete: %s", pid, b)
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after Delete (%v)", d, err)
		}
	}
	noLeaks(t, stateDir, runDir)
}
