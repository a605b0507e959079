#!/usr/bin/env bash
# Setup and teardown of the VM template benchmarks (bench/vmtemplate.go,
# issue 10): `berth run --rm --isolation vm [--network none] IMG true` on a daemon whose
# isolation-vm starts VMs from a pre-booted template, against the same on a
# daemon that boots every VM cold — the same binaries, kernel, image and
# sizes; only `templates` differs. Everything lives under
# /tmp/berth-bench-vmt/{tpl,cold}.
#
#   scripts/bench-vm-template.sh setup [NET]  build and start both daemons,
#                                           wait for the template for
#                                           `--network NET` (none: no NIC,
#                                           default; bridge: one NIC)
#   scripts/bench-vm-template.sh teardown   stop, remove everything
#   scripts/bench-vm-template.sh rss        start an idle template-started VM
#                                           container, print qemu's and the
#                                           supervisor's RSS and PSS, remove it
#
# BERTH_BENCH_ACCEL (kvm|tcg, default tcg: this host's /dev/kvm cannot run a
# guest, see NOTES) picks the accelerator for both.
set -euo pipefail
cd "$(dirname "$0")/.."
top=/tmp/berth-bench-vmt
accel=${BERTH_BENCH_ACCEL:-tcg}
deb=$(ls /var/cache/berth/debs/linux-image-*-amd64_*_amd64.deb 2>/dev/null | head -n1 || true)

berth() { local side=$1; shift; bin/berth --config "$top/$side/config.hcl" "$@"; }

teardown() {
  for side in tpl cold; do
    if [ -f "$top/$side/config.hcl" ]; then
      for id in $(berth "$side" ps -a -q 2>/dev/null); do berth "$side" rm -f "$id" >/dev/null 2>&1 || true; done
      # The default network's bridge, rules and helper outlive the daemon.
      berth "$side" network rm bridge >/dev/null 2>&1 || true
      berth "$side" system stop >/dev/null 2>&1 || true
    fi
    rmdir /sys/fs/cgroup/*/berth-bench-vmt-$side /sys/fs/cgroup/berth-bench-vmt-$side 2>/dev/null || true
  done
  rm -rf "$top"
}

setup_side() {
  local side=$1 templates=$2 n=$3 dir=$top/$1
  mkdir -p "$dir"
  cat >"$dir/config.hcl" <<HCL
berth {
  state_dir   = "$dir/state"
  runtime_dir = "$dir/run"
  plugin_dirs = ["$PWD/bin/plugins"]
  log_level   = "warn"
  default_bridge = "bbvmt$n"
  default_subnet = "10.87.$((20 + n)).0/24"
  dns_upstreams  = ["127.0.0.1:53"]
}
plugin "api" "grpc" {}
plugin "resources" "cgroup" {
  parent = "berth-bench-vmt-$side"
}
plugin "snapshot" "ext4" {}
plugin "isolation" "vm" {
  default       = true
  snapshotter   = "ext4"
  start_timeout = "2m"
  accel         = "$accel"
  templates     = $templates
}
plugin "lifecycle" "local" {}
HCL
  berth "$side" system kernel install --deb "$deb" >/dev/null
  berth "$side" system start >/dev/null
  BERTH=bin/berth BERTH_CONFIG="$dir/config.hcl" scripts/demo-image.sh >/dev/null
  # A first run: the lazy handle dial (NOTES) and, with templates, the
  # background build of the template for the network (one per setup: the
  # runner bounds each setup command to 2 minutes).
  berth "$side" run --rm --isolation vm --network "$net" berth.local/demo:latest true
}

rss() {
  local id task sup vm
  id=$(berth tpl run -d --isolation vm --network none berth.local/demo:latest sleep 1000)
  sleep 5 # idle
  task=$top/tpl/state/plugins/isolation-vm/tasks/$id
  grep -q "vm started from template" "$task/supervisor.log" || echo "warning: this container did not start from the template"
  read -r sup vm < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["supervisor_pid"], s.get("vm_pid", 0))' "$task/state.json")
  for pid in $sup $vm; do
    printf '%-8s %-30s RSS %6d kB  PSS %6d kB\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-30)" \
      "$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")" "$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")"
  done
  berth tpl rm -f "$id" >/dev/null
}

net=${2:-none}
case "$net" in none | bridge) ;; *) echo "bench-vm-template: network $net: none or bridge" >&2; exit 2 ;; esac
case "${1:-}" in
setup)
  teardown
  command -v qemu-system-x86_64 >/dev/null || { echo "bench-vm-template: qemu-system-x86_64 missing; run scripts/install-deps.sh" >&2; exit 1; }
  [ -n "$deb" ] || { echo "bench-vm-template: no kernel package in /var/cache/berth/debs; run scripts/install-deps.sh" >&2; exit 1; }
  setup_side tpl true 1
  setup_side cold false 0
  # Wait (bounded) for the template the first run started building.
  for _ in $(seq 1 240); do
    if bin/berth --config "$top/tpl/config.hcl" system templates ls 2>/dev/null | grep -q ' ok$'; then break; fi
    sleep 0.5
  done
  bin/berth --config "$top/tpl/config.hcl" system templates ls
  ;;
teardown)
  teardown
  ;;
rss)
  rss
  ;;
*)
  echo "usage: $0 setup [none|bridge]|teardown|rss" >&2
  exit 2
  ;;
esac
