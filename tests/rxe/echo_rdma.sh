#!/bin/sh
# End to end over RDMA, with every response checked by the client (exit 1
# on any error):
#  1. one engine: dagger-nic on DG_RXE_ADDR0, an echo server and a client
#     attached to it as tenants over rdma_cm; the engine reaches their
#     rings only by RDMA READ/WRITE;
#  2. two engines: client -> engine A (ADDR0) -> peer link -> engine B
#     (ADDR1) -> server, and back.
# The servers register with --lb static and random (2 threads each); an
# unknown --lb is refused before anything starts.
[ -n "$DG_RXE_ADDR0" ] && [ -n "$DG_RXE_ADDR1" ] ||
	{ echo "SKIP: DG_RXE_ADDR0/1 not set"; exit 77; }
bin=$1
out=$("$bin/examples/dagger-echo" server --engine 192.0.2.9 --lb best 2>&1)
[ $? -eq 2 ] && echo "$out" | grep -q 'unknown --lb "best"' ||
	{ echo "FAIL: --lb best: $out"; exit 1; }
pa=$((20000 + $$ % 20000))
pb=$((pa + 1))
"$bin/nic/dagger-nic" --listen "$DG_RXE_ADDR0" --port $pa & nica=$!
"$bin/nic/dagger-nic" --listen "$DG_RXE_ADDR1" --port $pb & nicb=$!
sleep 1
"$bin/examples/dagger-echo" server --engine "$DG_RXE_ADDR0:$pa" \
	--threads 2 --lb static & srva=$!
"$bin/examples/dagger-echo" server --engine "$DG_RXE_ADDR1:$pb" \
	--threads 2 --lb random & srvb=$!
cleanup() {
	kill $srva $srvb 2>/dev/null
	wait $srva $srvb 2>/dev/null
	kill $nica $nicb 2>/dev/null
	wait $nica $nicb 2>/dev/null
}
trap cleanup EXIT
client() {
	timeout 300 "$bin/examples/dagger-echo" client --wait 120 "$@"
}
rc=0
for size in 64 3000; do
	echo "# one engine, $size bytes"
	client --engine "$DG_RXE_ADDR0:$pa" -n 300 -s $size || rc=1
	echo "# two engines, $size bytes"
	client --engine "$DG_RXE_ADDR0:$pa" --remote "$DG_RXE_ADDR1:$pb" \
		-n 300 -s $size || rc=1
done
exit $rc
