package vmtemplate_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/qemu"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmkernel"
	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
	"github.com/berth-dev/berth/internal/vmtemplate"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/spec"
)

// env is what the VM tests share: a driver, a kernel, an initramfs with
// the agent, and a base config.
type env struct {
	drv  hypervisor.Driver
	base hypervisor.Config
	dir  string
}

func setup(t *testing.T) *env {
	t.Helper()
	sandboxtest.RequireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 missing (scripts/install-deps.sh installs it)")
	}
	k := vmkerneltest.Kernel(t)
	// TCG explicitly: this host's /dev/kvm aborts qemu (NOTES).
	drv, err := qemu.New(qemu.Options{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var want []string
	for _, name := range append(drv.Platform().Modules, "ext4") {
		if _, err := k.ModulesFor(name); err == nil {
			want = append(want, name)
		}
	}
	mods, err := k.ModulesFor(want...)
	if err != nil {
		t.Fatal(err)
	}
	agentBin, sandboxInit := filepath.Join(dir, "berth-vm-agent"), filepath.Join(dir, "berth-sandbox-init")
	for _, c := range []*exec.Cmd{
		exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", agentBin, "github.com/berth-dev/berth/plugins/isolation-vm/guest"),
		exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`,
			"-o", sandboxInit, "github.com/berth-dev/berth/cmd/berth-sandbox-init"),
	} {
		if strings.HasSuffix(c.Args[len(c.Args)-1], "/guest") {
			c.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c.Args, err, out)
		}
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := vmkernel.BuildInitramfs(f, vmkernel.InitramfsSpec{Agent: agentBin, SandboxInit: sandboxInit, Modules: mods}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return &env{drv: drv, dir: dir, base: hypervisor.Config{Kernel: k.Image(), Initrd: initrd, CPUs: 1, MemoryBytes: 256 << 20,
		Cmdline: []string{"panic=-1", "quiet", "cryptomgr.notests", "no_timer_check", "i8042.noaux", "i8042.nokbd",
			"i8042.nopnp", "8250.nr_uarts=1", "mitigations=off", "random.trust_cpu=on"},
		Disks: []hypervisor.Disk{{}}, Balloon: true}}
}

// rootfsDisk makes an ext4 image of a busybox rootfs of the given size.
func rootfsDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	if err := sandboxtest.Rootfs(root); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, disk, size).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return disk
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clone is a VM started from a template, with its agent.
type clone struct {
	m       hypervisor.Machine
	agent   *vmagent.Client
	console string
	stats   vmagent.Info
}

// startClone restores tpl onto disk and personalizes the guest: from a
// private mapping of the template's RAM file, or from a copy when clone.
func (e *env) startClone(t *testing.T, tpl *vmtemplate.Template, disk, hostname string, copyRAM bool) *clone {
	t.Helper()
	runDir, err := os.MkdirTemp("", "vmtpl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	cfg := e.base
	cfg.Disks = []hypervisor.Disk{{Path: disk, Format: "raw"}}
	cfg.RunDir = runDir
	cfg.ConsoleLog = filepath.Join(runDir, "console.log")
	if copyRAM {
		cfg.MemoryFile = filepath.Join(runDir, "ram")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	t0 := time.Now()
	m, st, err := tpl.Start(ctx, e.drv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Kill(); m.Wait() })
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := vmagent.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	fi, _ := os.Stat(disk)
	if err := vmtemplate.Personalize(ctx, a, vmtemplate.Identity{Hostname: hostname,
		Disks: []vmtemplate.GuestDisk{{Device: "/dev/vda", Bytes: uint64(fi.Size())}}}); err != nil {
		b, _ := os.ReadFile(cfg.ConsoleLog)
		t.Fatalf("personalize: %v\nconsole: %s", err, b)
	}
	t.Logf("clone %s: %s %v, restore %v, agent personalized after %v", hostname, st.CloneMethod, st.Clone, st.Restore, time.Since(t0))
	return &clone{m: m, agent: a, console: cfg.ConsoleLog}
}

// run runs sh -c script as container id on /dev/vda and returns its output.
func (c *clone) run(t *testing.T, id, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	s, err := spec.Build(spec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh", "-c", script}}, lifecycle.Config{}, spec.Extra{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	s.Hostname = ""
	if _, err := c.agent.CreateContainer(ctx, vmagent.CreateRequest{ID: id, Spec: s,
		Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4", Options: []string{"rw"}}}); err != nil {
		b, _ := os.ReadFile(c.console)
		t.Fatalf("CreateContainer: %v\nconsole: %s", err, b)
	}
	var out syncBuf
	done := make(chan error, 1)
	go func() { done <- c.agent.Attach(ctx, id, "", isolation.Streams{Stdout: &out, Stderr: &out}) }()
	if _, err := c.agent.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if e, err := c.agent.Wait(ctx, id, ""); err != nil || e.Code != 0 {
		t.Fatalf("container %s: exit %+v, %v: %s", id, e, err, out.String())
	}
	if err := <-done; err != nil {
		t.Fatalf("attach: %v", err)
	}
	return out.String()
}

// TestTemplateClones builds a template, starts two VMs from it and checks
// that each is its own: hostname, random numbers, wall clock, and the
// container's own disk (of a size other than the placeholder's).
func TestTemplateClones(t *testing.T) {
	e := setup(t)
	store := &vmtemplate.Store{Dir: filepath.Join(e.dir, "templates")}
	in, err := vmtemplate.InputsFor(e.drv, e.base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(in); !errdefs.IsNotFound(err) {
		t.Fatalf("Get before Build = %v, want NotFound", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	tpl, err := store.Build(ctx, e.drv, in, e.base, vmtemplate.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("template %s built in %v", tpl.ID, time.Since(t0))
	if got, err := store.Get(in); err != nil || got.ID != tpl.ID {
		t.Fatalf("Get after Build = %v, %v", got, err)
	}
	entries, err := store.List()
	if err != nil || len(entries) != 1 || entries[0].Err != nil || entries[0].ID != tpl.ID {
		t.Fatalf("List = %+v, %v", entries, err)
	}

	// A private mapping of the template's RAM under a balloon is refused
	// (qemu 7.2 would punch holes into the template's file).
	pcfg := e.base
	pcfg.Disks = []hypervisor.Disk{{Path: filepath.Join(e.dir, "none.raw")}}
	if _, _, err := tpl.Start(ctx, e.drv, pcfg); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("private start with a balloon = %v, want InvalidArgument", err)
	}
	script := "hostname; cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s; cat /sys/block/vda/size; cat /marker"
	var outs [2][]string
	for i, size := range []string{"40M", "72M"} {
		disk := rootfsDisk(t, size)
		// A file only this container's disk has.
		src := filepath.Join(t.TempDir(), "marker")
		if err := os.WriteFile(src, []byte(fmt.Sprintf("disk-%d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("debugfs", "-w", "-R", "write "+src+" marker", disk).CombinedOutput(); err != nil {
			t.Fatalf("debugfs: %v: %s", err, out)
		}
		host := fmt.Sprintf("clone-%d", i)
		c := e.startClone(t, tpl, disk, host, true)
		// The container shares the VM's UTS namespace here (spec.Build's
		// namespaces plus no hostname): its hostname is the VM's.
		// The guest's wall clock, bracketed by the host's.
		before := time.Now()
		info, err := c.agent.Info(ctx)
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if info.Time.Before(before.Add(-time.Second)) || info.Time.After(after.Add(time.Second)) {
			t.Errorf("clone %d guest clock %v, host %v..%v: want within 1 s", i, info.Time, before, after)
		}
		runBegan := time.Now()
		out := c.run(t, "c"+strconv.Itoa(i), script)
		runEnded := time.Now()
		t.Logf("clone %d: container created, run and waited for in %v", i, runEnded.Sub(runBegan).Round(time.Millisecond))
		againBegan := time.Now()
		c.run(t, "again"+strconv.Itoa(i), "true")
		t.Logf("clone %d: a second container in %v", i, time.Since(againBegan).Round(time.Millisecond))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 6 {
			t.Fatalf("clone %d output %q", i, out)
		}
		outs[i] = lines
		t.Logf("clone %d: %q", i, lines)
		if lines[0] != host {
			t.Errorf("clone %d hostname %q, want %q", i, lines[0], host)
		}
		// (the date ran within the first container's run)
		if guest, err := strconv.ParseInt(lines[3], 10, 64); err != nil || guest < runBegan.Unix()-1 || guest > runEnded.Unix()+1 {
			t.Errorf("clone %d container's date %q, host %d..%d: want within 1 s", i, lines[3], runBegan.Unix(), runEnded.Unix())
		}
		fi, _ := os.Stat(disk)
		if lines[4] != strconv.FormatInt(fi.Size()/512, 10) {
			t.Errorf("clone %d sees /dev/vda of %s sectors, want %d", i, lines[4], fi.Size()/512)
		}
		if want := fmt.Sprintf("disk-%d", i); lines[5] != want {
			t.Errorf("clone %d /marker = %q, want %q (its own disk)", i, lines[5], want)
		}
	}
	// A damaged RAM file is refused with a clear error (Get), as is a
	// corrupt state file.
	f, err := os.OpenFile(tpl.RAM(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage over the guest's memory"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := store.Get(in); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "RAM file") {
		t.Errorf("Get of a template with a damaged RAM file = %v, want InvalidArgument naming the RAM file", err)
	} else {
		t.Logf("damaged RAM: %v", err)
	}
	if err := os.Chtimes(tpl.RAM(), time.Time{}, time.Unix(0, tpl.RAMModified)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(in); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "sampled blocks") {
		t.Errorf("Get of a damaged RAM file with its old mtime = %v, want the sample check to fail", err)
	}
	if outs[0][1] == outs[1][1] {
		t.Errorf("both clones drew the same random uuid %s", outs[0][1])
	}
	if outs[0][2] == outs[1][2] {
		t.Errorf("both clones read the same /dev/urandom bytes %s", outs[0][2])
	}
}
