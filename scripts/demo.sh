#!/usr/bin/env bash
# make demo: what Berth does today, end to end, on this machine.
# The daemon, its plugins and their supervision, the image store, and a
# container run from the demo image.
set -euo pipefail
cd "$(dirname "$0")/.."
berth=bin/berth
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $berth config validate config.hcl
step $berth system start
step $berth system status
step $berth version

api_pid() { $berth plugin ls | awk '$1 == "api" && $2 == "grpc" { print $4 }'; }
pid=$(api_pid)
printf '\n\033[1m# kill -9 the api plugin (pid %s): the daemon restarts it\033[0m\n' "$pid"
kill -9 "$pid"
for _ in $(seq 1 60); do
  new=$(api_pid)
  [ -n "$new" ] && [ "$new" != "-" ] && [ "$new" != "$pid" ] && break
  sleep 0.5
done
step $berth plugin ls
step $berth version

printf '\n\033[1m# the image store: build the demo image here (no registry needed) and import it\033[0m\n'
step ./scripts/demo-image.sh
step $berth images
step $berth image inspect berth.local/demo:latest
step $berth save -o /tmp/berth-demo-image.tar berth.local/demo:latest
step $berth rmi berth.local/demo:latest
step $berth load -i /tmp/berth-demo-image.tar
rm -f /tmp/berth-demo-image.tar
step $berth images

printf '\n\033[1m# a container: its own hostname, its own pid namespace, its memory limit\033[0m\n'
# shellcheck disable=SC2016 # expanded inside the container
demo_script='echo "hostname: $(hostname)"
echo "processes it sees (pid 1 is its own shell):"
ps -o pid,user,comm
if [ -f /sys/fs/cgroup/memory.max ]; then limit=$(cat /sys/fs/cgroup/memory.max)
else limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); fi
echo "memory limit: $limit bytes ($((limit / 1048576)) MiB)"'
$berth rm -f berth-demo >/dev/null 2>&1 || true
step $berth run --name berth-demo --hostname berth-demo --memory 64m berth.local/demo:latest sh -c "$demo_script"
step $berth ps -a
step $berth logs berth-demo
step $berth rm berth-demo
step $berth system stop
