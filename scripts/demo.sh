#!/usr/bin/env bash
# make demo: what Berth does today, end to end, on this machine.
# (Containers arrive with the lifecycle and isolation issues; this shows the
# daemon, its plugins and their supervision.)
set -euo pipefail
cd "$(dirname "$0")/.."
berth=bin/berth
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $berth config validate config.hcl
step $berth system start
step $berth system status
step $berth version

pid=$($berth plugin ls --format json | sed -n 's/.*"Pid": \([0-9]*\).*/\1/p' | head -1)
printf '\n\033[1m# kill -9 the api plugin (pid %s): the daemon restarts it\033[0m\n' "$pid"
kill -9 "$pid"
for _ in $(seq 1 60); do
  new=$($berth plugin ls --format json | sed -n 's/.*"Pid": \([0-9]*\).*/\1/p' | head -1)
  [ -n "$new" ] && [ "$new" != "0" ] && [ "$new" != "$pid" ] && break
  sleep 0.5
done
step $berth plugin ls
step $berth version
step $berth system stop
