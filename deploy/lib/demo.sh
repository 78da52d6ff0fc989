#!/bin/sh
# The main job, run where two RDMA devices exist (deploy/rxe-run exports
# DG_RXE_ADDR0/1): the RDMA primitives' latency first (the transport's own
# limit, same run), then two NIC engines, an echo server behind engine B,
# a client behind engine A; the client prints RPC count, errors, latency
# percentiles and throughput. usage: demo.sh BUILD_DIR [echo client args]
set -eu
b=$1
shift
a0=$DG_RXE_ADDR0
a1=$DG_RXE_ADDR1

echo "== RDMA primitives between the two devices (round trips)"
"$b/bench/dagger-rdma-lat" -n 1000 -B

echo
echo "== echo RPCs: client -> engine A ($a0) -> engine B ($a1) -> server"
"$b/nic/dagger-nic" --listen "$a0" --port 7471 --id 1 & ea=$!
"$b/nic/dagger-nic" --listen "$a1" --port 7472 --id 2 & eb=$!
srv=
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	kill $ea $eb 2>/dev/null
	wait $ea $eb 2>/dev/null || true
}
trap cleanup EXIT
sleep 1
"$b/examples/dagger-echo" server --engine "$a1:7472" >/dev/null & srv=$!
"$b/examples/dagger-echo" client --engine "$a0:7471" --remote "$a1:7472" \
	--wait 60 -n 2000 -s 64 "$@"
