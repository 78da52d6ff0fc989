#!/bin/sh
# The systemd unit template as configured by the build
# (BUILD/deploy/src/dagger-nic@.service): systemd-analyze verify accepts
# an instance of it, and its ExecStart line, with the instance name and a
# description filled in, is a command line dagger-nic accepts (run with
# --dry-run, which resolves the settings and exits). Skips (77) where
# systemd-analyze is missing.
# usage: systemd_test.sh BUILD_DIR SOURCE_DIR
set -u
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
unit="$build/deploy/src/dagger-nic@.service"
nic="$build/nic/dagger-nic"
command -v systemd-analyze >/dev/null ||
	{ echo "SKIP: no systemd-analyze"; exit 77; }
[ -r "$unit" ] || { echo "FAIL: no $unit"; exit 1; }
T=$(mktemp -d /tmp/dg-systemd-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0

# The installed path of dagger-nic does not exist here: point at the build.
bindir=$(sed -n 's,^ExecStart=\(.*\)/dagger-nic .*,\1,p' "$unit")
[ -n "$bindir" ] || { echo "FAIL: no ExecStart=.../dagger-nic in $unit"; exit 1; }
sed "s,^ExecStart=$bindir/dagger-nic,ExecStart=$nic," "$unit" >"$T/dagger-nic@nic-alpha.service"
if ! out=$(cd "$T" && systemd-analyze verify ./dagger-nic@nic-alpha.service 2>&1) ||
	[ -n "$out" ]; then
	echo "FAIL: systemd-analyze verify: $out"
	fails=$((fails + 1))
fi
for want in 'LimitMEMLOCK=infinity' 'Restart=on-failure' \
	'--config ${DAGGER_DEPLOYMENT} --engine %i' \
	'Environment=DAGGER_DEPLOYMENT=/etc/dagger/deployment.yaml'; do
	grep -qF -- "$want" "$unit" || {
		echo "FAIL: $unit has no \"$want\""
		fails=$((fails + 1))
	}
done

# ExecStart as systemd would expand it for instance nic-beta.
cmd=$(sed -n 's/^ExecStart=//p' "$T/dagger-nic@nic-alpha.service" |
	sed -e "s,\${DAGGER_DEPLOYMENT},$src/deploy/launch-example.yaml," \
		-e 's,%i,nic-beta,' -e 's,\$DAGGER_NIC_ARGS,--dry-run,')
echo "ExecStart: $cmd"
# shellcheck disable=SC2086 # split as systemd splits it
out=$($cmd 2>&1)
echo "$out"
echo "$out" | grep -qx "listen 10.10.0.2" && echo "$out" | grep -qx "cpu 2" || {
	echo "FAIL: ExecStart did not resolve engine nic-beta"
	fails=$((fails + 1))
}
[ $fails -eq 0 ] || exit 1
echo "systemd unit checks passed"
