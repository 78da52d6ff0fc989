#!/usr/bin/env bash
# The RDMA part of deploy/bench, run where two RDMA devices exist
# (deploy/rxe-run exports DG_RXE_DEV0/1 and DG_RXE_ADDR0/1). Every figure
# is appended as one JSON line to OUT/results.jsonl; latency CDFs go to
# OUT/cdf-*.txt, callgrind dumps to OUT/cg-*.
#
# usage: bench-vm.sh BUILD_DIR OUT_DIR [quick]
#   quick: shorter runs and fewer points (for a smoke test of the suite)
set -euo pipefail
b=$(cd "$1" && pwd)
out=$(cd "$2" && pwd)
quick=${3:-}
d0=${DG_RXE_DEV0:-rxe0}
d1=${DG_RXE_DEV1:-rxe1}
a0=${DG_RXE_ADDR0:?DG_RXE_ADDR0 unset: run through deploy/rxe-run}
a1=${DG_RXE_ADDR1:?}
res=$out/results.jsonl
dur=4
warm=1
cg_n=1000
if [ -n "$quick" ]; then
	dur=1
	warm=0.5
	cg_n=200
fi
hostrpc=$b/bench/dagger-hostrpc
nic=$b/nic/dagger-nic
# The engines get CPU 0 (the NIC's core), the dagger hosts the others:
# dagger-bench runs through a wrapper that pins it. One CPU: no pinning.
ncpu=$(nproc)
nic_pin=()
bench=$b/bench/dagger-bench
if [ "$ncpu" -ge 2 ]; then
	nic_pin=(--cpu 0)
	bench=$out/dagger-bench-hosts
	printf '#!/bin/sh\nexec taskset -c 1-%d %s "$@"\n' "$((ncpu - 1))" \
		"$b/bench/dagger-bench" >"$bench"
	chmod +x "$bench"
fi
# Unpinned: the local backend (its engine is a thread of the bench
# process) and callgrind (it must trace dagger-bench, not the wrapper;
# instruction counts do not depend on the CPU).
bench_free=$b/bench/dagger-bench

log() { printf '== %s\n' "$*" >&2; }
die() {
	echo "bench-vm: $*" >&2
	exit 1
}

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	pids=()
}
trap cleanup EXIT

# Starts a background process (its stdout appended to the results).
bg() {
	"$@" >>"$res" 2>>"$out/stderr.log" &
	pids+=($!)
}

# An engine in the background (its statistics go to the log).
engine() {
	"$nic" "${nic_pin[@]}" "$@" >>"$out/stderr.log" 2>&1 &
	pids+=($!)
}

# Stops the background processes politely (they print their totals).
stop_bg() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		timeout 60 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}

# Waits until an rdma_cm port answers on addr (the engine is listening).
wait_port() {
	local i
	for i in $(seq 1 100); do
		if "$bench" client --engine "$1:$2" --loopback --requests 1 \
			--quiet --json >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	die "nothing answers on $1:$2"
}

# A client run: its JSON line goes to the results (bounded in time). A
# failed run is listed in OUT/failed.txt (the report shows it) and the
# suite goes on.
run() {
	timeout 600 "$@" --json --quiet >>"$res" 2>>"$out/stderr.log" || {
		echo "bench-vm: FAILED (exit $?): $*" | tee -a "$out/failed.txt" >&2
	}
}

# perftest: one latency or bandwidth tool between the two devices, as JSON.
perftest() {
	local tool=$1 label=$2 n=${PT_N:-1000} sz=${PT_SIZE:-64} sp line _
	local need=3,5,6,8,9 tries=3 wait=60
	# PT_OPTIONAL: one try, and no result is listed, not fatal.
	local inner="1 2 3 4 5"
	[ -n "${PT_OPTIONAL:-}" ] && tries=1 && wait=30 && inner="1 2"
	shift 2
	case $tool in *_bw) need=4,5 ;; esac
	line=
	# The server needs a moment to listen, and serves one client: retry
	# the client while it lives, start it again when it has gone.
	for _ in $(seq 1 "$tries"); do
		timeout $((wait * 2)) "$tool" -R -d "$d0" -F -s "$sz" -n "$n" "$@" \
			>>"$out/stderr.log" 2>&1 &
		sp=$!
		for _ in $inner; do
			sleep 1
			line=$(timeout "$wait" "$tool" -R -d "$d1" -F -s "$sz" -n "$n" \
				"$@" --source_ip "$a1" "$a0" 2>>"$out/stderr.log" |
				awk -v need="$need" -v sz="$sz" '
				function num(x) { return x ~ /^[0-9]+(\.[0-9]+)?$/ }
				$1 == sz && NF >= 5 {
					# the fields used must be numbers (a failed
					# run prints inf or nan)
					n = split(need, f, ",")
					for (i = 1; i <= n; i++)
						if (!num($(f[i]))) exit
					print; exit
				}') || true
			[ -n "$line" ] && break
			kill -0 "$sp" 2>/dev/null || break
		done
		kill "$sp" 2>/dev/null || true
		wait "$sp" 2>/dev/null || true
		[ -n "$line" ] && break
	done
	if [ -z "$line" ] && [ -n "${PT_OPTIONAL:-}" ]; then
		echo "bench-vm: FAILED: $tool -s $sz gave no result" |
			tee -a "$out/failed.txt" >&2
		return 0
	fi
	[ -n "$line" ] || die "$tool gave no result"
	case $tool in
	*_lat)
		# bytes iters t_min t_max t_typical t_avg t_stdev p99 p99.9
		echo "$line" | awk -v t="$tool" -v l="$label" '{
			printf "{\"bench\":\"perftest\",\"tool\":\"%s\",\"label\":\"%s\",\"size\":%d,\"min_us\":%s,\"typical_us\":%s,\"avg_us\":%s,\"p99_us\":%s,\"p999_us\":%s}\n", t, l, $1, $3, $5, $6, $8, $9 }' >>"$res"
		;;
	*)
		# bytes iters BW_peak BW_avg MsgRate(Mpps)
		echo "$line" | awk -v t="$tool" -v l="$label" '{
			printf "{\"bench\":\"perftest\",\"tool\":\"%s\",\"label\":\"%s\",\"size\":%d,\"mbps\":%s,\"mpps\":%s}\n", t, l, $1, $4, $5 }' >>"$res"
		;;
	esac
}

# callgrind on one side of a run: dumps OUT/cg-LABEL.PID.N.
cgv() {
	echo valgrind --tool=callgrind --collect-atstart=no \
		"--callgrind-out-file=$out/cg-$1.%p"
}

# Like run, retried while the server side is still starting (valgrind).
retry_run() {
	local i
	for i in $(seq 1 60); do
		if timeout 600 "$@" --json --quiet >>"$res" 2>>"$out/stderr.log"; then
			return 0
		fi
		sleep 1
	done
	echo "bench-vm: FAILED: $*" | tee -a "$out/failed.txt" >&2
}

: >"$out/stderr.log"

log "perftest (the transport's own limit)"
perftest ib_send_lat send_lat
perftest ib_write_lat write_lat
perftest ib_read_lat read_lat
perftest ib_send_bw send_bw -n 20000

log "RDMA primitives as the engine uses them (dagger-rdma-lat)"
"$b/bench/dagger-rdma-lat" -n 1000 -B -j >>"$res" 2>>"$out/stderr.log" ||
	die "dagger-rdma-lat failed"

# One engine on device 0; hosts attach from device 1 (the client) and
# device 0 (the server), so every ring access crosses the link.
log "dagger: one engine, client on $d1, server on $d0"
engine --listen "$a0" --port 7481 --id 1
wait_port "$a0" 7481
bg "$bench" server --wait 60 --engine "$a0:7481" --src "$a0" --yield --label server-echo
sleep 1
common=(--engine "$a0:7481" --src "$a1" --yield --duration "$dur" --warmup "$warm")
run "$bench" client "${common[@]}" --label lat-echo --cdf "$out/cdf-dagger.txt"
run "$bench" client "${common[@]}" --loopback --label lat-loopback
run "$bench" client "${common[@]}" --window 16 --label tput-w16
# Open loop at fractions of the closed-loop peak just measured.
peak=$(tail -n 1 "$res" | sed -n 's/.*"krps":\([0-9.]*\).*/\1/p')
for f in 0.1 0.25 0.5 0.75 0.9 1.1; do
	rate=$(awk -v p="$peak" -v f="$f" 'BEGIN { r = p * 1000 * f; printf "%d", r < 10 ? 10 : r }')
	run "$bench" client "${common[@]}" --rate "$rate" --window 256 \
		--label "open-$f"
done
log "dagger: scaling (client threads, connections, sizes)"
for t in 1 2 4; do
	run "$bench" client "${common[@]}" --threads "$t" --window 8 \
		--label "scale-threads-$t"
done
conns="1 10 100 1000"
[ -n "$quick" ] && conns="1 100"
for c in $conns; do
	run "$bench" client "${common[@]}" --conns "$c" --window 8 \
		--label "scale-conns-$c"
done
sizes="64 1024 8192 65536"
[ -n "$quick" ] && sizes="64 8192"
for s in $sizes; do
	run "$bench" client "${common[@]}" --size "$s" --label "size-lat-$s"
	run "$bench" client "${common[@]}" --size "$s" --window 4 \
		--label "size-tput-$s"
done
stop_bg

log "dagger: server threads"
for st in 1 2; do
	engine --listen "$a0" --port 7482 --id 1
	wait_port "$a0" 7482
	bg "$bench" server --wait 60 --engine "$a0:7482" --src "$a0" --yield \
		--server-threads "$st" --label "server-threads-$st"
	sleep 1
	run "$bench" client --engine "$a0:7482" --src "$a1" --yield \
		--duration "$dur" --warmup "$warm" --threads 2 --window 8 \
		--label "scale-sthreads-$st"
	stop_bg
done

# Threading models: dispatch threads (handlers on the thread that polls
# the flow) against a worker pool behind them, with more connections than
# server threads, at 1, 10 and 100 us of handler work: CPU work (spin) and
# work that waits (sleep: storage, a device).
log "dagger: threading models (1 server thread; dispatch vs 4 workers)"
works="1000 10000 100000"
for kind in spin sleep; do
	ksw=()
	[ "$kind" = sleep ] && ksw=(--work-sleep)
	for model in dispatch pool; do
		wsw=()
		[ "$model" = pool ] && wsw=(--workers 4)
		engine --listen "$a0" --port 7491 --id 1
		wait_port "$a0" 7491
		bg "$bench" server --wait 60 --engine "$a0:7491" --src "$a0" \
			--yield --server-threads 1 "${wsw[@]}" "${ksw[@]}" \
			--label "server-$model-$kind"
		sleep 1
		for w in $works; do
			run "$bench" client --engine "$a0:7491" --src "$a1" \
				--yield --duration "$dur" --warmup "$warm" \
				--conns 8 --window 8 --work-ns "$w" \
				--label "model-$model-$kind-$w"
		done
		stop_bg
	done
done

log "dagger: two engines (client -> engine A -> engine B -> server)"
engine --listen "$a0" --port 7483 --id 1
engine --listen "$a1" --port 7484 --id 2
wait_port "$a0" 7483
wait_port "$a1" 7484
bg "$bench" server --wait 60 --engine "$a0:7483" --src "$a0" --yield --label server-2eng
sleep 1
run "$bench" client --engine "$a1:7484" --src "$a1" --remote "$a0:7483" \
	--yield --duration "$dur" --warmup "$warm" --label lat-two-engines
stop_bg

log "dagger: local backend at both ends, engines linked over RDMA"
bg "$bench_free" local --listen "$a0:7485" --server-only --yield
wait_port "$a0" 7485
run "$bench_free" local --listen "$a1" --remote "$a0:7485" --yield \
	--duration "$dur" --warmup "$warm" --label lat-local-both-ends
stop_bg

log "host-driven baseline (SEND/RECV, no engine)"
bg "$hostrpc" server --listen "$a0" --port 7486 --yield --label hostrpc-server
sleep 1
hcommon=(--connect "$a0:7486" --src "$a1" --yield --duration "$dur" --warmup "$warm")
run "$hostrpc" client "${hcommon[@]}" --label lat-echo --cdf "$out/cdf-hostrpc.txt"
run "$hostrpc" client "${hcommon[@]}" --window 16 --label tput-w16
peak=$(tail -n 1 "$res" | sed -n 's/.*"krps":\([0-9.]*\).*/\1/p')
for f in 0.1 0.25 0.5 0.75 0.9 1.1; do
	rate=$(awk -v p="$peak" -v f="$f" 'BEGIN { r = p * 1000 * f; printf "%d", r < 10 ? 10 : r }')
	run "$hostrpc" client "${hcommon[@]}" --rate "$rate" --window 256 \
		--label "open-$f"
done
stop_bg

# ---- interface modes and idle cost, with the engines' own counters read
# through their control sockets (dagger-ctl stats --json).
ctl=$b/nic/dagger-ctl
ctldir=$(mktemp -d)
# One JSON object of an engine's totals: reads, rpcs_tx, doorbells, wakes,
# its sleeps and its trace hops' p50 (us).
# An engine busy attaching (large regions register slowly on rxe) may
# miss the control call's 5 s: asked again, three times in all.
ctl_snap() {
	local j k
	for k in 1 2 3; do
		j=$("$ctl" --ctl "$1" stats --json) && [ -n "$j" ] && break
	done
	printf '%s' "$j" | python3 -c '
import json, sys
d = json.load(sys.stdin)["engine"]
t = d["totals"]
print(json.dumps({"reads": t["reads"], "rpcs_tx": t["rpcs_tx"],
                  "doorbells": t["doorbells"], "wakes": t["wakes"],
                  "sleeps": d["sleeps"],
                  "trace_server_p50_us": d["trace"]["server"]["p50_us"],
                  "trace_server_n": d["trace"]["server"]["count"],
                  "trace_remote_p50_us": d["trace"]["remote"]["p50_us"],
                  "trace_remote_n": d["trace"]["remote"]["count"]}))'
}
# Emits {"bench":"ctl", label, before/after snapshots} as one line.
ctl_emit() {
	printf '{"bench":"ctl","label":"%s","before":%s,"after":%s}\n' \
		"$1" "$2" "$3" >>"$res"
}
# CPU ticks (user + system, 1/100 s) a process used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Each mode with the hosts' default settings (spin, then sleep), as the
# demo runs: latency with every 10th call traced, throughput at window 16,
# and the engine's READs, doorbells and wake-ups per RPC.
log "dagger: interface modes, one engine"
for m in poll doorbell push; do
	sock=$ctldir/mode-$m.ctl
	engine --listen "$a0" --port 7492 --id 1 --ctl "$sock"
	wait_port "$a0" 7492
	bg "$bench" server --wait 60 --engine "$a0:7492" --src "$a0" \
		--mode "$m" --label "server-mode-$m"
	sleep 1
	s0=$(ctl_snap "$sock")
	run "$bench" client --engine "$a0:7492" --src "$a1" --mode "$m" \
		--duration "$dur" --warmup "$warm" --trace 10 \
		--label "mode-lat-$m"
	s1=$(ctl_snap "$sock")
	ctl_emit "mode-lat-$m" "$s0" "$s1"
	run "$bench" client --engine "$a0:7492" --src "$a1" --mode "$m" \
		--duration "$dur" --warmup "$warm" --window 16 \
		--label "mode-tput-$m"
	s2=$(ctl_snap "$sock")
	ctl_emit "mode-tput-$m" "$s1" "$s2"
	stop_bg
	# The same hosts never sleeping (--yield: they spin and give the
	# core away; one CPU for both): the wake-ups' share of the latency.
	engine --listen "$a0" --port 7492 --id 1 --ctl "$sock"
	wait_port "$a0" 7492
	bg "$bench" server --wait 60 --engine "$a0:7492" --src "$a0" \
		--mode "$m" --yield --label "server-mode-yield-$m"
	sleep 1
	s0=$(ctl_snap "$sock")
	run "$bench" client --engine "$a0:7492" --src "$a1" --mode "$m" \
		--yield --duration "$dur" --warmup "$warm" --trace 10 \
		--label "mode-lat-yield-$m"
	ctl_emit "mode-lat-yield-$m" "$s0" "$(ctl_snap "$sock")"
	stop_bg
done
log "dagger: interface modes, two engines"
for m in poll doorbell push; do
	engine --listen "$a0" --port 7493 --id 1 --ctl "$ctldir/two-b-$m.ctl"
	engine --listen "$a1" --port 7494 --id 2 --ctl "$ctldir/two-a-$m.ctl"
	wait_port "$a0" 7493
	wait_port "$a1" 7494
	bg "$bench" server --wait 60 --engine "$a0:7493" --src "$a0" \
		--mode "$m" --label "server-two-$m"
	sleep 1
	sa0=$(ctl_snap "$ctldir/two-a-$m.ctl")
	sb0=$(ctl_snap "$ctldir/two-b-$m.ctl")
	run "$bench" client --engine "$a1:7494" --src "$a1" \
		--remote "$a0:7493" --mode "$m" --duration "$dur" \
		--warmup "$warm" --trace 10 --label "mode-two-$m"
	ctl_emit "mode-two-a-$m" "$sa0" "$(ctl_snap "$ctldir/two-a-$m.ctl")"
	ctl_emit "mode-two-b-$m" "$sb0" "$(ctl_snap "$ctldir/two-b-$m.ctl")"
	stop_bg
done

# Large messages: an echo of 4 KiB .. 8 MiB at window 1 and 4 through one
# engine (doorbell mode, the default; above 4 KiB the payloads travel
# outside the rings, the engine moving each with one READ and one
# WRITE), beside ib_read_bw and ib_write_bw of the same size in this run.
log "dagger: large messages (4 KiB .. 8 MiB), and perftest's bandwidth"
for sz in 4096 65536 1048576 8388608; do
	n=$((20971520 / sz))
	[ "$n" -gt 1000 ] && n=1000
	[ "$n" -lt 5 ] && n=5
	PT_OPTIONAL=1 PT_SIZE=$sz PT_N=$n perftest ib_read_bw "read_bw_$sz"
	PT_OPTIONAL=1 PT_SIZE=$sz PT_N=$n perftest ib_write_bw "write_bw_$sz"
done
engine --listen "$a0" --port 7498 --id 1
wait_port "$a0" 7498
bg "$bench" server --wait 60 --engine "$a0:7498" --src "$a0" \
	--payload 67108864 --label server-large
sleep 1
for sz in 4096 65536 1048576 8388608; do
	for w in 1 4; do
		run "$bench" client --engine "$a0:7498" --src "$a1" \
			--size "$sz" --window "$w" --duration "$dur" \
			--warmup "$warm" --label "large-$sz-w$w"
	done
done
stop_bg

# The main job as a user runs it (deploy/demo's script: its own engines,
# dagger-echo client and server, every setting at its default), set
# beside this run's figures for the same path in the report.
log "the main job (deploy/demo's exchange)"
if sh "$(dirname "$0")/demo.sh" "$b" >"$out/demo.txt" 2>>"$out/stderr.log"; then
	awk '/^RPC p50 / { printf "{\"bench\":\"demo\",\"p50_us\":%s,\"prim_us\":%s}\n", $3, $10 }' \
		"$out/demo.txt" >>"$res"
else
	echo "bench-vm: FAILED: deploy/lib/demo.sh" | tee -a "$out/failed.txt" >&2
fi

# Idle cost: an engine with N idle server flows attached (dagger-echo
# servers of 64 dispatch threads each, which sleep), in doorbell mode and
# in poll mode: the engine's CPU and READs over a quiet interval.
log "dagger: idle engines (1, 16, 64, 256 idle flows)"
idle_s=10
[ -n "$quick" ] && idle_s=3
for m in doorbell poll; do
	for nf in 1 16 64 256; do
		sock=$ctldir/idle-$m-$nf.ctl
		engine --listen "$a0" --port 7495 --id 1 --ctl "$sock"
		epid=${pids[-1]}
		wait_port "$a0" 7495
		left=$nf
		while [ "$left" -gt 0 ]; do
			t=$((left > 64 ? 64 : left))
			# A service of its own per 64 flows (one takes
			# at most 64 servers, and is one tenant's).
			DG_MODE=$m "$b/examples/dagger-echo" server \
				--engine "$a0:7495" --threads "$t" \
				--service "idle-$left" \
				>>"$out/stderr.log" 2>&1 &
			pids+=($!)
			left=$((left - t))
		done
		sleep 3
		s0=$(ctl_snap "$sock")
		c0=$(ticks "$epid")
		sleep "$idle_s"
		c1=$(ticks "$epid")
		s1=$(ctl_snap "$sock")
		printf '{"bench":"idle","mode":"%s","flows":%d,"seconds":%d,"ticks":%d,"before":%s,"after":%s}\n' \
			"$m" "$nf" "$idle_s" "$((c1 - c0))" "$s0" "$s1" >>"$res"
		# What a client of this engine sees beside them.
		run "$bench" client --engine "$a0:7495" --src "$a1" --loopback \
			--duration "$dur" --warmup "$warm" \
			--label "idle-client-$m-$nf"
		stop_bg
	done
done

# A client beside a server of 1 or 64 dispatch threads (63 of them idle),
# and the price of waking: calls at a low rate to a server that sleeps
# between them against one that never sleeps (--busy-poll).
log "dagger: idle server threads and the price of waking"
for st in 1 64; do
	engine --listen "$a0" --port 7496 --id 1
	wait_port "$a0" 7496
	bg "$bench" server --wait 60 --engine "$a0:7496" --src "$a0" \
		--server-threads "$st" --label "server-idle-threads-$st"
	sleep 2
	run "$bench" client --engine "$a0:7496" --src "$a1" \
		--duration "$dur" --warmup "$warm" \
		--label "idle-threads-$st"
	stop_bg
done
for bp in sleep busy; do
	sw=()
	[ "$bp" = busy ] && sw=(--busy-poll)
	engine --listen "$a0" --port 7497 --id 1 "${sw[@]}"
	wait_port "$a0" 7497
	bg "$bench" server --wait 60 --engine "$a0:7497" --src "$a0" \
		"${sw[@]}" --label "server-wake-$bp"
	sleep 1
	run "$bench" client --engine "$a0:7497" --src "$a1" "${sw[@]}" \
		--rate 200 --window 16 --duration "$dur" --warmup "$warm" \
		--label "wake-$bp"
	stop_bg
done

log "host CPU per RPC: callgrind on the client, then on the server"
# Only this part's dumps: the native part's (cg-native-*) stay for the report.
rm -f "$out"/cg-dagger-* "$out"/cg-hostrpc-*
engine --listen "$a0" --port 7487 --id 1
wait_port "$a0" 7487
bg "$bench" server --wait 60 --engine "$a0:7487" --src "$a0" --yield --label cg-server-peer
sleep 1
run $(cgv dagger-client) "$bench_free" client --engine "$a0:7487" --src "$a1" \
	--callgrind --requests "$cg_n" --label cg-dagger-client
stop_bg
engine --listen "$a0" --port 7488 --id 1
wait_port "$a0" 7488
bg $(cgv dagger-server) "$bench_free" server --engine "$a0:7488" --src "$a0" \
	--callgrind --label cg-dagger-server
retry_run "$bench" client --engine "$a0:7488" --src "$a1" --requests "$cg_n" \
	--label cg-dagger-server-peer
stop_bg
bg "$hostrpc" server --listen "$a0" --port 7489 --label cg-hostrpc-server-peer
sleep 1
run $(cgv hostrpc-client) "$hostrpc" client --connect "$a0:7489" --src "$a1" \
	--callgrind --requests "$cg_n" --label cg-hostrpc-client
stop_bg
bg $(cgv hostrpc-server) "$hostrpc" server --listen "$a0" --port 7490 \
	--callgrind --label cg-hostrpc-server
retry_run "$hostrpc" client --connect "$a0:7490" --src "$a1" \
	--requests "$cg_n" --label cg-hostrpc-server-peer
stop_bg
log "done: $(wc -l <"$res") results in $res"
