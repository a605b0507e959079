# Berth's shipped configuration (draft). Every attribute in the berth block is
# optional; the values shown are the defaults on Linux.
berth {
  state_dir   = "/var/lib/berth"
  runtime_dir = platform == "darwin" ? "/var/run/berth" : "/run/berth"
  plugin_dirs = ["bin/plugins", "/usr/local/lib/berth/plugins", "/usr/lib/berth/plugins"]
  log_level   = lower(lookup(env, "BERTH_LOG_LEVEL", "info"))
}

# Layer 1: resource limits.
plugin "resources" "cgroup" {
  enabled = platform == "linux"
}
plugin "resources" "darwin" {
  enabled = platform == "darwin"
}

# Layer 3: snapshotters. Sandboxes use directories, VMs use block images.
plugin "snapshot" "overlay" {
  enabled = platform == "linux"
}
plugin "snapshot" "apfs" {
  enabled = platform == "darwin"
}
plugin "snapshot" "ext4" {}

# Layer 2: isolation modes; containers choose one with --isolation.
plugin "isolation" "sandbox" {
  default     = true
  snapshotter = platform == "darwin" ? "apfs" : "overlay"
}
plugin "isolation" "vm" {
  snapshotter   = "ext4"
  start_timeout = "1m"
  vcpus         = 2
  memory        = "512M"
}
plugin "isolation" "hybrid" {
  enabled     = platform == "linux"
  snapshotter = "ext4"
}

# Layer 4: the container state machine.
plugin "lifecycle" "local" {}

# Layer 5: the public API.
plugin "api" "grpc" {
  socket = "${lookup(env, "BERTH_API_SOCKET", "/run/berth/api.sock")}"
}
