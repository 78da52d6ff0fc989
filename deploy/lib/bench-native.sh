#!/usr/bin/env bash
# The native part of deploy/bench: no RDMA, no VM. Appends JSON lines to
# OUT/results.jsonl and writes callgrind dumps to OUT/cg-native-*.
#
# usage: bench-native.sh BUILD_DIR OUT_DIR [quick]
#
#  - the bare cache-line ping-pong between CPU 0 and the last CPU (the
#    reference limit), window 1 and 32, taken just before each of the
#    measurements below (labelled pp-LABEL-WINDOW);
#  - the in-process engine's loopback service at 32 and 64 bytes, window 1
#    and 32 (client on CPU 0, engine on the last CPU), and an echo server
#    thread at window 32;
#  - the engine as a daemon (dagger-nic --shm) for other processes: its
#    loopback service from a client process, and an echo server process
#    (three processes on two CPUs: client and server share CPU 0 and
#    give it up when a poll finds nothing);
#  - large messages (64 KiB .. 8 MiB, window 1 and 4) through the
#    in-process engine, beside memcpy's bandwidth for the same size;
#  - host instructions per RPC (callgrind): client and server at 32, 64
#    and 65536 bytes on shared-memory rings, and with checksummed slots (the ring
#    format RDMA uses, the checksums' cost alone); the engine's
#    instructions per RPC (its message processing, idle loops excluded).
set -euo pipefail
b=$(cd "$1" && pwd)
out=$(cd "$2" && pwd)
quick=${3:-}
res=$out/results.jsonl
last=$(($(nproc) - 1))
dur=3
cg_n=3000
if [ -n "$quick" ]; then
	dur=1
	cg_n=500
fi
bench=$b/bench/dagger-bench
nic=$b/nic/dagger-nic
log() { printf '== %s\n' "$*" >&2; }

# This machine's two CPUs may be hyperthreads of one core at one moment
# and separate cores the next (a VM's vCPUs move): the ping-pong's rate
# changes by 4x with that. So every measurement is paired with a
# ping-pong of the same window taken just before it, labelled after it,
# and the report reads each ratio from its own pair.
pingpong() { # LABEL WINDOW
	"$b/bench/dagger-pingpong" -c "0,$last" -w "$2" \
		-n $(($2 == 1 ? 2000000 : 40000000)) |
		sed "s/^{/{\"label\":\"pp-$1-$2\",/" >>"$res"
}

log "in-process engine (CPU $last), client on CPU 0: loopback service, echo server"
for s in 32 64; do
	for w in 1 32; do
		pingpong "local-loopback-$s" "$w"
		"$bench" local --loopback --pin --window "$w" --size "$s" \
			--duration "$dur" --warmup 0.5 --quiet --json \
			--label "local-loopback-$s" >>"$res"
	done
done
pingpong local-echo-server 32
"$bench" local --pin --window 32 --duration "$dur" --warmup 0.5 --quiet \
	--json --label local-echo-server | grep '"bench":"dagger"' >>"$res"

log "the engine as a daemon for other processes (dagger-nic --shm)"
sock=$(mktemp -u /tmp/dagger-bench.XXXXXX.sock)
taskset -c "$last" "$nic" --shm "$sock" --id 1 >/dev/null 2>"$out/nic-shm.log" &
nicpid=$!
srvpid=
trap 'kill $nicpid $srvpid 2>/dev/null || true' EXIT
for i in $(seq 1 50); do
	[ -S "$sock" ] && break
	sleep 0.1
done
for s in 32 64; do
	for w in 1 32; do
		pingpong "shm-loopback-$s" "$w"
		taskset -c 0 "$bench" client --engine "unix:$sock" --loopback \
			--window "$w" --size "$s" --duration "$dur" --warmup 0.5 \
			--quiet --json --label "shm-loopback-$s" >>"$res"
	done
done
taskset -c 0 "$bench" server --engine "unix:$sock" --yield \
	--label shm-server >"$out/shm-server.json" 2>>"$out/nic-shm.log" &
srvpid=$!
for w in 1 32; do
	pingpong shm-echo "$w"
	taskset -c 0 "$bench" client --engine "unix:$sock" --wait 10 --yield \
		--window "$w" --duration "$dur" --warmup 0.5 --quiet --json \
		--label shm-echo >>"$res"
done
kill "$srvpid" "$nicpid" 2>/dev/null || true
wait "$srvpid" "$nicpid" 2>/dev/null || true
srvpid=
trap - EXIT

# Large messages on shared memory: payloads outside the rings (the engine
# copies each once, from the sender's payload area into the receiver's),
# an echo server thread in the process, beside this machine's memcpy
# bandwidth for the same size.
log "large messages on shared memory (in-process engine), and memcpy"
for s in 65536 1048576 8388608; do
	"$bench" memcpy --size "$s" --duration 1 --json \
		--label "memcpy-$s" >>"$res"
	for w in 1 4; do
		"$bench" local --pin --window "$w" --size "$s" --duration "$dur" \
			--warmup 0.5 --quiet --json --label "local-large-$s-w$w" |
			grep '"bench":"dagger"' >>"$res"
	done
done

log "host and engine instructions per RPC (callgrind, $cg_n calls)"
cg() {
	valgrind --tool=callgrind --collect-atstart=no --separate-threads=yes \
		"--callgrind-out-file=$out/cg-native-$1.%p" "${@:2}" \
		2>>"$out/valgrind.log"
}
for s in 32 64 65536; do
	for k in plain csum; do
		flag=()
		[ $k = csum ] && flag=(--csum)
		# The client against the loopback service (no server thread).
		cg "client-$k-$s" "$bench" local --loopback --callgrind \
			--requests "$cg_n" --size "$s" "${flag[@]}" --quiet --json \
			--label "cg-native-client-$k-$s" >>"$res"
		# The server thread of an echo (its dumps are its own thread's).
		cg "server-$k-$s" "$bench" local --callgrind --requests "$cg_n" \
			--size "$s" "${flag[@]}" --quiet --json \
			--label "cg-native-server-$k-$s" >>"$res"
	done
done
# The engine: only its message processing (nic_tx_process, with all it
# routes and delivers) is collected; idle rounds are not.
valgrind --tool=callgrind --toggle-collect=nic_tx_process \
	--separate-threads=yes "--callgrind-out-file=$out/cg-native-engine.%p" \
	"$bench" local --loopback --yield --requests "$cg_n" --size 64 --quiet --json \
	--label cg-native-engine >>"$res" 2>>"$out/valgrind.log"
log "native: done"
