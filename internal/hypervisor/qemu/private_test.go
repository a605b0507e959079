package qemu

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestPrivateMemoryRestore (issue 10): a VM saved with a shared memory
// file restores from a PRIVATE mapping of that file (Config.MemoryPrivate:
// memory-backend-file share=off, copy-on-write), runs on, answers, and
// leaves the file as it was, so many VMs can start from one saved file
// without copying it. A Save of the private VM carries its RAM in the
// state and restores without a memory file. Root only.
func TestPrivateMemoryRestore(t *testing.T) {
	a := bootAssets(t)
	d := testDriver(t, Options{})
	cfg := testConfig(t, a)
	cfg.MemoryFile = filepath.Join(cfg.RunDir, "ram")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := startVM(t, ctx, d, cfg)
	ag := dialAgent(t, ctx, m)
	if got := ag.call("ping x"); got != "pong x" {
		t.Fatalf("echo: %q", got)
	}
	ag.conn.Close()
	saveDir := filepath.Join(cfg.RunDir, "ck")
	if err := m.Save(ctx, saveDir); err != nil {
		t.Fatal(err)
	}
	saved := lastTick(t, cfg)
	m.Kill()
	m.Wait()
	sum := fileSum(t, cfg.MemoryFile)

	priv := cfg
	priv.MemoryPrivate = true
	t0 := time.Now()
	m2, err := d.Restore(ctx, priv, saveDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Kill(); m2.Wait() })
	t.Logf("restore from a private mapping of the saved RAM file: %v", time.Since(t0))
	waitTick(t, cfg, saved)
	ag2 := dialAgent(t, ctx, m2)
	if got := ag2.call("ping y"); got != "pong y" {
		t.Fatalf("echo after a private restore: %q", got)
	}
	rss, pss := memOf(t, m2.Pid())
	t.Logf("qemu after a private restore: RSS %d kB, PSS %d kB", rss, pss)
	if fileSum(t, cfg.MemoryFile) != sum {
		t.Errorf("the RAM file changed under a private mapping")
	}
	// A Save of the private VM: its RAM goes into the state.
	ag2.conn.Close()
	save2 := filepath.Join(cfg.RunDir, "ck2")
	if err := m2.Save(ctx, save2); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(save2, stateFile)); err != nil || fi.Size() < 8<<20 {
		t.Errorf("state of a private VM: %v, %v; want its RAM in it", fi, err)
	}
	last := lastTick(t, cfg)
	m2.Kill()
	m2.Wait()
	plain := cfg
	plain.MemoryFile = ""
	m3, err := d.Restore(ctx, plain, save2)
	if err != nil {
		t.Fatalf("restore of a private VM's save without a memory file: %v", err)
	}
	t.Cleanup(func() { m3.Kill(); m3.Wait() })
	waitTick(t, cfg, last)
}
