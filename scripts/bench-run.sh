#!/usr/bin/env bash
# Setup and teardown of the container-run benchmarks (bench/benchmarks.go):
# `berth run --rm IMG true` against `ctr run --rm` (Debian's containerd +
# runc) and bare `runc run`, with the same image: the demo image
# (scripts/demo-image.sh), saved by berth and imported with
# `ctr image import`; runc runs a bundle of the same rootfs. Everything
# lives under /tmp/berth-bench-run: a berth daemon with its own config and
# state (the shipped plugins; default network on bridge bbrun0,
# 10.87.1.0/24), and a containerd of its own.
#
#   scripts/bench-run.sh setup      build and start both
#   scripts/bench-run.sh teardown   stop both, remove everything
#   scripts/bench-run.sh pss        print the idle PSS of berth's daemon and plugins
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/berth-bench-run
berth=(bin/berth --config "$dir/config.hcl")
ctr=(ctr --address "$dir/containerd/containerd.sock" --namespace bench)

teardown() {
  if [ -f "$dir/config.hcl" ]; then
    for id in $("${berth[@]}" ps -a -q 2>/dev/null); do "${berth[@]}" rm -f "$id" >/dev/null 2>&1 || true; done
    # The default network's bridge, nft rules and helper (which outlives
    # the daemon) go with it.
    "${berth[@]}" network rm bridge >/dev/null 2>&1 || true
    "${berth[@]}" system stop >/dev/null 2>&1 || true
  fi
  runc delete -f berth-bench-runc >/dev/null 2>&1 || true
  if [ -f "$dir/containerd.pid" ]; then
    "${ctr[@]}" task kill -s KILL bench-ctr >/dev/null 2>&1 || true
    "${ctr[@]}" container rm bench-ctr >/dev/null 2>&1 || true
    kill "$(cat "$dir/containerd.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -d "$dir" ]; then
    # A network helper left by a daemon that died (its command line names
    # our state dir).
    for p in /proc/[0-9]*; do
      if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$dir/state/network/"; then kill "${p#/proc/}" 2>/dev/null || true; fi
    done
    # containerd's overlay snapshots and shim mounts, if it left any.
    { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$dir"
  fi
  # The bridge and nft rules of a default network no daemon removed.
  if ip link show bbrun0 >/dev/null 2>&1; then go run ./bench/netbench cleanup -bridge bbrun0 -subnet 10.87.1.0/24 || true; fi
  rmdir /sys/fs/cgroup/*/berth-bench-run /sys/fs/cgroup/berth-bench-run 2>/dev/null || true
}

pss() {
  local total=0 pid kb
  for pid in $("${berth[@]}" system status --format json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["Pid"], *[p["Pid"] for p in s["Plugins"]])'); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
    printf '%-8s %-40s %6d kB\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-40)" "$kb"
    total=$((total + kb))
  done
  echo "total PSS: $total kB"
}

case "${1:-}" in
setup)
  teardown
  for tool in ctr containerd runc; do
    command -v "$tool" >/dev/null || { echo "bench-run: $tool missing; run scripts/install-deps.sh" >&2; exit 1; }
  done
  mkdir -p "$dir/containerd"
  cat >"$dir/config.hcl" <<HCL
berth {
  state_dir   = "$dir/state"
  runtime_dir = "$dir/run"
  plugin_dirs = ["$PWD/bin/plugins"]
  log_level   = "warn"
  # Every container joins the default network: a bridge and subnet of
  # this daemon's own, never berth0 / 10.88.0.0/16.
  default_bridge = "bbrun0"
  default_subnet = "10.87.1.0/24"
  dns_upstreams  = ["127.0.0.1:53"]
}
plugin "api" "grpc" {}
plugin "resources" "cgroup" {
  parent = "berth-bench-run"
}
plugin "snapshot" "overlay" {}
plugin "isolation" "sandbox" {
  default     = true
  snapshotter = "overlay"
}
plugin "lifecycle" "local" {}
HCL
  # The rootfs first: its go build is the slow part. Then the daemon, the
  # import and a first run straight away: lifecycle-local dials its handles
  # at first use, and go-plugin drops a handle nobody dials within 5 s
  # (see NOTES, "Known bug").
  mkdir -p "$dir/bundle"
  scripts/demo-image.sh --rootfs "$dir/bundle/rootfs"
  "${berth[@]}" system start >/dev/null
  BERTH=bin/berth BERTH_CONFIG="$dir/config.hcl" scripts/demo-image.sh >/dev/null
  "${berth[@]}" run --rm berth.local/demo:latest true
  "${berth[@]}" save --format docker -o "$dir/demo.tar" berth.local/demo:latest

  cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd/containerd.sock"
TOML
  setsid containerd --config "$dir/containerd/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
  echo $! >"$dir/containerd.pid"
  for _ in $(seq 1 300); do
    "${ctr[@]}" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  "${ctr[@]}" version >/dev/null || { echo "bench-run: containerd did not start:" >&2; cat "$dir/containerd.log" >&2; exit 1; }
  "${ctr[@]}" image import "$dir/demo.tar" >/dev/null

  # runc: a bundle of the same rootfs running true, no terminal.
  (cd "$dir/bundle" && runc spec && python3 - <<'PY'
import json
s = json.load(open("config.json"))
s["process"]["terminal"] = False
s["process"]["args"] = ["true"]
json.dump(s, open("config.json", "w"))
PY
  )
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
