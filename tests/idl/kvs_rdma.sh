#!/bin/sh
# dagger-kvs end to end over RDMA: dagger-nic engines on the two rxe
# devices, a kvs server behind engine A, clients
# behind A and behind B (through the peer link). Every command's output
# is checked; then the Get benchmark (16-byte keys, 32-byte values) runs
# and prints its table (no assertion on speed).
#   kvs_rdma.sh BUILD_DIR [BENCH_N [POPULATE_N]]
# Output also goes to BUILD_DIR/tests/idl/kvs_rdma.log as it happens.
[ -n "$DG_RXE_ADDR0" ] && [ -n "$DG_RXE_ADDR1" ] ||
	{ echo "SKIP: DG_RXE_ADDR0/1 not set"; exit 77; }
bin=$1 bench_n=${2:-1000} pop_n=${3:-300}
if [ -z "${DG_KVS_LOGGED:-}" ]; then
	st=$(mktemp)
	{ DG_KVS_LOGGED=1 "$0" "$@"; echo $? >"$st"; } 2>&1 |
		tee "$bin/tests/idl/kvs_rdma.log"
	rc=$(cat "$st")
	rm -f "$st"
	exit "$rc"
fi
kvs=$bin/examples/dagger-kvs
pa=$((20000 + $$ % 20000))
pb=$((pa + 1))
"$bin/nic/dagger-nic" --listen "$DG_RXE_ADDR0" --port $pa & nica=$!
"$bin/nic/dagger-nic" --listen "$DG_RXE_ADDR1" --port $pb & nicb=$!
sleep 1
"$kvs" server --engine "$DG_RXE_ADDR0:$pa" & srv=$!
cleanup() {
	kill $srv 2>/dev/null
	wait $srv 2>/dev/null
	kill $nica $nicb 2>/dev/null
	wait $nica $nicb 2>/dev/null
}
trap cleanup EXIT
rc=0
out=$(mktemp)
check() { # check NAME EXPECTED-OUTPUT EXPECTED-STATUS CLIENT-ARGS...
	name=$1 want=$2 wst=$3
	shift 3
	timeout 300 "$kvs" client --wait 120 "$@" >"$out" 2>&1
	st=$?
	if [ $st -ne "$wst" ] || [ "$(cat "$out")" != "$want" ]; then
		echo "FAIL: $name (status $st, want $wst)"
		echo "--- want"; echo "$want"; echo "--- got"; cat "$out"
		rc=1
	else
		echo "ok: $name"
	fi
}
A="--engine $DG_RXE_ADDR0:$pa"
B="--engine $DG_RXE_ADDR1:$pb --remote $DG_RXE_ADDR0:$pa"

check "set/get/del, one engine" 'OK
"one"
OK (replaced)
"two"
alpha: "two"
nope: (not found)
deleted
(not found)
(not found)' 0 $A -c "set alpha one" -c "get alpha" -c "set alpha two" \
	-c "get alpha" -c "mget alpha nope" -c "del alpha" -c "get alpha" \
	-c "del alpha"

check "two engines" 'OK
OK
"x\x01y"
k1: (not found)
k2: "v2"
k3: "x\x01y"' 0 $B -c "set k2 v2" -c "set k3 $(printf 'x\001y')" -c "get k3" \
	-c "mget k1 k2 k3"

check "shell from stdin" 'OK
"7"' 0 $A <<'CMDS'
set seven 7

get seven
quit
get never-reached
CMDS

check "bad command" 'error: bad command "frob" (try help)' 1 $A -c "frob"

check "populate" 'populated 100 keys (16-byte keys, 32-byte values)
"ghijklmnopqrstuvwxyzabcdefghijkl"' 0 $A -c "populate 100" \
	-c "get key-000000000006"

echo "# benchmark, one engine"
timeout 600 "$kvs" client $A -c "populate $pop_n" -c "bench $bench_n" || rc=1
echo "# benchmark, two engines"
timeout 600 "$kvs" client $B -c "populate $pop_n" -c "bench $bench_n" || rc=1
rm -f "$out"
exit $rc
