package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox/supervisor"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The Linux parts of the runtime: namespaces, cgroups, CRIU.

func platformCaps() []string {
	return []string{isolation.CapRootfsOverlay, isolation.CapRootfsBind, isolation.CapExec, isolation.CapTTY,
		isolation.CapPause, isolation.CapRecover, isolation.CapSeccomp, isolation.CapNetwork, isolation.CapNetworkConnect}
}

// maybeSupervise: on Linux the supervisor is berth-sandbox-init, never
// this binary.
func maybeSupervise() bool { return false }

func findInit(configured *string) (string, error) {
	if configured != nil && *configured != "" {
		if _, err := os.Stat(*configured); err != nil {
			return "", errdefs.InvalidArgument("isolation sandbox: init_path %q: %v", *configured, err)
		}
		return *configured, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		for _, p := range []string{filepath.Join(dir, "..", "berth-sandbox-init"), filepath.Join(dir, "berth-sandbox-init")} {
			if _, err := os.Stat(p); err == nil {
				return filepath.Clean(p), nil
			}
			tried = append(tried, filepath.Clean(p))
		}
	}
	if p, err := exec.LookPath("berth-sandbox-init"); err == nil {
		return p, nil
	}
	return "", errdefs.InvalidArgument("isolation sandbox: berth-sandbox-init not found (tried %s and PATH); build it with make build or set init_path",
		strings.Join(tried, ", "))
}

// platformSpec applies the network attachment: a private network
// namespace with loopback up ("", "none"; "bridge" adds a veth into it
// after create, network_linux.go) or the host's ("host").
func platformSpec(spec isolation.Spec, oci *specs.Spec) error {
	if oci.Linux == nil {
		return errdefs.InvalidArgument("task %s: the spec has no linux section", spec.ID)
	}
	mode := ""
	if spec.Network != nil {
		mode = spec.Network.Mode
		if spec.Network.Hostname != "" {
			oci.Hostname = spec.Network.Hostname
		}
	}
	hasNet := slices.ContainsFunc(oci.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
	switch mode {
	case "", "none", "bridge":
		// A private network namespace with only loopback, up (and for
		// bridge, the veth attachNetwork adds).
		if spec.Network != nil && spec.Network.Mode == "bridge" {
			if err := checkBridgeAttachment(spec); err != nil {
				return err
			}
			// A namespace the spec names (path) would be someone else's.
			for i, n := range oci.Linux.Namespaces {
				if n.Type == specs.NetworkNamespace && n.Path != "" {
					oci.Linux.Namespaces[i].Path = ""
				}
			}
		}
		if !hasNet {
			oci.Linux.Namespaces = append(oci.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		}
	case "user":
		// A user-mode network (core/network DatapathUser) is a switch in a
		// helper process that only VMs attach to (a socket NIC).
		return errdefs.NotImplemented("task %s: sandbox containers need the kernel datapath: run the daemon as root (network_datapath = \"auto\" or \"kernel\"), or use --network none", spec.ID)
	case "host":
		oci.Linux.Namespaces = slices.DeleteFunc(oci.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
	default:
		return errdefs.InvalidArgument("task %s: network mode %q (none, host or bridge)", spec.ID, mode)
	}
	return nil
}

// supervisorCommand is the small sandbox init binary in its supervise mode:
// it links none of the plugin's gRPC, so an idle one costs little memory
// and starts fast.
func supervisorCommand(initPath, dir, socket string) (*exec.Cmd, error) {
	return exec.Command(initPath, "supervise", "-dir", dir, "-socket", socket, "-init", initPath,
		"-seccomp-cache", filepath.Join(filepath.Dir(filepath.Dir(dir)), "seccomp-cache")), nil
}

// criuCheck runs `criu check` and returns CRIU's own reason when it fails.
func criuCheck() string {
	path, err := exec.LookPath("criu")
	if err != nil {
		return "criu not installed"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
	if err == nil {
		return ""
	}
	var errs []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Error") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return fmt.Sprintf("criu check failed (%v): %s", err, lastLines(string(out), 3))
	}
	return "criu check failed: " + strings.Join(errs, "; ")
}

// killLeftovers kills what is left in the task's cgroup and removes the
// cgroups the supervisor made (when the supervisor died before it could).
func killLeftovers(st supervisor.State) error {
	if st.Cgroup == nil {
		return nil
	}
	st.Cgroup.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for len(st.Cgroup.Pids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return st.Cgroup.Remove()
}

// unmountUnder detaches any host mount under dir (none is expected: the
// rootfs is mounted in the container's own mount namespace).
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var targets []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			targets = append(targets, f[4])
		}
	}
	for _, t := range slices.Backward(targets) {
		if err := unix.Unmount(t, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", t, err)
		}
	}
	return nil
}
