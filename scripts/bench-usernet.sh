#!/usr/bin/env bash
# Setup, transfers and teardown of the user-mode VM networking benchmarks
# (net-vm-user-* in bench/benchmarks.go): TCP throughput of a fixed-size
# transfer ($BERTH_USERNET_BENCH_MIB MiB, default 64, every byte counted
# by the receiver) to and from a VM on a user-mode network
# (internal/usernet: qemu -netdev stream to the gvisor-tap-vsock switch,
# published ports / NAT in user space) against the same transfer to and
# from a VM on a TAP device (the kernel datapath of bridge networks, here
# without the bridge: host 10.0.10.1/24 on the TAP, guest 10.0.10.2).
#   publish  host → guest: the user VM through a port published on
#            127.0.0.1, the TAP VM at its address;
#   nat      guest → host: the user VM dials the gateway (= the host's
#            127.0.0.1), the TAP VM dials 10.0.10.1.
# Both VMs run internal/usernet's netguest (TCG unless BERTH_TEST_QEMU_ACCEL)
# under the usernet test binary's TestBenchServe, which is also the
# user-mode network's process (its RSS is printed at teardown). Traffic
# goes only over loopback and the TAP. Everything lives under
# /tmp/berth-bench-usernet.
#
#   scripts/bench-usernet.sh setup                 build, boot both VMs
#   scripts/bench-usernet.sh send user|tap-publish|nat   one timed transfer
#   scripts/bench-usernet.sh teardown              stop, print the RSS
set -euo pipefail
dir=/tmp/berth-bench-usernet
root=$(cd "$(dirname "$0")/.." && pwd)

case "${1:-}" in
setup)
	"$0" teardown >/dev/null 2>&1 || true
	mkdir -p "$dir"
	(cd "$root" && go test -c -o "$dir/usernet.test" ./internal/usernet)
	(cd "$root/internal/usernet" && BERTH_USERNET_BENCH_DIR=$dir setsid "$dir/usernet.test" \
		-test.run '^TestBenchServe$' -test.count=1 -test.timeout 2h -test.v >"$dir/serve.log" 2>&1 &
		echo $! >"$dir/serve.pid")
	for _ in $(seq 600); do
		[ -s "$dir/targets.json" ] && exit 0
		kill -0 "$(cat "$dir/serve.pid")" 2>/dev/null || break
		sleep 0.5
	done
	echo "bench-usernet: the VMs did not come up; $dir/serve.log:" >&2
	tail -40 "$dir/serve.log" >&2
	exit 1
	;;
send)
	BERTH_USERNET_BENCH_DIR=$dir BERTH_USERNET_BENCH_MODE=${2:?mode} \
		"$dir/usernet.test" -test.run '^TestBenchSend$' -test.count=1 >"$dir/send.log" 2>&1 ||
		{ cat "$dir/send.log" >&2; exit 1; }
	;;
teardown)
	[ -d "$dir" ] || exit 0
	touch "$dir/stop"
	if [ -f "$dir/serve.pid" ]; then
		pid=$(cat "$dir/serve.pid")
		for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill "$pid" 2>/dev/null || true
	fi
	[ -f "$dir/rss.json" ] && echo "bench-usernet: usernet process RSS (kB): $(cat "$dir/rss.json")"
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 setup | send user|tap-publish|nat | teardown" >&2
	exit 2
	;;
esac
