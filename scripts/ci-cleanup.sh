#!/usr/bin/env bash
# Removes what an earlier, killed test or CI run may have left behind, so
# runs on one machine do not pile up. Only touches things under Berth's own
# names: processes running binaries from a bin/plugins dir or a berth test
# dir, mounts and cgroups named berth*, and netns/links named berth*.
set -u
log() { echo "ci-cleanup: $*"; }

# Daemons and plugins left by killed runs (test daemons live in /tmp/berth-*).
# Also VM-mode qemu processes (their agent port is named org.berth.agent) and
# per-network helpers (berth system network-helper, usernet-helper; test
# binaries re-run themselves as helpers: "X.test usernet-helper").
for pid in $(pgrep -f '(/bin/plugins/|/berth-test|berth system start --foreground|org\.berth\.agent|system network-helper| usernet-helper |\.test network-helper )' 2>/dev/null); do
  [ "$pid" = "$$" ] && continue
  log "killing leftover process $pid ($(tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null | cut -c1-80))"
  kill -9 "$pid" 2>/dev/null
done

# Mounts under berth state or test dirs, deepest first.
if [ -r /proc/self/mountinfo ]; then
  awk '{print $5}' /proc/self/mountinfo | grep -E '/berth(-test[^/]*)?/' | sort -r | while read -r m; do
    log "unmounting $m"; umount -l "$m" 2>/dev/null
  done
fi

# Cgroups named berth* (v1 controllers and v2), deepest first.
for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
  [ -d "$root" ] || continue
  find "$root" -maxdepth 3 -depth -type d -name 'berth*' 2>/dev/null | while read -r cg; do
    log "removing cgroup $cg"; rmdir "$cg" 2>/dev/null
  done
done

# Network namespaces and links named berth*.
if command -v ip >/dev/null; then
  for ns in $(ip netns list 2>/dev/null | awk '/^berth/{print $1}'); do log "deleting netns $ns"; ip netns delete "$ns"; done
  # berth* (bridges, test links), vb<id> (container veths), tb<id> (VM TAPs),
  # br-<id> (network bridges), bt* (test daemons' default bridges), bb* (bench).
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^(berth|vb[0-9a-f]|tb[0-9a-f]|br-[0-9a-f]{12}|bt[-a-z0-9]|bbnet|bbrun|bbvm)/{print $2}' | cut -d@ -f1); do log "deleting link $l"; ip link delete "$l" 2>/dev/null; done
fi
# Berth's nftables table (networking); recreated by the daemon at start.
if command -v nft >/dev/null && nft list table inet berth >/dev/null 2>&1; then
  log "deleting nft table inet berth"; nft delete table inet berth
fi

# Test temp dirs.
rm -rf /tmp/berth-test* 2>/dev/null
exit 0
