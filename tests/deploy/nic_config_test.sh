#!/bin/sh
# dagger-nic's settings from a deployment description and from flags:
# --config/--engine resolve an engine (checked with --dry-run), flags on
# the command line override the file, --help documents both, a bad file
# or flag exits 2 with FILE:LINE or the flag named, and an engine that
# cannot listen exits 1 with one line naming the address, the port and
# the cause. Runs without RDMA: where this machine has no RDMA device the
# cause is "No such device", on an RDMA machine the address is one no
# device has ("Cannot assign requested address").
# usage: nic_config_test.sh BUILD_DIR
set -u
nic="$1/nic/dagger-nic"
T=$(mktemp -d /tmp/dg-nic-config.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
bad() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}
# expect STATUS PATTERN ARGS...: dagger-nic ARGS exits STATUS, prints PATTERN.
expect() {
	want=$1 pat=$2
	shift 2
	out=$("$nic" "$@" 2>&1)
	got=$?
	echo "\$ dagger-nic $*"
	echo "$out" | sed 's/^/    /'
	[ "$got" -eq "$want" ] || bad "dagger-nic $* exited $got, not $want"
	echo "$out" | grep -q -- "$pat" || bad "dagger-nic $* did not print \"$pat\""
}

cat >"$T/d.yaml" <<'EOF'
machines:
  - {name: a, rdma_addr: 198.51.100.1}
  - {name: b, rdma_addr: 198.51.100.2, rdma_device: no-such-dev0}
engines:
  - name: one
    machine: a
    port: 7600
    batch: 8
    cpu: 0
    spin_us: 20
    peer_timeout_ms: 1500
    poll_max_us: 250
  - {name: two, machine: b, listen: 0.0.0.0, id: 7, verbose: true}
EOF

expect 0 "--config FILE" --help
expect 0 "Flags given on the command line override FILE" --help
expect 0 "^listen 198.51.100.1$" --config "$T/d.yaml" --engine one --dry-run
expect 0 "^port 7600$" --config "$T/d.yaml" --engine one --dry-run
expect 0 "^batch 8$" --config "$T/d.yaml" --engine one --dry-run
expect 0 "^spin_us 20$" --config "$T/d.yaml" --engine one --dry-run
expect 0 "^peer_timeout_ms 1500$" --config "$T/d.yaml" --engine one -n
expect 0 "^peer_timeout_ms 3000$" --config "$T/d.yaml" --engine two -n
expect 0 "^poll_max_us 250$" --config "$T/d.yaml" --engine one -n
expect 0 "^poll_max_us 1000$" --config "$T/d.yaml" --engine two -n
expect 0 "^poll_max_us 7$" --config "$T/d.yaml" --engine one -n \
	--poll-max-us 7
expect 0 "^peer_timeout_ms 800$" --config "$T/d.yaml" --engine one -n \
	--peer-timeout 800
expect 0 "^id 7$" --config "$T/d.yaml" --engine two -n
expect 0 "^listen 0.0.0.0$" --config "$T/d.yaml" --engine two -n
expect 0 "^verbose 1$" --config "$T/d.yaml" --engine two -n
# Flags override the file.
expect 0 "^port 9100$" --config "$T/d.yaml" --engine one -n --port 9100
expect 0 "^listen 10.1.2.3$" -l 10.1.2.3 --config "$T/d.yaml" --engine one -n
expect 0 "^batch 4$" --config "$T/d.yaml" --engine one -n -b 4
expect 0 "^cpu 1$" --config "$T/d.yaml" --engine one -n --cpu 1
expect 0 "^id 3$" --config "$T/d.yaml" --engine two -n -i 3
# Flags alone, as before.
expect 0 "^port 7471$" --listen 10.0.0.1 -n

# Bad files and flags: exit 2, the cause named.
printf 'machines: []\nengines: []\n' >"$T/empty.yaml"
expect 2 "empty.yaml:1: \"machines\" lists no machine" --config "$T/empty.yaml"
sed 's/port: 7600/port: 76000/' "$T/d.yaml" >"$T/port.yaml"
expect 2 "port.yaml:7: engine: \"port\" is 76000, out of range" \
	--config "$T/port.yaml" --engine one
expect 2 "No such file or directory" --config "$T/none.yaml"
sed 's/peer_timeout_ms: 1500/peer_timeout_ms: 5/' "$T/d.yaml" >"$T/pt.yaml"
expect 2 "pt.yaml:11: engine: \"peer_timeout_ms\" is 5, out of range" \
	--config "$T/pt.yaml" --engine one
expect 2 "names 2 engines: choose one with --engine NAME" --config "$T/d.yaml"
expect 2 "no engine \"three\"" --config "$T/d.yaml" --engine three
expect 2 "\-\-engine needs --config" --engine one
expect 2 "bad --port \"x\"" --listen 10.0.0.1 --port x
expect 2 "bad --batch \"0\"" --listen 10.0.0.1 --batch 0
expect 2 "bad --peer-timeout \"10\"" --listen 10.0.0.1 --peer-timeout 10
expect 2 "bad --poll-max-us \"0\"" --listen 10.0.0.1 --poll-max-us 0
expect 2 "usage" --port 7000
expect 2 "unexpected argument" --listen 10.0.0.1 extra

# Cannot start: exit 1, one line naming the address, port and cause.
expect 1 "dagger-nic: cannot listen on 198.51.100.1 port 7600: " \
	--config "$T/d.yaml" --engine one --cpu 0
echo "$out" | grep -q '(engine "one", .*d.yaml:5)' ||
	bad "the failure does not name the engine and FILE:LINE"
[ "$(echo "$out" | wc -l)" -eq 1 ] || bad "more than one line for one failure"
expect 2 "orig.yaml:7: engine: \"port\" is 76000" --config "$T/port.yaml" \
	--config-label orig.yaml --engine one
expect 1 "RDMA device \"no-such-dev0\" of machine \"b\" is not here" \
	--config "$T/d.yaml" --engine two
expect 1 "cannot pin to CPU 1000" --listen 198.51.100.1 --cpu 1000

[ $fails -eq 0 ] || {
	echo "$fails check(s) failed"
	exit 1
}
echo "dagger-nic configuration checks passed"
