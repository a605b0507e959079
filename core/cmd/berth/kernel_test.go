package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/vmkernel/vmkerneltest"
)

// TestSystemKernelCommands drives `berth system kernel install|ls|rm`
// through the real binary against the state_dir of a config file, with
// small well-formed kernel packages.
func TestSystemKernelCommands(t *testing.T) {
	e := newEnv(t, `berth {
  state_dir   = "%s/state"
  runtime_dir = "%s/run"
}
`)
	debs := t.TempDir()
	amd := vmkerneltest.FakeKernelDeb(t, debs, vmkerneltest.FakeKernel{Release: "1.0-amd64"})
	amd2 := vmkerneltest.FakeKernelDeb(t, debs, vmkerneltest.FakeKernel{Release: "2.0-amd64"})
	arm := vmkerneltest.FakeKernelDeb(t, debs, vmkerneltest.FakeKernel{Arch: "arm64", Release: "1.0-cloud-arm64"})

	out, errOut, code := e.berth("system", "kernel", "install", "--deb", amd)
	if code != 0 || strings.TrimSpace(out) != "1.0-amd64 amd64 (default)" {
		t.Fatalf("install: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "extracting") || !strings.Contains(errOut, "installed kernel 1.0-amd64") {
		t.Errorf("no progress on stderr:\n%s", errOut)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state", "kernels", "1.0-amd64-amd64", "vmlinux")); err != nil {
		t.Fatalf("not installed under <state_dir>/kernels: %v", err)
	}
	if out := e.mustBerth("system", "kernel", "install", "--deb", amd2, "--default"); strings.TrimSpace(out) != "2.0-amd64 amd64 (default)" {
		t.Errorf("install --default: %q", out)
	}
	e.mustBerth("system", "kernel", "install", "--deb", arm, "--arch", "arm64")

	ls := e.mustBerth("system", "kernel", "ls")
	lines := strings.Split(strings.TrimSpace(ls), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "RELEASE") {
		t.Fatalf("ls:\n%s", ls)
	}
	for i, want := range []string{"1.0-amd64 amd64 9.9.9-1", "2.0-amd64 amd64 * 9.9.9-1", "1.0-cloud-arm64 arm64 * 9.9.9-1"} {
		if got := strings.Join(strings.Fields(lines[i+1])[:len(strings.Fields(want))], " "); got != want {
			t.Errorf("ls line %d = %q, want it to start %q", i+1, lines[i+1], want)
		}
	}

	// rm without --arch finds the release's arch; twice is fine.
	for range 2 {
		if out := e.mustBerth("system", "kernel", "rm", "1.0-cloud-arm64", "2.0-amd64"); out != "1.0-cloud-arm64\n2.0-amd64\n" {
			t.Errorf("rm: %q", out)
		}
	}
	ls = e.mustBerth("system", "kernel", "ls")
	if strings.Contains(ls, "2.0-amd64") || strings.Contains(ls, "arm64") || !strings.Contains(ls, "1.0-amd64") {
		t.Errorf("ls after rm:\n%s", ls)
	}

	// Errors are clear and exit non-zero.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "--deb", filepath.Join(debs, "missing.deb")}, "missing.deb"},
		{[]string{"install", "--deb", amd, "--arch", "arm64"}, "not arm64"},
		{[]string{"install", "--deb", amd, "--url", "http://127.0.0.1:1/x"}, "exactly one"},
		{[]string{"rm"}, "arg"},
	} {
		_, errOut, code := e.berth(append([]string{"system", "kernel"}, c.args...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q (want it to say %q)", c.args, code, errOut, c.want)
		}
	}
}
