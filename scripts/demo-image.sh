#!/usr/bin/env bash
# make demo-image: builds Berth's demo image on this machine, with no
# registry and no internet: Debian's static busybox (package busybox-static)
# and a tiny static Go program (scripts/demoimage/hello) in one layer,
# loaded through the path users take, `berth image import`, as
# berth.local/demo:latest (override with DEMO_IMAGE).
#
#   scripts/demo-image.sh               build and import (starts the daemon
#                                       when none runs, and stops it after)
#   scripts/demo-image.sh --rootfs DIR  only build the root filesystem in DIR
#
# Importing the same rootfs twice gives the same image digest.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${DEMO_IMAGE:-berth.local/demo:latest}
berth=${BERTH:-bin/berth}
busybox=/bin/busybox

build_rootfs() {
  local dir=$1
  if ! "$busybox" --list >/dev/null 2>&1; then
    echo "demo-image: $busybox missing; run scripts/install-deps.sh (it installs busybox-static)" >&2
    exit 1
  fi
  mkdir -p "$dir"/{bin,etc,tmp,proc,sys,dev,root}
  cp "$busybox" "$dir/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
  done
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/hello" ./scripts/demoimage/hello
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  chmod 0755 "$dir" "$dir"/{bin,etc,proc,sys,dev}
  chmod 0700 "$dir/root"
  chmod 1777 "$dir/tmp"
}

if [ "${1:-}" = "--rootfs" ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 --rootfs DIR" >&2; exit 2; }
  build_rootfs "$2"
  exit 0
fi

rootfs=$(mktemp -d)
started=
cleanup() {
  rm -rf "$rootfs"
  if [ -n "$started" ]; then "$berth" system stop >/dev/null; fi
}
trap cleanup EXIT
build_rootfs "$rootfs"
if ! "$berth" system status >/dev/null 2>&1; then
  "$berth" system start >/dev/null
  started=1
fi
"$berth" image import "$rootfs" "$name" \
  --cmd /hello \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --workdir /
