#!/bin/sh
# dagger-launch with real engines over RDMA (run through deploy/rxe-run,
# which exports DG_RXE_ADDR0/1 and DG_RXE_DEV0/1): machine "a" (local)
# runs engine A and the echo client, machine "b" (reached through
# tests/deploy/fake-ssh) runs engine B and an echo server with 2 threads.
# up must print the client's latency table with 0 errors (client ->
# engine A -> engine B -> server), status must say running, down must
# leave no process. Then an engine on an address no RDMA device has must
# fail with dagger-nic's own error, and nothing may be left running.
# usage: launch_rxe.sh BUILD_DIR
[ -n "${DG_RXE_ADDR0:-}" ] && [ -n "${DG_RXE_ADDR1:-}" ] ||
	{ echo "SKIP: DG_RXE_ADDR0/1 not set"; exit 77; }
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/dg-launch-rxe.XXXXXX)
name=lr$$
pa=$((20000 + $$ % 20000))
pb=$((pa + 1))
fails=0
unset DG_SSH
mkdir -p "$T/bin"
for p in deploy/src/dagger-launch nic/dagger-nic examples/dagger-echo; do
	ln -s "$build/$p" "$T/bin/"
done
L="$T/bin/dagger-launch"

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

dev0=
dev1=
[ -n "${DG_RXE_DEV0:-}" ] && dev0="rdma_device: $DG_RXE_DEV0, "
[ -n "${DG_RXE_DEV1:-}" ] && dev1="rdma_device: $DG_RXE_DEV1, "
{
	echo "name: $name"
	echo "run_dir: $T/run"
	echo "bin_dir: $T/bin"
	echo "ssh: $here/fake-ssh"
	echo "start_timeout: 240"
	echo "machines:"
	echo "  - {name: a, ${dev0}rdma_addr: $DG_RXE_ADDR0}"
	echo "  - {name: b, host: machine-b, ${dev1}rdma_addr: $DG_RXE_ADDR1}"
	echo "engines:"
	echo "  - {name: nic-a, machine: a, port: $pa}"
	echo "  - {name: nic-b, machine: b, port: $pb}"
	echo "services:"
	echo "  - {name: echo, policy: rr, threads: 2}"
	echo "tenants:"
	echo "  - {name: server, machine: b, engine: nic-b, app: echo-server}"
	echo "  - name: client"
	echo "    machine: a"
	echo "    engine: nic-a"
	echo "    app: echo-client"
	echo "    args: [-n, 300, -s, 64]"
} >"$T/d.yaml"
cat "$T/d.yaml"

echo "== up: echo through two engines"
timeout 900 "$L" up "$T/d.yaml" >"$T/out" 2>&1 || bad "up failed"
cat "$T/out"
grep -Eq '^ +300 +0 ' "$T/out" || bad "no latency table with 300 RPCs, 0 errors"
"$L" status "$T/d.yaml" >"$T/out" 2>&1 || bad "status: not all running"
cat "$T/out"
grep -Eq 'b +tenant +server +running' "$T/out" || bad "server not running"
"$L" down "$T/d.yaml" >"$T/out" 2>&1 || bad "down failed"
cat "$T/out"
[ -z "$(leftovers)" ] || bad "processes left behind: $(leftovers)"

echo "== an engine on an address no RDMA device has"
sed -i "s/{name: nic-b, machine: b, port: $pb}/{name: nic-b, machine: b, listen: 198.51.100.7, port: $pb}/" "$T/d.yaml"
timeout 600 "$L" up "$T/d.yaml" >"$T/out" 2>&1 && bad "up succeeded"
cat "$T/out"
grep -q 'engine "nic-b" on machine "b" failed to start' "$T/out" ||
	bad "no launcher error naming the engine"
grep -q "dagger-nic: cannot listen on 198.51.100.7 port $pb" "$T/out" ||
	bad "no engine error naming the address and port"
[ -z "$(leftovers)" ] || bad "processes left behind: $(leftovers)"

[ $fails -eq 0 ] || {
	echo "$fails check(s) failed"
	exit 1
}
echo "all launcher rxe checks passed"
