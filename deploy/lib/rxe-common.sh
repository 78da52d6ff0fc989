# shellcheck shell=bash
# Helpers shared by deploy/rxe-up, rxe-down, rxe-run and rxe-vm.
# Sourced, never run. Callers set RXE_PROG (used as the message prefix)
# before sourcing and run under `set -euo pipefail`.

# shellcheck disable=SC2034 # (constants for the scripts that source this)
# The one-box "two hosts" topology: two addresses from TEST-NET-1
# (RFC 5737, never routed), one soft-RoCE device on each.
RXE_ADDR0=192.0.2.1
RXE_ADDR1=192.0.2.2
RXE_PREFIXLEN=24
RXE_DEV0=rxe0
RXE_DEV1=rxe1
RXE_VETH0=dg-veth0
RXE_VETH1=dg-veth1
RXE_NS0=dg-ns0
RXE_NS1=dg-ns1
# Policy routing table for the "over the wire" routes (4791: the RoCEv2 port).
RXE_TABLE=4791

RXE_PROG=${RXE_PROG:-rxe}
RXE_QUIET=${RXE_QUIET:-0}

# One line on stderr, then exit (status 1 unless given as $2).
rxe_die() {
	printf '%s: %s\n' "$RXE_PROG" "$1" >&2
	exit "${2:-1}"
}

rxe_warn() {
	printf '%s: %s\n' "$RXE_PROG" "$*" >&2
}

rxe_info() {
	[[ $RXE_QUIET == 1 ]] || printf '%s: %s\n' "$RXE_PROG" "$*" >&2
}

rxe_need_root() {
	[[ $EUID -eq 0 ]] || rxe_die "must be run as root ($1)"
}

# rxe_need_cmd CMD PACKAGE: fail with an install hint when CMD is missing.
rxe_need_cmd() {
	command -v "$1" >/dev/null 2>&1 ||
		rxe_die "'$1' not found (apt-get install $2)"
}

# True when the running kernel can do soft-RoCE: the module is loaded
# already, or modprobe knows where to find it (it may be built in too).
rxe_kernel_has_rxe() {
	[[ -d /sys/module/rdma_rxe ]] && return 0
	command -v modprobe >/dev/null 2>&1 || return 1
	modprobe -n -q rdma_rxe 2>/dev/null
}

# Print the soft-RoCE devices, one name a line, sorted. rxe devices are
# the ones with a `parent` attribute naming their netdev.
rxe_list_devices() {
	local d
	for d in /sys/class/infiniband/*; do
		[[ -e $d/parent ]] || continue
		printf '%s\n' "${d##*/}"
	done | sort
}

# rxe_dev_ipv4 DEV: the first IPv4-mapped GID of port 1 (the address
# rdma_cm reaches DEV by), as a dotted quad. Reads sysfs only, so it works
# whatever network namespace the netdev is in. Fails when there is none.
rxe_dev_ipv4() {
	local f gid
	for f in $(printf '%s\n' /sys/class/infiniband/"$1"/ports/1/gids/* | sort -t/ -k9 -n); do
		gid=$(cat "$f" 2>/dev/null) || continue
		# ::ffff:a.b.c.d is written 0000:0000:0000:0000:0000:ffff:aabb:ccdd
		if [[ $gid =~ ^0000:0000:0000:0000:0000:ffff:([0-9a-f]{2})([0-9a-f]{2}):([0-9a-f]{2})([0-9a-f]{2})$ ]]; then
			printf '%d.%d.%d.%d\n' "0x${BASH_REMATCH[1]}" "0x${BASH_REMATCH[2]}" \
				"0x${BASH_REMATCH[3]}" "0x${BASH_REMATCH[4]}"
			return 0
		fi
	done
	return 1
}

# rxe_wait_active DEV SECONDS: rxe fills in the IPv4 GID (index 1) and goes
# ACTIVE asynchronously after `rdma link add`; wait so that callers can
# connect at once instead of racing the kernel.
rxe_wait_active() {
	local dev=$1 tries=$(($2 * 10)) state
	while ((tries-- > 0)); do
		state=$(cat "/sys/class/infiniband/$dev/ports/1/state" 2>/dev/null || true)
		if [[ $state == *ACTIVE* ]] && rxe_dev_ipv4 "$dev" >/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}
