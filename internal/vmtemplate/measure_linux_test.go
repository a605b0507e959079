package vmtemplate_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmtemplate"
)

// TestMeasureRAMPlacement (BERTH_VMTEMPLATE_MEASURE=1) times a start from
// a template with the RAM file (template and clone) on this machine's
// ext4, on tmpfs (/dev/shm) and on a loop-mounted xfs (reflink), and a
// checkpoint (Save with file-backed RAM + a clone of the RAM file) of a
// 256 MiB VM. Numbers go to NOTES.
func TestMeasureRAMPlacement(t *testing.T) {
	if os.Getenv("BERTH_VMTEMPLATE_MEASURE") == "" {
		t.Skip("set BERTH_VMTEMPLATE_MEASURE=1 to measure")
	}
	e := setup(t)
	xfs := t.TempDir()
	img := filepath.Join(t.TempDir(), "xfs.img")
	for _, c := range [][]string{{"truncate", "-s", "2G", img}, {"mkfs.xfs", "-q", "-m", "reflink=1", img}, {"mount", "-o", "loop", img, xfs}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", xfs).Run() })
	shm, err := os.MkdirTemp("/dev/shm", "berth-tpl-measure-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	in, err := vmtemplate.InputsFor(e.drv, e.base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	disk := rootfsDisk(t, "40M")
	for _, place := range []struct{ name, dir string }{{"ext4", t.TempDir()}, {"tmpfs", shm}, {"xfs", xfs}} {
		store := &vmtemplate.Store{Dir: filepath.Join(place.dir, "templates")}
		tpl, err := store.Build(ctx, e.drv, in, e.base, vmtemplate.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var du strings.Builder
		out, _ := exec.Command("du", "-h", tpl.RAM()).Output()
		du.Write(out)
		var clones, restores, answers []time.Duration
		for i := 0; i < 3; i++ {
			runDir, err := os.MkdirTemp("", "vmtplm")
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.base
			cfg.Disks = []hypervisor.Disk{{Path: disk, Format: "raw"}}
			cfg.RunDir = runDir
			cfg.ConsoleLog = filepath.Join(runDir, "console.log")
			if place.name != "private" {
				cfg.MemoryFile = filepath.Join(place.dir, "clone-ram")
			}
			t0 := time.Now()
			m, st, err := tpl.Start(ctx, e.drv, cfg)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := m.DialAgent(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, err := vmagent.NewClient(conn)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Info(ctx); err != nil {
				t.Fatal(err)
			}
			answers = append(answers, time.Since(t0))
			clones, restores = append(clones, st.Clone), append(restores, st.Restore)
			if i == 2 {
				time.Sleep(2 * time.Second)
				t.Logf("MEASURE %s: idle template-started qemu: %s", place.name, memOf(m.Pid()))
				// Checkpoint: Save with file-backed RAM, then the RAM
				// file kept by a clone next to it.
				a.Close()
				time.Sleep(500 * time.Millisecond)
				c0 := time.Now()
				if err := m.Save(ctx, filepath.Join(runDir, "ck")); err != nil {
					t.Fatal(err)
				}
				save := time.Since(c0)
				method := "in the state"
				if cfg.MemoryFile != "" {
					if method, err = vmtemplate.Clone(cfg.MemoryFile, filepath.Join(place.dir, "ck-ram")); err != nil {
						t.Fatal(err)
					}
				}
				t.Logf("MEASURE %s: checkpoint of a 256 MiB VM: save %v + RAM %s %v = %v", place.name, save, method, time.Since(c0)-save, time.Since(c0))
				os.Remove(filepath.Join(place.dir, "ck-ram"))
			} else {
				a.Close()
			}
			m.Kill()
			m.Wait()
			if cfg.MemoryFile != "" {
				os.Remove(cfg.MemoryFile)
			}
			os.RemoveAll(runDir)
			_ = st
		}
		t.Logf("MEASURE %s (template RAM %s): clone %v, restore %v, agent answers %v (medians of 3)", place.name,
			strings.Fields(du.String())[0], median(clones), median(restores), median(answers))
		store.Remove(tpl.ID)
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond)
}

// memOf is the qemu process's RSS and PSS from smaps_rollup.
func memOf(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"Rss:", "Pss:", "Pss_Shmem:", "Pss_File:", "Pss_Anon:"} {
			if strings.HasPrefix(l, k) {
				out = append(out, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}
