#!/bin/sh
# The benchmark tools on the local backend (no devices): a loopback run and
# an echo run through an in-process server must report every call with no
# error; bad arguments must give exit 2 and a message, never a run.
# usage: bench_local.sh BUILD_DIR
b=$1/bench
fail() { echo "FAIL: $*"; exit 1; }
json() { # field value from a JSON line
	sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"
}
out=$("$b/dagger-bench" local --loopback --requests 3000 --window 8 \
	--json --quiet) || fail "loopback run exited $?"
echo "$out"
[ "$(echo "$out" | json rpcs)" = 3000 ] || fail "loopback: rpcs != 3000"
[ "$(echo "$out" | json errors)" = 0 ] || fail "loopback: errors"
out=$("$b/dagger-bench" local --requests 2000 --window 4 --size 3000 \
	--server-threads 2 --json --quiet --yield) || fail "echo run exited $?"
echo "$out"
[ "$(echo "$out" | json rpcs)" = 2000 ] || fail "echo: rpcs != 2000"
[ "$(echo "$out" | json errors)" = 0 ] || fail "echo: errors"
# Large calls (outside the rings, built in place) into payload areas
# that hold one at a time: BUSY answers are sent again (back-pressure),
# none is an error.
out=$("$b/dagger-bench" local --requests 200 --window 4 --size 65536 \
	--payload 65536 --json --quiet --yield) || fail "busy run exited $?"
echo "$out"
[ "$(echo "$out" | json rpcs)" = 200 ] || fail "busy: rpcs != 200"
[ "$(echo "$out" | json errors)" = 0 ] || fail "busy: errors"
out=$("$b/dagger-bench" local --requests 20 --window 4 --size 8388608 \
	--json --quiet --yield) || fail "8 MiB run exited $?"
echo "$out"
[ "$(echo "$out" | json rpcs)" = 20 ] || fail "8 MiB: rpcs != 20"
[ "$(echo "$out" | json errors)" = 0 ] || fail "8 MiB: errors"
out=$("$b/dagger-bench" local --requests 300 --work-ns 20000 --json \
	--quiet --yield) || fail "work run exited $?"
[ "$(echo "$out" | json errors)" = 0 ] || fail "work: errors"
# open loop, duration-based, with a warm-up
out=$("$b/dagger-bench" local --loopback --rate 20000 --window 64 \
	--duration 0.5 --warmup 0.2 --json --quiet) || fail "open loop exited $?"
echo "$out"
[ "$(echo "$out" | json mode)" = '"open"' ] || fail "open: mode"
[ "$(echo "$out" | json errors)" = 0 ] || fail "open: errors"
"$b/dagger-pingpong" -n 100000 -w 8 | grep -q '"mrps"' || fail "pingpong"
for args in "client" "local --size 8388609" "local --threads 0" \
	"local --window 5000" "local --work-ns 10 --size 2" \
	"client --engine nowhere" "local --slots 1000" "local --bogus" \
	"local --rate abc" "frobnicate --engine 1.2.3.4:5"; do
	# shellcheck disable=SC2086
	"$b/dagger-bench" $args >/dev/null 2>err.txt
	rc=$?
	[ $rc -eq 2 ] || fail "dagger-bench $args: exit $rc, want 2"
	[ -s err.txt ] || fail "dagger-bench $args: no message"
done
rm -f err.txt
for args in "" "client" "client --connect 1.2.3.4" "server" \
	"client --connect 1.2.3.4:5 --window 0"; do
	# shellcheck disable=SC2086
	"$b/dagger-hostrpc" $args >/dev/null 2>&1
	rc=$?
	[ $rc -eq 2 ] || fail "dagger-hostrpc $args: exit $rc, want 2"
done
echo "bench tools: ok"
