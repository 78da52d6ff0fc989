#!/bin/sh
# The main job, run where two RDMA devices exist (deploy/rxe-run exports
# DG_RXE_ADDR0/1): the RDMA primitives' latency first (the transport's own
# limit, same run), then two NIC engines, an echo server behind engine B,
# a client behind engine A; the client prints RPC count, errors, latency
# percentiles and throughput, and the RPC's median is set beside the sum of
# the primitives on its path. usage: demo.sh BUILD_DIR [echo client args]
#
# Placement as deploy/bench does it: the engines on CPU 0 (the NIC's
# core), the hosts on the other CPUs. Nothing else is tuned: engines and
# host threads use the defaults (doorbell mode; spin 50 us, then sleep
# until woken), which leave the cores to whoever has work.
set -eu
b=$1
shift
a0=$DG_RXE_ADDR0
a1=$DG_RXE_ADDR1
tmp=$(mktemp -d)
ncpu=$(nproc)
nicpin=
hosts=
if [ "$ncpu" -ge 2 ]; then
	nicpin="--cpu 0"
	hosts="taskset -c 1-$((ncpu - 1))"
fi

echo "== RDMA primitives between the two devices (round trips, us)"
# Not pinned: its responder thread polls, and must not share a CPU with
# the requester.
"$b/bench/dagger-rdma-lat" -n 1000 -B | tee "$tmp/prim.txt"

echo
echo "== echo RPCs: client -> engine A ($a0) -> engine B ($a1) -> server"
# shellcheck disable=SC2086 # $nicpin: nothing or two words
"$b/nic/dagger-nic" --listen "$a0" --port 7471 --id 1 --no-ctl $nicpin & ea=$!
# shellcheck disable=SC2086
"$b/nic/dagger-nic" --listen "$a1" --port 7472 --id 2 --no-ctl $nicpin & eb=$!
srv=
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	kill $ea $eb 2>/dev/null
	wait $ea $eb 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
$hosts "$b/examples/dagger-echo" server --engine "$a1:7472" --wait 60 \
	>/dev/null & srv=$!
$hosts "$b/examples/dagger-echo" client --engine "$a0:7471" \
	--remote "$a1:7472" --wait 60 -n 2000 -s 64 "$@" | tee "$tmp/rpc.txt"

# The path's primitives in doorbell mode: each host's doorbell (a WRITE)
# and its engine's READ of the frames, the engines' SENDs to each other,
# the engines' WRITEs into the RX rings: 2 READ round trips, 4 one-way
# WRITEs (2 WRITE round trips) and 2 one-way SENDs (a SEND round trip).
awk '
FNR == 1 { f++ }
f == 1 && $1 == "read" { r = $5 }
f == 1 && $1 == "write" { w = $5 }
f == 1 && $1 == "send" { s = $5 }
f == 2 && $1 ~ /^[0-9]+$/ && NF >= 7 { p = $3 }
END {
	if (!r || !w || !s || !p) {
		print "(no ratio: a figure is missing)"
		exit
	}
	prim = 2 * r + 2 * w + s
	printf "\nRPC p50 %.1f us; the primitives on its path %.1f us " \
	    "(2 READ + 2 WRITE + 1 SEND round trips): %.2fx\n", p, prim, p / prim
}' "$tmp/prim.txt" "$tmp/rpc.txt"
