#!/bin/sh
# End to end over RDMA: a dagger-nic engine on DG_RXE_ADDR0, an echo server
# and a client attached to it as tenants over rdma_cm; the engine reaches
# their rings only by RDMA READ/WRITE. 300 synchronous 64-byte and 3000-byte
# echoes, every response checked by the client (exit 1 on any error).
[ -n "$DG_RXE_ADDR0" ] || { echo "SKIP: DG_RXE_ADDR0 not set"; exit 77; }
bin=$1
port=$((20000 + $$ % 20000))
"$bin/nic/dagger-nic" --listen "$DG_RXE_ADDR0" --port $port & nic=$!
"$bin/examples/dagger-echo" server --engine "$DG_RXE_ADDR0:$port" & srv=$!
cleanup() { kill $srv $nic 2>/dev/null; wait $srv $nic 2>/dev/null; }
trap cleanup EXIT
rc=0
for size in 64 3000; do
	# The server may still be registering: the client retries attach.
	i=0
	until timeout 120 "$bin/examples/dagger-echo" client \
		--engine "$DG_RXE_ADDR0:$port" -n 300 -s $size; do
		i=$((i + 1))
		[ $i -lt 3 ] || { rc=1; break; }
		sleep 1
	done
done
exit $rc
