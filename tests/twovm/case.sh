#!/usr/bin/env bash
# One two-machine test case, one side of it: run on both machines by
# deploy/two-machines through deploy/rxe-vm2, which exports DG_MACHINE (A or
# B), DG_ADDR_A, DG_ADDR_B and DG_SYNC_DIR (shared by both machines).
#
# usage: tests/twovm/case.sh CASE BUILD_DIR
#   a  client + engine A on machine A; engine B + echo and kvs servers on
#      machine B: echo RPCs across the link (64 B and 3000 B) and kvs
#      set/get and its Get benchmark, latency tables;
#   b  remote core: host A's engine runs on machine B; an echo server and
#      a client on A both attach to it, so the engine polls A's rings and
#      writes A's memory across the link;
#   c  machine B is killed (its VM, from the host) while a caller on A
#      calls the server on B: that caller gets an error within a bound
#      (printed), engine A declares its link to B down (its keepalive
#      timeout) so that calls to B are answered UNREACHABLE at once
#      within 10 s of that first error, later calls to B fail without
#      hanging, and engine A keeps
#      serving another caller on A (to a server on A) with no error
#      before, during and after.
# Machine B signals readiness with $DG_SYNC_DIR/b.ready and runs until
# machine A is done ($DG_SYNC_DIR/a.done, written by A and by rxe-vm2).
# Every wait is bounded; any failure exits 1 with one line saying why,
# after the logs of the programs started here.
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: case.sh a|b|c BUILD_DIR" >&2; exit 2; }
tc=$1 b=$2
for v in DG_MACHINE DG_ADDR_A DG_ADDR_B DG_SYNC_DIR; do
	[[ -n ${!v:-} ]] || { echo "case.sh: $v is not set (run through deploy/rxe-vm2)" >&2; exit 2; }
done
me=$DG_MACHINE A=$DG_ADDR_A B=$DG_ADDR_B sync=$DG_SYNC_DIR
nic=$b/nic/dagger-nic echo=$b/examples/dagger-echo caller=$b/tests/twovm/twovm-caller
kvs=$b/examples/dagger-kvs
for x in "$nic" "$echo" "$caller" "$kvs"; do
	[[ -x $x ]] || { echo "case.sh: $x not built" >&2; exit 2; }
done
PA=7471 PB=7472 # engine ports (each machine has its own kernel)
# Case c: a caller's first error must come this soon after machine B's
# death: its calls time out after 2 s; the rest is slack for emulation.
ERR_BOUND=30
logs=$(mktemp -d)
pids=() names=()

say() { printf '[%s %s] %s\n' "$tc" "$me" "$*"; }
show_logs() {
	local f
	for f in "$logs"/*.log; do
		[[ -s $f ]] || continue
		echo "--- $(basename "$f"):"
		tail -n 40 "$f"
	done
}
fail() {
	show_logs
	printf 'case %s, machine %s: FAIL: %s\n' "$tc" "$me" "$*" >&2
	exit 1
}

# stop_all: TERM every program started here, newest first; KILL what is
# left after 10 s. Engines print their counters on the way out.
stop_all() {
	local i p n
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
	done
	for ((n = 0; n < 100; n++)); do
		p=0
		for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && p=1; done
		((p)) || break
		sleep 0.1
	done
	for i in "${pids[@]}"; do
		kill -KILL "$i" 2>/dev/null || true
		wait "$i" 2>/dev/null || true
	done
	pids=()
}
on_exit() {
	local rc=$?
	stop_all
	[[ $me == A ]] && : >"$sync/a.done"
	rm -rf "$logs"
	exit "$rc"
}
trap on_exit EXIT

# start NAME COMMAND...: run in the background, output in NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$logs/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
	LAST=$!
}

# wait_line NAME PID PATTERN S: until NAME.log shows PATTERN; fail when the
# program exits first or S seconds pass.
wait_line() {
	local name=$1 pid=$2 pat=$3 s=$4 n
	for ((n = 0; n < s * 10; n++)); do
		grep -q "$pat" "$logs/$name.log" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || fail "$name exited before printing '$pat'"
		sleep 0.1
	done
	fail "$name did not print '$pat' within $s s"
}

# wait_file FILE S WHAT: until FILE exists, at most S seconds.
wait_file() {
	local n
	for ((n = 0; n < $2 * 10; n++)); do
		[[ -e $1 ]] && return 0
		sleep 0.1
	done
	fail "$3 (no $1 after $2 s)"
}

# wait_exit PID S NAME: wait for PID to end within S seconds, set RC to its
# status; kill it and fail when it does not.
wait_exit() {
	local pid=$1 s=$2 n
	for ((n = 0; n < s * 10; n++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			RC=0
			wait "$pid" || RC=$?
			return 0
		fi
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	fail "$3 still running after $s s: it hangs"
}

engine() { # engine ADDR PORT ID [OPTION...]
	start "engine-$3" "$nic" --listen "$1" --port "$2" --id "$3" "${@:4}"
	wait_line "engine-$3" "$LAST" 'listening on' 60
	say "engine $3 listening on $1:$2"
}
server() { # server NAME ENGINE_ADDR:PORT
	start "$1" "$echo" server --engine "$2"
	wait_line "$1" "$LAST" 'serving' 60
	say "$1 attached to the engine at $2"
}
alive() { # alive NAME PID: fail unless PID still runs
	kill -0 "$2" 2>/dev/null || fail "$1 died"
}

# Machine B's side of a and c: an engine and an echo server; then wait.
b_serve() {
	local eb srv kvsrv
	engine "$B" "$PB" 2
	eb=$LAST
	if [[ $1 == with-server ]]; then
		server server-b "$B:$PB"
		srv=$LAST
		start kvs-b "$kvs" server --engine "$B:$PB"
		wait_line kvs-b "$LAST" 'serving' 60
		kvsrv=$LAST
		say "kvs-b attached to the engine at $B:$PB"
	fi
	: >"$sync/b.ready"
	say "ready; waiting for machine A"
	wait_file "$sync/a.done" 1200 "machine A never finished"
	alive "engine 2" "$eb"
	[[ -n ${srv:-} ]] && alive "server-b" "$srv"
	[[ -n ${kvsrv:-} ]] && alive "kvs-b" "$kvsrv"
	stop_all
	say "engine 2's counters at exit:"
	grep -v '^dagger-nic: listening' "$logs/engine-2.log" || true
}

# rel_kill: copy stdin, each time stamp (seconds since the epoch) followed
# by its offset from the kill request, t_kill.
rel_kill() {
	awk -v k="$t_kill" '{
		for (i = 1; i <= NF; i++)
			if ($i ~ /^1[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]\.[0-9]+[),:]?$/) {
				v = $i
				sub(/[),:]$/, "", v)
				$i = $i sprintf(" [kill %+.2f s]", v - k)
			}
		print
	}'
}

wait_b_ready() {
	wait_file "$sync/b.ready" 300 "machine B never became ready"
}

client() { # client ARGS...: dagger-echo client, output shown, must succeed
	timeout 600 "$echo" client --wait 60 "$@" || fail "echo client $* failed (exit $?)"
}

case $tc/$me in
a/B) b_serve with-server ;;
a/A)
	engine "$A" "$PA" 1
	wait_b_ready
	say "echo RPCs: client (A) -> engine 1 (A) -> link -> engine 2 (B) -> server (B)"
	client --engine "$A:$PA" --remote "$B:$PB" -n 1000 -s 64
	client --engine "$A:$PA" --remote "$B:$PB" -n 200 -s 3000
	say "kvs: client (A) -> engine 1 (A) -> link -> engine 2 (B) -> kvs server (B)"
	timeout 600 "$kvs" client --engine "$A:$PA" --remote "$B:$PB" --wait 60 \
		-c "set twovm-key across-the-link" -c "get twovm-key" \
		-c "populate 50" -c "bench 300" >"$logs/kvs-a.log" 2>&1 ||
		fail "kvs client failed (exit $?)"
	cat "$logs/kvs-a.log"
	grep -qx '"across-the-link"' "$logs/kvs-a.log" ||
		fail "kvs get did not return the value set across the link"
	;;
b/B) b_serve no-server ;;
b/A)
	wait_b_ready
	say "remote core: host A's engine runs on machine B"
	server server-a "$B:$PB"
	say "echo RPCs: client (A) -> link -> engine 2 (B) -> link -> server (A)"
	client --engine "$B:$PB" -n 500 -s 64
	client --engine "$B:$PB" -n 100 -s 3000
	;;
c/B) b_serve with-server ;;
c/A)
	engine "$A" "$PA" 1 --verbose
	ea=$LAST
	server server-a "$A:$PA"
	wait_b_ready
	say "before the kill: A -> B works"
	client --engine "$A:$PA" --remote "$B:$PB" -n 100 -s 64
	# The local tenant: a caller to the server on A, through engine 1,
	# all along; any error fails it.
	# Its calls may take up to 10 s (an emulated machine on a busy host
	# stalls for seconds); it prints its slowest call and when.
	start local-caller "$caller" --engine "$A:$PA" --until-file "$logs/stop-local" \
		--ready-file "$logs/local.ready" --ready-after 20 --call-timeout 10000 \
		--max-s 900
	lc=$LAST
	# The victim: calls the server on B until the first error.
	start victim "$caller" --engine "$A:$PA" --remote "$B:$PB" --until-error \
		--ready-file "$logs/victim.ready" --ready-after 50 --call-timeout 2000 \
		--after-s 10 --max-s 300
	vc=$LAST
	wait_file "$logs/local.ready" 120 "the local caller made no calls"
	wait_file "$logs/victim.ready" 120 "the caller to machine B made no calls"
	t_kill=$EPOCHREALTIME
	: >"$sync/kill-b"
	say "asked the host to kill machine B"
	wait_file "$sync/b-killed" 30 "the host did not kill machine B"
	wait_exit "$vc" 300 "the caller to machine B"
	rel_kill <"$logs/victim.log"
	((RC == 0)) || fail "the caller to machine B saw no error after B was killed"
	t_err=$(sed -n 's/^twovm-caller: first error at \([0-9.]*\) .*/\1/p' "$logs/victim.log")
	[[ -n $t_err ]] || fail "no first-error line from the caller to machine B"
	dt=$(awk -v a="$t_kill" -v e="$t_err" 'BEGIN { printf "%.2f", e - a }')
	say "first error $dt s after the kill request (bound: $ERR_BOUND s)"
	awk -v d="$dt" -v b="$ERR_BOUND" 'BEGIN { exit !(d <= b) }' ||
		fail "the caller to machine B got its first error $dt s after the kill, over $ERR_BOUND s"
	grep 'peer link' "$logs/engine-1.log" | sed 's/^/engine 1: /' || true
	grep -q 'peer link .* down' "$logs/engine-1.log" ||
		fail "engine 1 never declared its link to machine B down"
	grep -q 'the last: peer unreachable' "$logs/victim.log" ||
		fail "10 s after the first error, calls to machine B were still not answered UNREACHABLE"
	# A new caller to B: must fail, and not hang.
	t0=$EPOCHREALTIME
	set +e
	timeout 120 "$echo" client --engine "$A:$PA" --remote "$B:$PB" -n 3 -s 64 >"$logs/new-to-b.log" 2>&1
	rc=$?
	set -e
	((rc != 124)) || fail "a new client to machine B hung (killed after 120 s)"
	((rc != 0)) || fail "a new client to machine B succeeded, though B is dead"
	say "$(awk -v a="$t0" -v e="$EPOCHREALTIME" -v r="$rc" 'BEGIN { printf "a new client to machine B failed as it should (exit %d) in %.2f s:", r, e - a }')"
	grep -v '^ *$' "$logs/new-to-b.log" | head -n 3
	# Engine 1 still serves its other tenant.
	alive "engine 1" "$ea"
	: >"$logs/stop-local"
	wait_exit "$lc" 60 "the local caller"
	rel_kill <"$logs/local-caller.log"
	((RC == 0)) || fail "the local caller on A saw errors while or after B died"
	say "after B died, engine 1 still serves A's local tenants:"
	client --engine "$A:$PA" -n 300 -s 64
	alive "engine 1" "$ea"
	;;
*) echo "case.sh: unknown case '$tc' (a, b or c) or machine '$me'" >&2; exit 2 ;;
esac
say "PASS"
