#!/usr/bin/env bash
# Setup and teardown of the image-pull benchmark (bench/benchmarks.go):
# a loopback registry holding a ~50 MB, 5-layer image
# (core/images/internal/testregistry) and a berth daemon with a config and
# state of its own, all under /tmp/berth-bench-images.
#
#   scripts/bench-images.sh setup      build and start both
#   scripts/bench-images.sh teardown   stop both, remove everything
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/berth-bench-images
addr=${BENCH_REGISTRY:-127.0.0.1:35000}

teardown() {
  if [ -f "$dir/config.hcl" ]; then bin/berth --config "$dir/config.hcl" system stop >/dev/null 2>&1 || true; fi
  if [ -f "$dir/registry.pid" ]; then kill "$(cat "$dir/registry.pid")" 2>/dev/null || true; fi
  rm -rf "$dir"
}

case "${1:-}" in
setup)
  teardown
  mkdir -p "$dir"
  go build -o "$dir/testregistry" ./core/images/internal/testregistry
  setsid "$dir/testregistry" -addr "$addr" -ready "$dir/ready" >"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 1 600); do
    [ -f "$dir/ready" ] && break
    if ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
      echo "bench-images: the test registry exited:" >&2
      cat "$dir/registry.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  [ -f "$dir/ready" ] || { echo "bench-images: the test registry did not get ready" >&2; exit 1; }
  cat >"$dir/config.hcl" <<HCL
berth {
  state_dir   = "$dir/state"
  runtime_dir = "$dir/run"
  plugin_dirs = ["$PWD/bin/plugins"]
  log_level   = "warn"
}
plugin "api" "grpc" {}
HCL
  bin/berth --config "$dir/config.hcl" system start >/dev/null
  ;;
teardown)
  teardown
  ;;
*)
  echo "usage: $0 setup|teardown" >&2
  exit 2
  ;;
esac
