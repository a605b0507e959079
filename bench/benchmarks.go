package main

import (
	"errors"
	"os"
	"os/exec"

	"github.com/berth-dev/berth/bench/runner"
)

// benchmarks is every benchmark `make bench` knows, in the order they run.
// Each issue that makes a speed claim appends one here, naming its peer
// and its target ratio ours/peer. Our programs are given relative to the
// repository root (bin/berth, bin/plugins/…); a benchmark whose programs
// are missing is reported as skipped, never faked.
var benchmarks = []runner.Benchmark{
	{
		Name:        "noise-floor",
		Description: "/bin/true against itself: the spread the runner itself sees on this machine; a ratio far from 1.00 means the machine is too noisy to trust close results",
		Ours:        runner.Side{Run: runner.Cmd("/bin/true")},
		Peer:        runner.Side{Run: runner.Cmd("/bin/true")},
		Target:      1.10,
		Iterations:  200,
	},
	{
		Name:        "process-spawn",
		Description: "start the berth CLI and exit, against the smallest possible process; bounds the fixed cost every berth command pays",
		Ours:        runner.Side{Run: runner.Cmd("bin/berth", "version", "--client")},
		Peer:        runner.Side{Run: runner.Cmd("/bin/true")},
		// Calibrated on a 2-vCPU Linux VM against /bin/true: a bare Go
		// hello-world measures ~2.0x, one built with cobra ~3.5x, and one
		// that also links gRPC and go-plugin ~6.3x (package init and
		// binary size). 4.0 allows the Go runtime and cobra but not a CLI
		// that pays for the daemon's dependencies on every start.
		Target:     4.0,
		Iterations: 100,
	},
	{
		Name:        "plugin-launch",
		Description: "berth config validate with one plugin (launch api-grpc, go-plugin handshake over a unix socket, Info, ConfigSchema, stop) against the same command with no plugin: the price of one out-of-process plugin launch",
		Ours:        runner.Side{Run: runner.Cmd("bin/berth", "config", "validate", "bench/testdata/one-plugin.hcl")},
		Peer:        runner.Side{Run: runner.Cmd("bin/berth", "config", "validate", "bench/testdata/no-plugin.hcl")},
		// A plugin launch is one more Go process start plus a handshake and
		// a graceful stop; it should cost no more than the CLI itself does.
		Target:     2.0,
		Iterations: 40,
	},
	{
		Name:        "image-pull",
		Description: "pull (download and verify every blob, no unpack) of a 50 MB, 5-layer image from a loopback registry: berth pull through the daemon against skopeo copy to an OCI layout",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-images.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-images.sh", "teardown")},
		Ours: runner.Side{
			Run: runner.Cmd("bin/berth", "--config", "/tmp/berth-bench-images/config.hcl", "pull", "-q", "127.0.0.1:35000/bench/img:latest"),
			// rmi deletes the image's blobs, so every run downloads all of it.
			Cleanup: []runner.Command{runner.Cmd("bin/berth", "--config", "/tmp/berth-bench-images/config.hcl", "rmi", "127.0.0.1:35000/bench/img:latest")},
		},
		Peer: runner.Side{
			Run:     runner.Cmd("skopeo", "copy", "-q", "--insecure-policy", "--src-tls-verify=false", "docker://127.0.0.1:35000/bench/img:latest", "oci:/tmp/berth-bench-images/skopeo:img"),
			Cleanup: []runner.Command{runner.Cmd("rm", "-rf", "/tmp/berth-bench-images/skopeo")},
		},
		// The target: at most 0.7x skopeo's wall time.
		Target:     0.7,
		Iterations: 15,
	},
	{
		Name:        "unpack",
		Description: "unpack a 50 MB (uncompressed), 5-layer gzip OCI layout: core/unpack into snapshot-overlay (layers applied with the hardened applier, diff IDs verified, bbolt metadata) against umoci raw unpack of the same layout",
		Setup: []runner.Command{
			runner.Cmd("go", "build", "-o", "/tmp/berth-bench-unpack/unpackbench", "./core/unpack/internal/unpackbench"),
			runner.Cmd("/bin/sh", "-c", "exec /tmp/berth-bench-unpack/unpackbench gen /tmp/berth-bench-unpack/layout"),
		},
		Teardown: []runner.Command{runner.Cmd("rm", "-rf", "/tmp/berth-bench-unpack")},
		// Our program starts through sh (the peer too, for symmetry): the
		// runner looks for programs before Setup has built it.
		Ours: runner.Side{
			Run:     runner.Cmd("/bin/sh", "-c", "exec /tmp/berth-bench-unpack/unpackbench unpack /tmp/berth-bench-unpack/layout /tmp/berth-bench-unpack/ours"),
			Cleanup: []runner.Command{runner.Cmd("rm", "-rf", "/tmp/berth-bench-unpack/ours")},
		},
		Peer: runner.Side{
			Run:     runner.Cmd("/bin/sh", "-c", "exec umoci raw unpack --image /tmp/berth-bench-unpack/layout:test /tmp/berth-bench-unpack/umoci >/dev/null"),
			Cleanup: []runner.Command{runner.Cmd("rm", "-rf", "/tmp/berth-bench-unpack/umoci")},
		},
		Requires: func() error {
			if os.Geteuid() != 0 {
				return errors.New("needs root (overlayfs whiteouts are device nodes)")
			}
			if _, err := exec.LookPath("umoci"); err != nil {
				return errors.New("needs umoci (scripts/install-deps.sh installs it)")
			}
			return nil
		},
		// The target: at most 0.7x umoci's wall time.
		Target:     0.7,
		Iterations: 15,
	},
	{
		Name:        "sandbox-run",
		Description: "create+start+wait+delete of `true` in a container of the demo image's rootfs with Docker's defaults (seccomp, caps, masked paths, read-only root): the isolation-sandbox plugin's runtime (supervisor + sandbox init) against `runc run` of a bundle with the same OCI spec",
		Setup:       []runner.Command{runner.Cmd("bin/plugins/isolation-sandbox", "bench-setup", "/tmp/berth-bench-sandbox")},
		Teardown:    []runner.Command{runner.Cmd("rm", "-rf", "/tmp/berth-bench-sandbox")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("bin/plugins/isolation-sandbox", "bench-run", "/tmp/berth-bench-sandbox", "true")},
		Peer:        runner.Side{Run: runner.Cmd("runc", "--root", "/tmp/berth-bench-sandbox/runc", "run", "-b", "/tmp/berth-bench-sandbox/bundle", "berth-bench")},
		// The target: at most 0.8x runc.
		Target:     0.8,
		Iterations: 30,
	},
	{
		Name:        "sandbox-run-plain-runc",
		Description: "the same run of ours against `runc run` of `runc spec`'s default bundle (no seccomp profile, fewer masked paths): what Docker's defaults cost us relative to runc's lighter default, for reference",
		Setup:       []runner.Command{runner.Cmd("bin/plugins/isolation-sandbox", "bench-setup", "/tmp/berth-bench-sandbox")},
		Teardown:    []runner.Command{runner.Cmd("rm", "-rf", "/tmp/berth-bench-sandbox")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("bin/plugins/isolation-sandbox", "bench-run", "/tmp/berth-bench-sandbox", "true")},
		Peer:        runner.Side{Run: runner.Cmd("runc", "--root", "/tmp/berth-bench-sandbox/runc", "run", "-b", "/tmp/berth-bench-sandbox/bundle-plain", "berth-bench")},
		Target:      1.5,
		Iterations:  20,
	},
	{
		Name:        "resources-cgroup-cycle",
		Description: "what a container start and removal asks of the resources layer on cgroup v1: create a group with cpu shares, a cpu quota, a memory and a pids limit in every controller, run /bin/true in it, read its usage, delete it; the resources-cgroup controller in one process (state recorded with fsync) against cgroup-tools (cgcreate, cgset, cgexec, cgdelete) doing the same",
		Setup:       []runner.Command{runner.Cmd("mkdir", "-p", "/tmp/berth-bench-resources")},
		Teardown: []runner.Command{
			runner.Cmd("rm", "-rf", "/tmp/berth-bench-resources"),
			runner.Cmd("/bin/sh", "-c", "rmdir /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/*/berth-bench-peer 2>/dev/null; true"),
		},
		Requires: func() error {
			if err := requireRoot(); err != nil {
				return err
			}
			if _, err := exec.LookPath("cgexec"); err != nil {
				return errors.New("needs cgroup-tools (scripts/install-deps.sh installs it)")
			}
			if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.shares"); err != nil {
				return errors.New("needs cgroup v1 controllers (the peer writes v1 files)")
			}
			return nil
		},
		Ours: runner.Side{Run: runner.Cmd("bin/plugins/resources-cgroup", "bench-cycle", "/tmp/berth-bench-resources")},
		// cgdelete of cgroup-tools 2.0 given several controllers removes the
		// group from the first one only (separately mounted v1
		// hierarchies), so the peer removes it with one rmdir.
		Peer: runner.Side{Run: runner.Cmd("/bin/sh", "-c", "N=berth-bench-peer; G=cpu,cpuacct,cpuset,memory,blkio,pids,devices,freezer:$N; "+
			"cgcreate -g $G && cgset -r cpuset.cpus=0 -r cpuset.mems=0 -r cpu.shares=512 -r cpu.cfs_quota_us=50000 -r memory.limit_in_bytes=268435456 -r pids.max=128 $N && "+
			"cgexec -g $G /bin/true && cd /sys/fs/cgroup && rmdir cpu/$N cpuacct/$N cpuset/$N memory/$N blkio/$N pids/$N devices/$N freezer/$N")},
		// Calibrated on a 2-vCPU Linux VM: the peer is four small C
		// processes and the rmdirs; ours also pays a Go process start, a
		// durable (fsynced) group record and a usage read. 2.0 leaves room
		// for that and no more.
		Target:     2.0,
		Iterations: 30,
	},
	{
		Name:        "container-run",
		Description: "`berth run --rm IMG true` end to end (CLI → daemon → api-grpc → lifecycle-local → resources-cgroup, snapshot-overlay, isolation-sandbox → exit → remove) against `ctr run --rm` of the same image (saved by berth, imported with ctr image import) on Debian's containerd + runc, each with a daemon of its own under /tmp/berth-bench-run",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-run.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-run.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("bin/berth", "--config", "/tmp/berth-bench-run/config.hcl", "run", "--rm", "berth.local/demo:latest", "true")},
		Peer:        runner.Side{Run: runner.Cmd("ctr", "--address", "/tmp/berth-bench-run/containerd/containerd.sock", "--namespace", "bench", "run", "--rm", "berth.local/demo:latest", "bench-ctr", "true")},
		// The target: at most 1.0x ctr.
		Target:     1.0,
		Iterations: 100,
	},
	{
		Name:        "container-run-vs-runc",
		Description: "the same `berth run --rm IMG true` against bare `runc run` of a bundle of the same rootfs (runc spec's default, no daemon, no image, no snapshot): what the whole engine costs over the runtime alone, for reference",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-run.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-run.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("bin/berth", "--config", "/tmp/berth-bench-run/config.hcl", "run", "--rm", "berth.local/demo:latest", "true")},
		Peer:        runner.Side{Run: runner.Cmd("runc", "run", "--bundle", "/tmp/berth-bench-run/bundle", "berth-bench-runc")},
		Target:      4.0,
		Iterations:  30,
	},
	// Network throughput (issue 9): one fixed-size TCP transfer (1 GiB,
	// bench/netbench, every byte and the source address the server saw
	// checked) over a berth path against the same transfer over the host's
	// loopback, timed in the same run; scripts/bench-net.sh has the daemon
	// (own bridge bbnet0, 10.87.2.0/24), the containers and the paths. The
	// ratio is loopback throughput / ours. VM mode: the net-vm-… entries
	// below (`scripts/bench-net.sh setup vm`, 256 MiB transfers).
	{
		Name:        "net-c2c",
		Description: "TCP throughput container → container on one berth network (sandbox mode: veth, bridge, veth; sender in the source container's netns) against the same 1 GiB transfer over the host's loopback",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-net.sh", "setup", "sandbox")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-net.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "c2c")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "loopback")},
		// Kernel forwarding between two veths costs more per byte than
		// loopback; at least two thirds of loopback's throughput.
		Target:     1.5,
		Iterations: 10,
	},
	{
		Name:        "net-publish-proxy",
		Description: "TCP throughput host → a port published on 127.0.0.1 (-p 127.0.0.1:P:P, netd's userspace proxy, then the bridge) against the same 1 GiB transfer over the host's loopback",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-net.sh", "setup", "sandbox")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-net.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "proxy")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "loopback")},
		// A proxy moves every byte through two sockets (splice); at least
		// half of loopback's throughput.
		Target:     2.0,
		Iterations: 10,
	},
	{
		Name:        "net-publish-dnat",
		Description: "TCP throughput host → a port published on a non-loopback host address (198.18.0.1 on a link the script creates; nft DNAT to the container, no proxy) against the same 1 GiB transfer over the host's loopback",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-net.sh", "setup", "sandbox")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-net.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "dnat")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "loopback")},
		// The kernel path of net-c2c plus a DNAT lookup per connection.
		Target:     1.5,
		Iterations: 10,
	},
	{
		Name:        "net-vm-c2c",
		Description: "TCP throughput VM container → VM container on one berth network (virtio-net, TAP, bridge, TAP; sender run by berth exec inside the source VM) against the same 256 MiB transfer to 127.0.0.1 inside the source VM (same exec, same guest CPU, no NIC); TCG unless BERTH_BENCH_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-net.sh", "setup", "vm")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-net.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "c2c")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "vm-loopback")},
		// Two guests' virtio-net stacks and qemu's TAP backend (no vhost)
		// against one guest's loopback: at least half of it.
		Target:     2.0,
		Iterations: 5,
	},
	{
		Name:        "net-vm-publish-proxy",
		Description: "TCP throughput host → a VM container's port published on 127.0.0.1 (netd's userspace proxy, bridge, TAP, virtio-net) against the same 256 MiB transfer over the host's loopback; TCG unless BERTH_BENCH_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-net.sh", "setup", "vm")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-net.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "proxy")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "loopback")},
		// The guest bounds it: under TCG ~25-30x below loopback; the target
		// is for KVM (a guest's stack at a quarter of the host's loopback).
		Target:     4.0,
		Iterations: 5,
	},
	{
		Name:        "net-vm-publish-dnat",
		Description: "TCP throughput host → a VM container's port published on a non-loopback host address (198.18.0.1 on a link the script creates; nft DNAT, bridge, TAP, virtio-net) against the same 256 MiB transfer over the host's loopback; TCG unless BERTH_BENCH_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-net.sh", "setup", "vm")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-net.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "dnat")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-net.sh", "send", "loopback")},
		// As net-vm-publish-proxy without the proxy.
		Target:     4.0,
		Iterations: 5,
	},
	{
		Name:        "net-vm-user-publish",
		Description: "TCP throughput host → a VM on a user-mode network (internal/usernet, no root datapath) through a port published on 127.0.0.1 (gvisor-tap-vsock forwarder, gVisor stack, qemu -netdev stream, virtio-net) against the same 64 MiB transfer host → a VM on a TAP (kernel datapath); TCG unless BERTH_TEST_QEMU_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-usernet.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-usernet.sh", "teardown")},
		Requires:    requireRoot, // the TAP peer and the kernel cache
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-usernet.sh", "send", "user-publish")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-usernet.sh", "send", "tap-publish")},
		// Every byte crosses the user-space stack twice (host socket ↔
		// gVisor TCP ↔ frames on a unix socket): measured 2.4-3.2x the
		// TAP's time under TCG at load 8-12.
		Target:     4.0,
		Iterations: 5,
	},
	{
		Name:        "net-vm-user-nat",
		Description: "TCP throughput a VM on a user-mode network → the host's 127.0.0.1 through the gateway (outbound NAT in user space) against the same 64 MiB transfer from a VM on a TAP to the host's TAP address; TCG unless BERTH_TEST_QEMU_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-usernet.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-usernet.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("scripts/bench-usernet.sh", "send", "user-nat")},
		Peer:        runner.Side{Run: runner.Cmd("scripts/bench-usernet.sh", "send", "tap-nat")},
		// Measured 3.6-4.3x the TAP's time (guest → gVisor receive path is
		// the slower direction).
		Target:     5.0,
		Iterations: 5,
	},
	{
		Name:        "vm-run",
		Description: "`berth run --rm --isolation vm IMG echo hi` end to end (CLI → daemon → lifecycle-local → snapshot-ext4 disk → isolation-vm: supervisor, qemu boot of the stored Debian kernel with the agent as PID 1, container created and run by the agent, output back, VM powered off, removed) against a bare boot of the same kernel, modules, qemu options (the plugin's driver) and rootfs image whose trivial init runs echo hi and powers off; TCG unless BERTH_BENCH_ACCEL=kvm",
		Setup:       []runner.Command{runner.Cmd("scripts/bench-vm.sh", "setup")},
		Teardown:    []runner.Command{runner.Cmd("scripts/bench-vm.sh", "teardown")},
		Requires:    requireRoot,
		Ours:        runner.Side{Run: runner.Cmd("bin/berth", "--config", "/tmp/berth-bench-vm/config.hcl", "run", "--rm", "--isolation", "vm", "berth.local/demo:latest", "echo", "hi")},
		Peer:        runner.Side{Run: runner.Cmd("/bin/sh", "-c", "BERTH_BENCH_ACCEL=${BERTH_BENCH_ACCEL:-tcg} exec bin/plugins/isolation-vm bench-peer -dir /tmp/berth-bench-vm/peer -kernel /tmp/berth-bench-vm/peer/vmlinux -rootfs /tmp/berth-bench-vm/peer/rootfs.ext4")},
		// The target: at most 1.15x the bare boot.
		Target:     1.15,
		Iterations: 8,
	},
}

// requireRoot skips benchmarks that create namespaces and cgroups.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (namespaces, cgroups, mounts)")
	}
	return nil
}
