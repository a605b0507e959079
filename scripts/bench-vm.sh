#!/usr/bin/env bash
# Setup and teardown of the VM benchmarks (bench/benchmarks.go):
# `berth run --rm --isolation vm IMG echo hi` against a bare qemu boot of
# the same kernel, the same modules, the same machine and qemu options (the
# plugin's own driver, `isolation-vm bench-peer`) and the same rootfs as an
# ext4 image, whose trivial init (plugins/isolation-vm/internal/benchinit)
# runs `echo hi` and powers off. Everything lives under /tmp/berth-bench-vm:
# a berth daemon with its own config and state (api, resources, snapshot
# ext4, isolation vm, lifecycle), the kernel installed from the cached
# Debian package, the peer's initramfs and image.
#
#   scripts/bench-vm.sh setup      build and start everything
#   scripts/bench-vm.sh teardown   stop, remove everything
#   scripts/bench-vm.sh pss        start an idle VM container, print the PSS
#                                  of its qemu and supervisor, remove it
#
# BERTH_BENCH_ACCEL (kvm|tcg, default tcg: this host's /dev/kvm cannot run
# a guest, see NOTES) picks the accelerator for both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/berth-bench-vm
berth=(bin/berth --config "$dir/config.hcl")
accel=${BERTH_BENCH_ACCEL:-tcg}
deb=$(ls /var/cache/berth/debs/linux-image-*-amd64_*_amd64.deb 2>/dev/null | head -n1 || true)

teardown() {
  if [ -f "$dir/config.hcl" ]; then
    for id in $("${berth[@]}" ps -a -q 2>/dev/null); do "${berth[@]}" rm -f "$id" >/dev/null 2>&1 || true; done
    "${berth[@]}" network rm bridge >/dev/null 2>&1 || true
    "${berth[@]}" system stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  rmdir /sys/fs/cgroup/*/berth-bench-vm /sys/fs/cgroup/berth-bench-vm 2>/dev/null || true
}

pss() {
  local id task sup vm total=0 kb
  id=$("${berth[@]}" run -d --isolation vm berth.local/demo:latest sleep 1000)
  sleep 5 # idle
  task=$dir/state/plugins/isolation-vm/tasks/$id/state.json
  read -r sup vm < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["supervisor_pid"], s.get("vm_pid", 0))' "$task")
  for pid in $sup $vm; do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
    printf '%-8s %-40s %6d kB\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-40)" "$kb"
    total=$((total + kb))
  done
  echo "idle VM container (qemu + supervisor) PSS: $total kB"
  "${berth[@]}" rm -f "$id" >/dev/null
}

case "${1:-}" in
setup)
  teardown
  command -v qemu-system-x86_64 >/dev/null || { echo "bench-vm: qemu-system-x86_64 missing; run scripts/install-deps.sh" >&2; exit 1; }
  [ -n "$deb" ] || { echo "bench-vm: no kernel package in /var/cache/berth/debs; run scripts/install-deps.sh" >&2; exit 1; }
  mkdir -p "$dir/peer"
  cat >"$dir/config.hcl" <<HCL
berth {
  state_dir   = "$dir/state"
  runtime_dir = "$dir/run"
  plugin_dirs = ["$PWD/bin/plugins"]
  log_level   = "warn"
  # The default network of this daemon's own (never berth0 / 10.88.0.0/16).
  default_bridge = "bbvm0"
  default_subnet = "10.87.4.0/24"
  dns_upstreams  = ["127.0.0.1:53"]
}
plugin "api" "grpc" {}
plugin "resources" "cgroup" {
  parent = "berth-bench-vm"
}
plugin "snapshot" "ext4" {}
plugin "isolation" "vm" {
  default       = true
  snapshotter   = "ext4"
  start_timeout = "2m"
  accel         = "$accel"
}
plugin "lifecycle" "local" {}
HCL
  "${berth[@]}" system kernel install --deb "$deb" >/dev/null
  vmlinux=$(ls "$dir"/state/kernels/*/vmlinux | head -n1)
  ln -s "$vmlinux" "$dir/peer/vmlinux"
  # The peer: the same rootfs as an ext4 image, its trivial init and the
  # same modules the plugin puts into its initramfs.
  scripts/demo-image.sh --rootfs "$dir/peer/rootfs"
  mkfs.ext4 -q -F -d "$dir/peer/rootfs" "$dir/peer/rootfs.ext4" 64M
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/peer/benchinit" ./plugins/isolation-vm/internal/benchinit
  BERTH_BENCH_ACCEL=$accel bin/plugins/isolation-vm bench-peer-setup -dir "$dir/peer" -kernel "$vmlinux" -init "$dir/peer/benchinit"
  # The daemon, the demo image and a first run straight away (the lazy
  # handle dial, see NOTES).
  "${berth[@]}" system start >/dev/null
  BERTH=bin/berth BERTH_CONFIG="$dir/config.hcl" scripts/demo-image.sh >/dev/null
  "${berth[@]}" run --rm --isolation vm berth.local/demo:latest echo hi
  ;;
teardown)
  teardown
  ;;
pss)
  pss
  ;;
*)
  echo "usage: $0 setup|teardown|pss" >&2
  exit 2
  ;;
esac
