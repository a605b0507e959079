// Package sandbox is Berth's Linux container runtime library: it starts a
// container's init process in new namespaces (or an extra process in an
// existing container) from an OCI runtime spec and the snapshot layer's
// rootfs mount descriptors, in the class of runc and youki.
//
// Two sides:
//
//   - The parent side (Launcher, Container, Process) runs in the caller —
//     the per-container supervisor of plugins/isolation-sandbox, or the VM
//     guest agent. It never runs container code itself: it starts the
//     separate init binary (cmd/berth-sandbox-init) from a sealed memfd copy
//     (CVE-2019-5736), joins the placement's cgroup before the init does
//     anything, and drives the create/start split over a socket.
//   - The init side (RunInit) runs in that init binary, inside the new
//     namespaces, and performs runc's standard_init order: rootfs mounts,
//     devices, pivot_root, hostname, read-only and masked paths,
//     no_new_privs, rlimits, seccomp, capabilities and user, fd cleanup
//     (CVE-2024-21626), exec. Every system call goes through Syscalls, so the
//     order is unit-tested with a recording fake; the real calls are tested
//     as root.
//
// Exec into a running container enters its namespaces in a cgo constructor
// (internal/sandbox/nsenter) before the Go runtime starts threads, because a
// multithreaded process cannot setns into a mount or user namespace.
package sandbox
