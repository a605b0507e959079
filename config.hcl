# Berth's configuration: the daemon's own settings and the plugin that serves
# each of the five layers. One file for Linux and macOS: `platform` ("linux",
# "darwin"), `arch` and `env` are variables, and the usual functions (lower,
# lookup, format, …) work in every expression.
#
# Check it with: berth config validate config.hcl

berth {
  # Persistent state (images, snapshots, container records) and the daemon's
  # log when it runs in the background.
  state_dir = "/var/lib/berth"
  # Sockets and the pid file. Keep it short: unix socket paths must stay
  # under 104 bytes on macOS.
  runtime_dir = platform == "darwin" ? "/var/run/berth" : "/run/berth"
  # Where plugin binaries named <layer>-<name> are looked for; relative paths
  # are relative to this file (bin/plugins is where `make build` puts them).
  plugin_dirs = ["bin/plugins", "/usr/local/lib/berth/plugins", "/usr/lib/berth/plugins"]
  log_level   = lower(lookup(env, "BERTH_LOG_LEVEL", "info"))
}

# Layer 5: the public API (gRPC on a unix socket). The CLI is its client.
plugin "api" "grpc" {
  # socket      = "/run/berth/api.sock"   # default: <runtime_dir>/api-grpc/api.sock
  socket_mode = "0660"
}

# The layers below are configured here as they land; each block is disabled
# until its plugin is built (a disabled block is still checked for mistakes).
#
# Every block accepts: enabled, default, path (explicit binary), sha256 (the
# binary's checksum, verified at every launch), start_timeout, and for
# isolation plugins snapshotter (the snapshot plugin bound to that mode).

# Layer 1: resource limits (cgroup v1/v2 on Linux; rlimits and policies on macOS).
plugin "resources" "cgroup" {
  enabled = platform == "linux"
  # parent          = "berth"          # groups are <parent>/<container id>
  # mode            = "auto"           # or "v1" / "v2"
  # cgroup_root     = "/sys/fs/cgroup"
  # sample_interval = "2s"             # the shared CPU throttling sampler
}
plugin "resources" "darwin" {
  enabled = platform == "darwin"
  # sample_interval = "500ms" # memory checks and usage sampling
  # cpu_tick        = "50ms"  # CPU quota duty-cycle step
}

# Layer 3: snapshotters. Sandboxes use directories, VMs use block images.
plugin "snapshot" "overlay" {
  enabled = platform == "linux"
}
plugin "snapshot" "apfs" {
  enabled = platform == "darwin"
}
plugin "snapshot" "ext4" {
  # VMs: one ext4 image per image layer chain (mkfs.ext4 -d, e2fsprogs; on
  # macOS `brew install e2fsprogs`), a copy-on-write disk per container.
  enabled = platform == "linux"
  # size          = "2GiB" # every image's ext4 size (sparse), more when the content needs it
  # copy_on_write = "auto" # "reflink" (xfs reflink=1, btrfs, APFS) or "qcow2" overlays on a raw image
  # mkfs_ext4     = ""     # default: PATH, /sbin, /usr/sbin, /opt/homebrew/opt/e2fsprogs/sbin
  # qemu_img      = ""     # reads written disks back (commit); default: PATH, /opt/homebrew/bin, /usr/local/bin
}

# Layer 2: isolation modes; each container picks one with --isolation.
plugin "isolation" "sandbox" {
  # Linux: namespaces, cgroups, seccomp on an overlay rootfs. darwin:
  # darwin-native workloads confined by Seatbelt (sandbox-exec) in an APFS
  # clone, bound by mount kind (the plugin accepts bind rootfs there).
  enabled     = platform == "linux" || platform == "darwin"
  default     = true
  snapshotter = platform == "darwin" ? "apfs" : "overlay"
}
plugin "isolation" "vm" {
  # One micro-VM per container: qemu (KVM when usable, else TCG) booting a
  # Debian kernel from the kernel store (berth system kernel install) with
  # the guest agent as PID 1; the rootfs is an ext4 disk image.
  enabled       = platform == "linux"
  snapshotter   = "ext4"
  start_timeout = "1m"
  # kernel       = ""        # a release in the store or a vmlinux path; default: the store's default
  # cpus         = 2         # a container without limits; with limits: its cpus, its memory + 128MiB
  # memory       = "512MiB"
  # machine      = "auto"    # microvm (default) or q35
  # accel        = "auto"    # kvm when /dev/kvm is usable, else tcg
  # kernel_args  = []
  # boot_timeout = "60s"
  # Start VMs by restoring a pre-booted template (issue 10; built in the
  # background per kernel, initramfs and size; `berth system templates`).
  templates     = true
}
plugin "isolation" "hybrid" {
  enabled     = false # platform == "linux"
  snapshotter = "ext4"
}

# Layer 4: the container state machine and its store (bbolt, under
# <state_dir>/plugins/lifecycle-local). It drives the layers above.
plugin "lifecycle" "local" {
  # store_timeout       = "5s"    # wait for the store's lock, then fail clearly
  # stop_timeout        = "10s"   # grace between the stop signal and SIGKILL
  # restart_backoff     = "100ms" # first delay of a restart policy, doubled…
  # max_restart_backoff = "1m"    # …up to this
}
