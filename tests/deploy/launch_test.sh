#!/bin/sh
# dagger-launch up/status/down on a two-machine description, without RDMA:
# machine "b" is reached through tests/deploy/fake-ssh (runs the command
# here), engines are tests/deploy/fake-nic (the real dagger-nic resolves
# the settings, then it idles), tenants are plain commands. Checks:
#  - up starts engines then tenants, waits for "ready", runs a oneshot and
#    prints its output (placeholders and DG_* settings filled in), kills
#    what the oneshot left in the background; status says running /
#    exited 0; a second up leaves what runs alone; --machine acts on one
#    machine;
#  - a process that dies shows as dead (status exits 3);
#  - down stops everything, including a tenant that ignores SIGTERM
#    (SIGKILL after stop_timeout) and its children: no process of the
#    deployment is left;
#  - the promised errors, each naming the cause, and nothing left running:
#    a typo in the file (FILE:LINE), an engine that cannot bind (the real
#    dagger-nic on machine b: its error and log tail; machine a's engine
#    already started is stopped again), a CPU the engine cannot be pinned
#    to, an unreachable machine (nothing started), a oneshot past its
#    timeout, a tenant that fails to start, a missing program, bad command
#    lines.
# usage: launch_test.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/dg-launch-test.XXXXXX)
name=lt$$
export DG_REAL_NIC="$build/nic/dagger-nic" DG_FAKE_SSH_LOG="$T/ssh.log"
unset DG_SSH
fails=0

mkdir -p "$T/bin" "$T/realbin"
ln -s "$build/deploy/src/dagger-launch" "$T/bin/dagger-launch"
ln -s "$here/fake-nic" "$T/bin/dagger-nic"
ln -s "$build/deploy/src/dagger-launch" "$T/realbin/dagger-launch"
ln -s "$build/nic/dagger-nic" "$T/realbin/dagger-nic"
L="$T/bin/dagger-launch"

# Processes of this deployment (the launcher exports DG_DEPLOYMENT).
leftovers() {
	grep -lsxzF "DG_DEPLOYMENT=$name" /proc/[0-9]*/environ |
		sed 's,/environ$,,'
	:
}

cleanup() {
	"$L" down "$T/d.yaml" >/dev/null 2>&1
	for p in $(leftovers); do kill -9 "${p#/proc/}" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

bad() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# expect STATUS FILE PATTERN CMD...: CMD exits STATUS, its output has PATTERN.
expect() {
	want=$1 out=$2 pat=$3
	shift 3
	"$@" >"$out" 2>&1
	got=$?
	[ "$got" -eq "$want" ] || bad "$* exited $got, not $want"
	grep -q -- "$pat" "$out" || bad "$* did not print \"$pat\""
	sed 's/^/    /' "$out"
}

no_leftovers() {
	left=$(leftovers)
	[ -z "$left" ] || {
		bad "$1: processes left behind: $left"
		ps -o pid,pgid,args -p "$(echo "$left" | sed 's,/proc/,,' | tr '\n' ',' | sed 's/,$//')"
		# So that one failure does not fail the cases after it.
		"$L" down "$T/d.yaml" >/dev/null 2>&1
	}
}

# description MACHINE_B_EXTRA: writes $T/d.yaml
description() {
	cat >"$T/d.yaml" <<EOF
# launcher test deployment
name: $name
run_dir: $T/run
bin_dir: $T/bin
ssh: $here/fake-ssh -o BatchMode=yes
start_timeout: 20
stop_timeout: 2
machines:
  - {name: a, rdma_addr: 127.0.0.1}
  - {name: b, host: $1, rdma_addr: 127.0.0.2$2}
engines:
  - {name: ea, machine: a, port: 7001}
  - {name: eb, machine: b, port: 7002, cpu: 0}
services:
  - {name: svc, policy: random, threads: 3}
tenants:
  - name: srv
    machine: b
    engine: eb
    service: svc
    command: [sh, -c, 'sleep 1; echo ready; sleep 600 & wait']
    ready: ready
  - name: stubborn
    machine: a
    engine: ea
    command: [sh, -c, 'trap "" TERM; echo up; while :; do sleep 1; done']
  - name: once
    machine: a
    engine: ea
    service: svc
    oneshot: true
    command: "echo once: {name} at {engine} remote {remote} {threads} {policy} env \$DG_SERVICE/\$DG_LB_POLICY/\$DG_THREADS; DG_MARK=orphan$name sleep 600 &"
    timeout: 60
EOF
}

echo "== up, status, down"
description hostb ""
expect 0 "$T/out" "once: once at 127.0.0.1:7001 remote 127.0.0.2:7002 3 random env svc/random/3" \
	"$L" up "$T/d.yaml"
grep -q hostb "$T/ssh.log" || bad "machine b was not reached over ssh"
grep -lsxzF "DG_MARK=orphan$name" /proc/[0-9]*/environ &&
	bad "a oneshot's background child outlived it"
expect 0 "$T/out" "exited 0" "$L" status "$T/d.yaml"
for p in "a +engine +ea +running" "a +tenant +stubborn +running" \
	"b +engine +eb +running" "b +tenant +srv +running"; do
	grep -Eq "^$p" "$T/out" || bad "status has no line \"$p\""
done
# A second up leaves what runs alone.
expect 0 "$T/out" "engine ea: already running" "$L" up "$T/d.yaml"
# A process that dies is reported dead.
kill -9 "$(cut -d' ' -f1 "$T/run/b/tenant.srv.pid")"
expect 3 "$T/out" "tenant  srv  *dead" "$L" status "$T/d.yaml"
expect 0 "$T/out" "tenant stubborn: killed" "$L" down "$T/d.yaml"
no_leftovers "down"
expect 3 "$T/out" "engine  ea  *stopped" "$L" status "$T/d.yaml"
# --machine acts on one machine only.
expect 0 "$T/out" "engine ea: running" "$L" up "$T/d.yaml" --machine a
[ -e "$T/run/b/engine.eb.pid" ] && bad "up --machine a started machine b's engine"
expect 0 "$T/out" "engine ea: stopped" "$L" down "$T/d.yaml" --machine a
no_leftovers "down --machine a"

echo "== a typo in the description"
sed 's/port: 7002/prot: 7002/' "$T/d.yaml" >"$T/typo.yaml"
expect 2 "$T/out" "typo.yaml:13: engine: unknown key \"prot\"" \
	"$L" up "$T/typo.yaml"
[ -d "$T/run" ] && [ -n "$(ls "$T/run"/*/*.pid 2>/dev/null)" ] &&
	bad "a bad description started something"

echo "== an engine that cannot bind (the real dagger-nic, machine b)"
description hostb ", bin_dir: $T/realbin"
sed -i 's/name: eb, machine: b, port: 7002/name: eb, machine: b, listen: 192.0.2.77, port: 7002/' "$T/d.yaml"
expect 1 "$T/out" "engine \"eb\" on machine \"b\" failed to start (exit status 1)" \
	"$L" up "$T/d.yaml"
grep -q "dagger-nic: cannot listen on 192.0.2.77 port 7002" "$T/out" ||
	bad "the engine's own error is not shown"
grep -q "(engine \"eb\", $T/d.yaml:13)" "$T/out" ||
	bad "the engine's error does not name the description's FILE:LINE"
grep -q "engine ea: stopped" "$T/out" || bad "engine ea was not stopped again"
no_leftovers "failed up"

echo "== a CPU the engine cannot be pinned to"
description hostb ", bin_dir: $T/realbin"
sed -i 's/port: 7002, cpu: 0/port: 7002, cpu: 1023/' "$T/d.yaml"
expect 1 "$T/out" "dagger-nic: cannot pin to CPU 1023" "$L" up "$T/d.yaml"
no_leftovers "failed pin"

echo "== an unreachable machine"
description unreachable-b ""
expect 1 "$T/out" "machine \"b\" is unreachable: .*No route to host" \
	"$L" up "$T/d.yaml"
grep -q "running" "$T/out" && bad "something started before machine b was reached"
[ "$(grep -c unreachable "$T/out")" -eq 1 ] || bad "more than one error for one cause"
expect 1 "$T/out" "machine \"b\" is unreachable" "$L" status "$T/d.yaml"
no_leftovers "unreachable"

echo "== a oneshot tenant that does not finish within its timeout"
description hostb ""
sed -i -e 's/    timeout: 60/    timeout: 1/' \
	-e "s/; DG_MARK=orphan$name sleep 600 \&/; sleep 600/" "$T/d.yaml"
expect 1 "$T/out" "tenant \"once\" on machine \"a\" did not finish within 1 s" \
	"$L" up "$T/d.yaml"
no_leftovers "oneshot timeout"

echo "== a tenant that fails to start"
description hostb ""
sed -i "s/'sleep 1; echo ready; sleep 600 \& wait'/'echo no database >\&2; exit 3'/" "$T/d.yaml"
expect 1 "$T/out" "tenant \"srv\" on machine \"b\" failed to start (exit status 3)" \
	"$L" up "$T/d.yaml"
grep -q "| no database" "$T/out" || bad "the tenant's log tail is not shown"
no_leftovers "failed tenant"

echo "== a program that is not installed"
description hostb ""
sed -i 's/command: \[sh, -c, .trap/command: [no-such-program-dg, -c, '"'"'trap/' "$T/d.yaml"
expect 1 "$T/out" "tenant \"stubborn\" cannot run: no-such-program-dg: not found" \
	"$L" up "$T/d.yaml"
no_leftovers "missing program"

echo "== bad command lines"
expect 2 "$T/out" "unknown command" "$L" start "$T/d.yaml"
expect 2 "$T/out" "no machine \"zz\"" "$L" status "$T/d.yaml" --machine zz
expect 2 "$T/out" "No such file or directory" "$L" up "$T/none.yaml"

if [ $fails -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all launcher checks passed"
