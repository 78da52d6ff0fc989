#!/bin/sh
# dagger-chain end to end over RDMA: storage behind engine B, logic and
# frontend behind engine A, each its own process and tenant; clients
# behind A and behind B. The frontend fans out to logic and storage, logic
# calls storage across the peer link. The client checks every answer.
#   chain_rdma.sh BUILD_DIR [N]
# Output also goes to BUILD_DIR/tests/idl/chain_rdma.log as it happens.
[ -n "$DG_RXE_ADDR0" ] && [ -n "$DG_RXE_ADDR1" ] ||
	{ echo "SKIP: DG_RXE_ADDR0/1 not set"; exit 77; }
if [ -z "${DG_CHAIN_LOGGED:-}" ]; then
	st=$(mktemp)
	{ DG_CHAIN_LOGGED=1 "$0" "$@"; echo $? >"$st"; } 2>&1 |
		tee "$1/tests/idl/chain_rdma.log"
	rc=$(cat "$st")
	rm -f "$st"
	exit "$rc"
fi
bin=$1 n=${2:-100}
chain=$bin/examples/dagger-chain
pa=$((20000 + $$ % 20000))
pb=$((pa + 1))
A=$DG_RXE_ADDR0:$pa
B=$DG_RXE_ADDR1:$pb
"$bin/nic/dagger-nic" --listen "$DG_RXE_ADDR0" --port $pa & nica=$!
"$bin/nic/dagger-nic" --listen "$DG_RXE_ADDR1" --port $pb & nicb=$!
sleep 1
"$chain" storage --engine "$B" & st=$!
"$chain" logic --engine "$A" --storage "$B" & lg=$!
"$chain" frontend --engine "$A" --storage "$B" & fe=$!
cleanup() {
	kill $fe $lg $st 2>/dev/null
	wait $fe $lg $st 2>/dev/null
	kill $nica $nicb 2>/dev/null
	wait $nica $nicb 2>/dev/null
}
trap cleanup EXIT
rc=0
echo "# client behind engine A"
timeout 600 "$chain" client --engine "$A" -n "$n" --prefix a || rc=1
echo "# client behind engine B (frontend across the peer link)"
timeout 600 "$chain" client --engine "$B" --frontend "$A" -n "$n" \
	--prefix b || rc=1
exit $rc
