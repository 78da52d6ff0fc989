#!/bin/sh
# dagger-kvs on the local backend (`dagger-kvs local`: engine, server and
# client in one process): every command's output, the shell on stdin,
# errors, and a short benchmark run (printed, not judged).
#   kvs_local.sh DAGGER_KVS [EMULATOR...]
# EMULATOR: what runs DAGGER_KVS when it is built for another machine.
kvs=$1
shift
emu=$*
rc=0
out=$(mktemp)
check() { # check NAME EXPECTED-OUTPUT EXPECTED-STATUS ARGS...
	name=$1 want=$2 wst=$3
	shift 3
	timeout 120 $emu "$kvs" local "$@" >"$out" 2>&1
	st=$?
	if [ $st -ne "$wst" ] || [ "$(cat "$out")" != "$want" ]; then
		echo "FAIL: $name (status $st, want $wst)"
		echo "--- want"; echo "$want"; echo "--- got"; cat "$out"
		rc=1
	else
		echo "ok: $name"
	fi
}
check "commands" 'OK
"one"
OK (replaced)
alpha: "two"
nope: (not found)
deleted
(not found)
(not found)
populated 20 keys (16-byte keys, 8-byte values)
"hijklmno"' 0 -c "set alpha one" -c "get alpha" -c "set alpha two" \
	-c "mget alpha nope" -c "del alpha" -c "get alpha" -c "del alpha" \
	-c "populate 20 8" -c "get key-000000000007"
check "shell" 'OK
"x\x01y"' 0 --threads 2 <<CMDS
set k $(printf 'x\001y')
get k
quit
get never-reached
CMDS
check "bad command" 'error: bad command "frob" (try help)' 1 -c frob
check "bad arguments" 'error: bad command "get" (try help)' 1 -c "get a b"
timeout 120 $emu "$kvs" local -c "populate 100" -c "bench 2000" || rc=1
rm -f "$out"
exit $rc
