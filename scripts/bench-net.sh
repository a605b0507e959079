#!/usr/bin/env bash
# Setup, transfers and teardown of the network benchmarks (the net-*
# entries of bench/benchmarks.go): TCP throughput of a fixed-size transfer
# (1 GiB of zeros, bench/netbench send → serve, which checks every byte
# arrived and which source address the server saw) over
#   c2c     container → container on one berth network (the sender is
#           bench/netbench run in the source container's network namespace,
#           the receiver runs inside the destination container);
#   proxy   host → a port published on 127.0.0.1 (netd's userspace proxy);
#   dnat    host → a port published on 198.18.0.1, an address this script
#           puts on a link it creates (nft DNAT, no proxy);
# against the same transfer over the host's loopback (127.0.0.1) in the
# same run. Everything lives under /tmp/berth-bench-net: a berth daemon of
# its own whose default network is bridge bbnet0, 10.87.2.0/24 (never
# berth0 / 10.88.0.0/16), its containers, and the link pair bbnet-addr0/1
# holding that address.
# Traffic goes only over loopback, the bench bridge and that address.
#
#   scripts/bench-net.sh setup [sandbox|vm]   build netbench, start the daemon,
#                                             the two containers, the address link
#   scripts/bench-net.sh send loopback|c2c|proxy|dnat|vm-loopback
#                                             one timed transfer (vm-loopback:
#                                             VM mode's c2c peer, see below)
#   scripts/bench-net.sh teardown             remove everything (also after a
#                                             failure or with the daemon gone)
#
# VM mode: `setup vm` adds the ext4 snapshotter and the vm isolation
# plugin (accel $BERTH_BENCH_ACCEL, default tcg) to the daemon, installs the
# cached Debian kernel into its store, runs both containers with
# --isolation vm (each a VM with a TAP on bbnet0) and sends 256 MiB per
# transfer instead of 1 GiB (a TCG guest moves ~50-100 MB/s). proxy and dnat
# send from the host as in sandbox mode. The sender of c2c cannot be entered
# from the host in a VM: it runs inside the source VM (`berth exec
# bench-net-src /nb/netbench send …`), so its peer is `send vm-loopback`:
# the same exec and transfer to a server on 127.0.0.1 inside that VM, which
# vm_setup_hook starts (same guest CPU cost, no NIC).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/berth-bench-net
berth=(bin/berth --config "$dir/config.hcl")
bridge=bbnet0
subnet=10.87.2.0/24
addr_link=bbnet-addr0 # a veth pair (…0, …1), both ends in the host
addr_ip=198.18.0.1 # RFC 2544 benchmarking range, only on that link
port_lo=35101       # the loopback peer's server
port_proxy=35102    # published on 127.0.0.1 (netd proxy)
port_dnat=35103     # published on $addr_ip (DNAT)
port_ctr=5001       # the server inside the destination container
bytes=$((1 << 30)) # large enough that process starts (~10-20 ms per run here) are a few percent
vm_bytes=$((256 << 20)) # VM mode: ~3-5 s per transfer under TCG
accel=${BERTH_BENCH_ACCEL:-tcg}
image=berth.local/demo:latest
cgroup_parent=berth-bench-net

# kill_pidfile kills the process in FILE if its command line still names
# WORD (so a recycled pid is never hit), and waits for it to go.
kill_pidfile() {
  local file=$1 word=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$word"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

teardown() {
  local rc=0
  if [ -f "$dir/config.hcl" ]; then
    # A daemon that died is started again so it removes what it made.
    "${berth[@]}" system status >/dev/null 2>&1 || timeout 60 "${berth[@]}" system start >/dev/null 2>&1 || true
    if "${berth[@]}" system status >/dev/null 2>&1; then
      for id in $("${berth[@]}" ps -a -q 2>/dev/null); do "${berth[@]}" rm -f "$id" >/dev/null 2>&1 || true; done
      "${berth[@]}" network prune -f >/dev/null 2>&1 || true
      "${berth[@]}" network rm bridge >/dev/null 2>&1 || true
      "${berth[@]}" system stop >/dev/null 2>&1 || true
    fi
  fi
  kill_pidfile "$dir/serve.pid" "$dir/netbench"
  # Whatever the daemon could not remove: containers still running in our
  # cgroup parent, network helpers (they outlive the daemon), mounts.
  for procs in /sys/fs/cgroup/*/"$cgroup_parent"/*/cgroup.procs /sys/fs/cgroup/"$cgroup_parent"/*/cgroup.procs; do
    [ -f "$procs" ] || continue
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$procs"
  done
  # Then every process started from our directory (network helpers, which
  # outlive the daemon, sandbox supervisors, the loopback server).
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$dir/"; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
  done
  if [ -d "$dir" ]; then
    { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  # The kernel side: our bridge, its veths and nft rules (a no-op when the
  # daemon removed them; fails if anything is left), and the address link.
  if ip link show "$bridge" >/dev/null 2>&1 || nft list table inet berth 2>/dev/null | grep -q "$bridge\|${subnet%.0/24}\."; then
    if [ -x "$dir/netbench" ]; then
      "$dir/netbench" cleanup -bridge "$bridge" -subnet "$subnet" || rc=1
    else
      go run ./bench/netbench cleanup -bridge "$bridge" -subnet "$subnet" || rc=1
    fi
  fi
  ip link del "$addr_link" 2>/dev/null || true
  for d in /sys/fs/cgroup/*/"$cgroup_parent" /sys/fs/cgroup/"$cgroup_parent"; do
    [ -d "$d" ] || continue
    find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
    rmdir "$d" 2>/dev/null || true
  done
  rm -rf "$dir"
  return $rc
}

# inspect_field FIELD CTR prints one field of a container's inspect JSON:
# pid or ip.
inspect_field() {
  "${berth[@]}" inspect "$2" | python3 -c '
import json, sys
c = json.load(sys.stdin)
c = c[0] if isinstance(c, list) else c
want = sys.argv[1]
def find(o, keys):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in keys and v not in (None, "", 0):
                return v
            r = find(v, keys)
            if r is not None:
                return r
    elif isinstance(o, list):
        for v in o:
            r = find(v, keys)
            if r is not None:
                return r
    return None
v = find(c, {"pid": ("Pid",), "ip": ("IPAddress",)}[want])
if v is None:
    sys.exit("bench-net: no %s in the inspect output" % want)
print(str(v).split("/")[0])
' "$1"
}

# wait_send WHAT… retries a 1-byte transfer (the command given) until it
# succeeds: netbench serve inside a TCG VM listens seconds after run -d
# returns.
wait_send() {
  local i
  for i in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "bench-net: no server answered: $*" >&2
  "$@" >&2 || true
  return 1
}

# vm_setup_hook runs after both VM containers started: the in-guest loopback
# server of vm-loopback in the source VM, then waits for both servers.
vm_setup_hook() {
  local dst_ip
  "${berth[@]}" exec -d bench-net-src /nb/netbench serve -addr "127.0.0.1:$port_lo" >/dev/null
  dst_ip=$(inspect_field ip bench-net-dst)
  wait_send "$dir/nb/netbench" send -bytes 1 -addr "$dst_ip:$port_ctr"
  wait_send "${berth[@]}" exec bench-net-src /nb/netbench send -bytes 1 -addr "127.0.0.1:$port_lo"
}

# vm_send_c2c sends from inside the source VM to the destination VM's server.
vm_send_c2c() {
  "${berth[@]}" exec bench-net-src /nb/netbench send -bytes "$bytes" -addr "$dst_ip:$port_ctr" -want-peer "$src_ip"
}

setup() {
  local mode=${1:-sandbox}
  case "$mode" in sandbox | vm) ;; *) echo "usage: $0 setup [sandbox|vm]" >&2; exit 2 ;; esac
  teardown
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "bench-net: setup failed; tearing down" >&2; teardown || true; fi; exit $rc' EXIT
  for p in $port_lo $port_proxy $port_dnat; do
    if ss -Htln "sport = :$p" | grep -q .; then echo "bench-net: port $p is in use" >&2; return 1; fi
  done
  mkdir -p "$dir/nb"
  echo "$mode" >"$dir/mode"
  if [ "$mode" = vm ]; then bytes=$vm_bytes; fi
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/nb/netbench" ./bench/netbench
  ln -sf nb/netbench "$dir/netbench"
  local deb=
  if [ "$mode" = vm ]; then
    deb=$(ls /var/cache/berth/debs/linux-image-*-amd64_*_amd64.deb 2>/dev/null | head -n1 || true)
    [ -n "$deb" ] || { echo "bench-net: no kernel package in /var/cache/berth/debs; run scripts/install-deps.sh" >&2; return 1; }
  fi

  cat >"$dir/config.hcl" <<HCL
berth {
  state_dir      = "$dir/state"
  runtime_dir    = "$dir/run"
  plugin_dirs    = ["$PWD/bin/plugins"]
  log_level      = "warn"
  default_bridge = "$bridge"
  default_subnet = "$subnet"
  dns_upstreams  = ["127.0.0.1:53"]
}
plugin "api" "grpc" {}
plugin "resources" "cgroup" {
  parent = "$cgroup_parent"
}
plugin "snapshot" "overlay" {}
plugin "isolation" "sandbox" {
  default     = true
  snapshotter = "overlay"
}
plugin "lifecycle" "local" {}
HCL
  if [ "$mode" = vm ]; then
    cat >>"$dir/config.hcl" <<HCL
plugin "snapshot" "ext4" {}
plugin "isolation" "vm" {
  snapshotter   = "ext4"
  start_timeout = "2m"
  accel         = "$accel"
}
HCL
  fi
  # The vm plugin resolves its kernel when configured: install it first.
  if [ "$mode" = vm ]; then "${berth[@]}" system kernel install --deb "$deb" >/dev/null; fi
  "${berth[@]}" system start >/dev/null
  BERTH=bin/berth BERTH_CONFIG="$dir/config.hcl" scripts/demo-image.sh >/dev/null

  # A dummy link would do, but this kernel has no dummy driver: a veth pair
  # with both ends in the host serves as well (the address is local).
  ip link add "$addr_link" type veth peer name "${addr_link%0}1"
  ip addr add "$addr_ip/32" dev "$addr_link"
  ip link set "${addr_link%0}1" up
  ip link set "$addr_link" up

  # The loopback peer's server, on the host.
  setsid "$dir/netbench" serve -addr "127.0.0.1:$port_lo" >"$dir/serve.log" 2>&1 </dev/null &
  echo $! >"$dir/serve.pid"

  local iso=()
  if [ "$mode" = vm ]; then iso=(--isolation vm); fi
  "${berth[@]}" run -d "${iso[@]}" --name bench-net-dst -v "$dir/nb:/nb:ro" \
    -p "127.0.0.1:$port_proxy:$port_ctr" -p "$addr_ip:$port_dnat:$port_ctr" \
    "$image" /nb/netbench serve -addr ":$port_ctr" >/dev/null
  # The source gets netbench too, for VM mode's in-guest sender.
  "${berth[@]}" run -d "${iso[@]}" --name bench-net-src -v "$dir/nb:/nb:ro" "$image" sleep 1000000 >/dev/null
  if [ "$mode" = vm ]; then vm_setup_hook; fi

  local dst_ip src_ip src_pid gw
  dst_ip=$(inspect_field ip bench-net-dst)
  src_ip=$(inspect_field ip bench-net-src)
  src_pid=
  if [ "$mode" = sandbox ]; then src_pid=$(inspect_field pid bench-net-src); fi
  gw=$(python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$subnet")
  cat >"$dir/env" <<ENV
dst_ip=$dst_ip
src_ip=$src_ip
src_pid=$src_pid
gw=$gw
ENV
  # The DNAT entry is only honest if the rule exists (else netd's proxy,
  # which holds the port on $addr_ip too, would serve it: -want-peer
  # catches that as well).
  local i
  for i in $(seq 1 50); do
    nft list chain inet berth publish 2>/dev/null | grep -q "ip daddr $addr_ip tcp dport $port_dnat dnat ip to $dst_ip:$port_ctr" && break
    if [ "$i" = 50 ]; then
      echo "bench-net: no DNAT rule for $addr_ip:$port_dnat → $dst_ip:$port_ctr in inet berth publish; the table has:" >&2
      nft list table inet berth >&2 || true
      return 1
    fi
    sleep 0.1
  done
  # One checked transfer per path, so a broken path fails setup, not the runs.
  local paths=(loopback c2c proxy dnat)
  if [ "$mode" = vm ]; then paths+=(vm-loopback); fi
  for what in "${paths[@]}"; do
    send "$what" 2>&1 | sed "s/^/bench-net: $what: /" >&2
  done
  trap - EXIT
}

# send does one transfer of $bytes over path $1.
send() {
  # shellcheck source=/dev/null
  . "$dir/env"
  local nb="$dir/netbench"
  if [ "$(cat "$dir/mode")" = vm ]; then bytes=$vm_bytes; fi
  case "$1" in
  loopback) "$nb" send -bytes "$bytes" -addr "127.0.0.1:$port_lo" -want-peer 127.0.0.1 ;;
  vm-loopback) "${berth[@]}" exec bench-net-src /nb/netbench send -bytes "$bytes" -addr "127.0.0.1:$port_lo" -want-peer 127.0.0.1 ;;
  c2c)
    if [ "$(cat "$dir/mode")" = vm ]; then vm_send_c2c; return; fi
    "$nb" send -bytes "$bytes" -netns "/proc/$src_pid/ns/net" -addr "$dst_ip:$port_ctr" -want-peer "$src_ip"
    ;;
  proxy) "$nb" send -bytes "$bytes" -addr "127.0.0.1:$port_proxy" -want-peer "$gw" ;;
  dnat) "$nb" send -bytes "$bytes" -addr "$addr_ip:$port_dnat" -want-peer "$addr_ip" ;;
  *) echo "usage: $0 send loopback|c2c|proxy|dnat|vm-loopback" >&2; return 2 ;;
  esac
}

case "${1:-}" in
setup) setup "${2:-sandbox}" ;;
send) send "${2:-}" ;;
teardown) teardown ;;
*)
  echo "usage: $0 setup [sandbox|vm] | send loopback|c2c|proxy|dnat|vm-loopback | teardown" >&2
  exit 2
  ;;
esac
