#!/bin/sh
# The benchmark tools over RDMA: dagger-bench client/server through an
# engine, the engine's loopback service, local mode at both ends linked by
# a peer link, and the host-driven baseline dagger-hostrpc. Each run must
# complete every call without error. (Speed is not checked: deploy/bench
# measures it.)
[ -n "$DG_RXE_ADDR0" ] && [ -n "$DG_RXE_ADDR1" ] ||
	{ echo "SKIP: DG_RXE_ADDR0/1 not set"; exit 77; }
b=$1/bench
a0=$DG_RXE_ADDR0
a1=$DG_RXE_ADDR1
p=$((20000 + $$ % 20000))
pids=
cleanup() {
	# shellcheck disable=SC2086
	kill $pids 2>/dev/null
	# shellcheck disable=SC2086
	wait $pids 2>/dev/null
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
check() { # label, JSON line, rpcs wanted
	echo "$2"
	echo "$2" | grep -q "\"rpcs\":$3," || fail "$1: not $3 calls"
	echo "$2" | grep -q '"errors":0,' || fail "$1: errors"
}
"$1/nic/dagger-nic" --listen "$a0" --port $p & pids="$pids $!"
"$b/dagger-bench" server --engine "$a0:$p" --yield --server-threads 2 --wait 60 \
	& pids="$pids $!"
"$b/dagger-hostrpc" server --listen "$a0" --port $((p + 1)) --yield \
	& pids="$pids $!"
"$b/dagger-bench" local --listen "$a0:$((p + 2))" --server-only --yield \
	& pids="$pids $!"
sleep 2
run() { timeout 300 "$@" --json --quiet --yield; }
# The servers take a moment (more under a sanitizer): attaches wait.
out=$(run "$b/dagger-bench" client --engine "$a0:$p" --src "$a1" --wait 60 \
	--requests 300 --window 4 --threads 2) || fail "client exited $?"
check "echo through the engine" "$out" 600
out=$(run "$b/dagger-bench" client --engine "$a0:$p" --loopback --wait 60 \
	--requests 200 --size 5000) || fail "loopback exited $?"
check "engine loopback" "$out" 200
# (retried while the other process's engine is still starting)
out=
for _ in $(seq 1 30); do
	out=$(run "$b/dagger-bench" local --listen "$a1" \
		--remote "$a0:$((p + 2))" --requests 200 --window 2) && break
	out=
	sleep 1
done
[ -n "$out" ] || fail "local both ends: no run completed"
check "local backend at both ends" "$out" 200
out=
for _ in $(seq 1 30); do
	out=$(run "$b/dagger-hostrpc" client --connect "$a0:$((p + 1))" \
		--src "$a1" --requests 300 --window 4) && break
	out=
	sleep 1
done
[ -n "$out" ] || fail "hostrpc: no run completed"
check "host-driven baseline" "$out" 300
echo "bench tools over RDMA: ok"
