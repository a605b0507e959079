// Package sandboxtest holds helpers for tests that run real sandbox
// containers: a root check, the init binary built from source, and a tiny
// rootfs made from Debian's busybox-static.
package sandboxtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Busybox is where Debian's busybox-static package puts its binary
// (scripts/install-deps.sh installs it).
const Busybox = "/bin/busybox"

// RequireRoot skips t with a clear message unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, mounts and cgroups (CI runs as root)")
	}
}

// BuildInit builds cmd/berth-sandbox-init into dir and returns its path.
func BuildInit(dir string) (string, error) {
	return build(dir, "berth-sandbox-init", "github.com/berth-dev/berth/cmd/berth-sandbox-init")
}

// Build builds the Go package pkg into dir/name.
func build(dir, name, pkg string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building %s needs the go tool in PATH: %w", name, err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// BuildProbe builds the static probe command (sandboxtest/probe) into dir.
func BuildProbe(dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "probe")
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/berth-dev/berth/internal/sandbox/sandboxtest/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build probe: %v\n%s", err, b)
	}
	return out, nil
}

// LoopDisk attaches a loop device over a small file of known content and
// returns its path and major:minor; the host can read it, which makes it
// the control for checks that a container cannot (this VM denies even root
// its real disk). t's cleanup detaches it.
func LoopDisk(t testing.TB) (path, majMin string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, []byte(strings.Repeat("berth-disk-", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup --find --show %s (util-linux): %v: %s", img, err, out)
	}
	path = strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", path).Run() })
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return path, fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
}

// BuildPackage builds the Go package pkg into dir/name.
func BuildPackage(dir, name, pkg string) (string, error) { return build(dir, name, pkg) }

// Rootfs makes a minimal root filesystem in dir: busybox with its applets
// linked in /bin, /etc/passwd and /etc/group with root, nobody and a user
// "web" (1000:1000, additional group staff 50), and the usual empty
// directories.
func Rootfs(dir string) error {
	if _, err := os.Stat(Busybox); err != nil {
		return fmt.Errorf("%s missing (install busybox-static: scripts/install-deps.sh): %w", Busybox, err)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/web", "var/log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	b, err := os.ReadFile(Busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":    "root:x:0:\nstaff:x:50:web\nweb:x:1000:\nnogroup:x:65534:\n",
		"etc/hostname": "rootfs\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
