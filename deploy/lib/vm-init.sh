#!/bin/busybox sh
# shellcheck shell=sh
# Guest side of deploy/rxe-vm: PID 1 after vm-bootstrap.sh, run by busybox
# sh from the per-run directory /dg-run (a read-write 9p share of a
# directory in the host's rxe-vm cache). The host wrote there:
#   params     DG_VM_* settings (sourced below)
#   cmd.sh     the caller's command: environment, ulimit, cd, exec
# (DG_VM_SETUP: rxe, two devices on a veth pair, for deploy/rxe-vm; nic, one
# device on the virtio NIC, for each machine of deploy/rxe-vm2; none)
# and reads back what this writes there:
#   booted     the guest is set up, the command is starting (the host's
#              boot timeout stops at this)
#   status     the command's exit status
#   error      one line: why the guest setup failed
# The command's stdout and stderr go to a virtio serial port (dg.out),
# which the host streams to its stdout; ttyS0 is the console (kernel and
# setup messages), which the host keeps in a log file.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
R=/dg-run
H=/host

off() {
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	sleep 10
}
# Progress on the console (kept in the host's log): where a failed or
# slow boot stopped.
step() { echo "dg-init: $(cut -d' ' -f1 /proc/uptime) $*"; }
fail() {
	echo "$*" >"$R/error"
	echo "DG-FAIL: $*"
	off
}

# shellcheck disable=SC1091
. "$R/params" || fail "cannot read $R/params"
NINEP="trans=virtio,version=9p2000.L,msize=262144"

if [ "$DG_VM_MODE" = probe ]; then
	# Accelerator probe: reaching this point is all the host wants to know.
	echo probe >"$R/booted"
	off
fi

# The host's file tree, read-only. cache=loose: it does not change under
# us during a run, and caching makes executing host binaries much faster.
step "mounting the host tree"
mkdir -p "$H"
mount -t 9p -o "ro,$NINEP,cache=loose" dghost "$H" || fail "cannot mount the host tree (9p tag dghost)"
[ -x "$H/bin/bash" ] || fail "no /bin/bash in the host tree"

mount -t proc proc "$H/proc" || fail "mount proc"
mount -t sysfs sysfs "$H/sys" || fail "mount sysfs"
# devtmpfs: /dev/infiniband/uverbsN and rdma_cm appear by themselves.
mount -t devtmpfs devtmpfs "$H/dev" || fail "mount devtmpfs"
mkdir -p "$H/dev/pts" "$H/dev/shm"
# What udev/systemd would add: bash's <(...) needs /dev/fd.
ln -sf /proc/self/fd "$H/dev/fd"
ln -sf /proc/self/fd/0 "$H/dev/stdin"
ln -sf /proc/self/fd/1 "$H/dev/stdout"
ln -sf /proc/self/fd/2 "$H/dev/stderr"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$H/dev/pts" || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs "$H/dev/shm" || fail "mount /dev/shm"
# The host tree is read-only: scratch space must be the guest's own.
for d in tmp var/tmp; do
	[ -d "$H/$d" ] && { mount -t tmpfs -o mode=1777 tmpfs "$H/$d" || fail "mount tmpfs on /$d"; }
done
mount -t tmpfs -o mode=0755 tmpfs "$H/run" || fail "mount tmpfs on /run"

# Read-write shares (the caller's working tree, --share dirs), each at its
# host path. Mount points under the tmpfs dirs must be made first.
# cache=mmap: coherent enough, and shared writable mmap works.
i=0
while [ "$i" -lt "${DG_VM_NSHARES:-0}" ]; do
	eval "p=\$DG_VM_SHARE$i"
	mkdir -p "$H$p" 2>/dev/null
	mount -t 9p -o "$NINEP,cache=mmap" "dgshare$i" "$H$p" || fail "cannot mount $p read-write (9p tag dgshare$i)"
	i=$((i + 1))
done

# The run directory inside the chroot too, for cmd.sh.
mkdir -p "$H/run/dg-rxe-vm"
mount --bind "$R" "$H/run/dg-rxe-vm" || fail "bind-mount the run directory"

step "network"
ip link set lo up || fail "cannot bring up lo"
[ -n "${DG_VM_HOSTNAME:-}" ] && hostname "$DG_VM_HOSTNAME"

# The two-host topology of deploy/rxe-up --veth (names and addresses come
# from params, i.e. from lib/rxe-common.sh), built with as few programs as
# possible: under software emulation every exec of a host binary costs
# 0.1-0.3 s, so rxe-up's careful idempotent checks would add seconds. The
# result is the same: a veth pair, an address on each end, an rxe device
# on each, and policy routing so that traffic between the two addresses
# crosses the veth pair (rxe1 -> dg-veth1 -> dg-veth0 -> rxe0) instead of
# being short-cut through lo onto one device: the local table moves from
# rule 0 to rule 100, and locally sent packets to either address look up
# a table routing each address out of the other end; accept_local lets
# the receiving end take packets from a local source address (ARP too).
# The host's ip and rdma run in the chroot by absolute path:
# busybox's chroot would run its own applets for names it knows, and its
# ip cannot make a veth pair. `rxe-vm --no-rxe` skips this, so that
# rxe-up itself can be tested in here.
wait_rxe() { # wait_rxe DEV: ACTIVE, with the IPv4-mapped GID at index 1
	n=0
	while [ "$n" -lt 100 ]; do
		st='' gid=''
		read -r st <"/sys/class/infiniband/$1/ports/1/state" 2>/dev/null
		read -r gid <"/sys/class/infiniband/$1/ports/1/gids/1" 2>/dev/null
		case "$st/$gid" in *ACTIVE/0000:0000:0000:0000:0000:ffff:*) return 0 ;; esac
		sleep 0.1
		n=$((n + 1))
	done
	return 1
}
if [ "$DG_VM_SETUP" = rxe ]; then
	step "creating $DG_VM_DEV0 and $DG_VM_DEV1"
	cat >"$H/run/dg-ip.batch" <<-EOF
		link add $DG_VM_VETH0 type veth peer name $DG_VM_VETH1
		addr add $DG_VM_ADDR0/$DG_VM_PREFIXLEN dev $DG_VM_VETH0
		addr add $DG_VM_ADDR1/$DG_VM_PREFIXLEN dev $DG_VM_VETH1
		link set $DG_VM_VETH0 up
		link set $DG_VM_VETH1 up
		rule add pref 100 lookup local
		rule del pref 0 lookup local
		route add $DG_VM_ADDR1/32 dev $DG_VM_VETH0 src $DG_VM_ADDR0 table $DG_VM_TABLE
		route add $DG_VM_ADDR0/32 dev $DG_VM_VETH1 src $DG_VM_ADDR1 table $DG_VM_TABLE
		rule add pref 10 iif lo to $DG_VM_ADDR0/32 lookup $DG_VM_TABLE
		rule add pref 11 iif lo to $DG_VM_ADDR1/32 lookup $DG_VM_TABLE
	EOF
	cat >"$H/run/dg-rdma.batch" <<-EOF
		link add $DG_VM_DEV0 type rxe netdev $DG_VM_VETH0
		link add $DG_VM_DEV1 type rxe netdev $DG_VM_VETH1
	EOF
	chroot "$H" /usr/sbin/ip -batch /run/dg-ip.batch >"$R/setup.out" 2>&1 ||
		fail "creating the veth pair failed: $(tail -n 1 "$R/setup.out")"
	for c in "$DG_VM_VETH0" "$DG_VM_VETH1"; do
		echo 1 >"/proc/sys/net/ipv4/conf/$c/accept_local"
		echo 0 >"/proc/sys/net/ipv4/conf/$c/rp_filter"
	done
	# Static neighbour entries: the first rdma_cm address resolution
	# after boot otherwise waits out its whole timeout for ARP.
	mac0=$(cat "/sys/class/net/$DG_VM_VETH0/address")
	mac1=$(cat "/sys/class/net/$DG_VM_VETH1/address")
	cat >"$H/run/dg-neigh.batch" <<-EOF
		neigh replace $DG_VM_ADDR0 lladdr $mac0 dev $DG_VM_VETH1 nud permanent
		neigh replace $DG_VM_ADDR1 lladdr $mac1 dev $DG_VM_VETH0 nud permanent
	EOF
	chroot "$H" /usr/sbin/ip -batch /run/dg-neigh.batch >"$R/setup.out" 2>&1 ||
		fail "static neighbour entries failed: $(tail -n 1 "$R/setup.out")"
	chroot "$H" /usr/bin/rdma -b /run/dg-rdma.batch >"$R/setup.out" 2>&1 ||
		fail "rdma link add failed: $(tail -n 1 "$R/setup.out")"
	wait_rxe "$DG_VM_DEV0" || fail "$DG_VM_DEV0 did not become ACTIVE with an IPv4 GID"
	wait_rxe "$DG_VM_DEV1" || fail "$DG_VM_DEV1 did not become ACTIVE with an IPv4 GID"
elif [ "$DG_VM_SETUP" = nic ]; then
	# One machine of deploy/rxe-vm2: its virtio NIC (found by its MAC; the
	# other machine is at the far end of the link) gets DG_VM_NIC_ADDR,
	# a static neighbour entry for the other machine (no ARP wait on the
	# first rdma_cm address resolution), and one rxe device, DG_VM_DEV0.
	step "creating $DG_VM_DEV0 on the virtio NIC"
	nic=
	for n in /sys/class/net/*; do
		[ "$(cat "$n/address" 2>/dev/null)" = "$DG_VM_NIC_MAC" ] && nic=${n##*/}
	done
	[ -n "$nic" ] || fail "no network interface with MAC $DG_VM_NIC_MAC (virtio_net missing?)"
	cat >"$H/run/dg-ip.batch" <<-EOF
		addr add $DG_VM_NIC_ADDR/$DG_VM_PREFIXLEN dev $nic
		link set $nic up
		neigh replace $DG_VM_PEER_ADDR lladdr $DG_VM_PEER_MAC dev $nic nud permanent
	EOF
	echo "link add $DG_VM_DEV0 type rxe netdev $nic" >"$H/run/dg-rdma.batch"
	chroot "$H" /usr/sbin/ip -batch /run/dg-ip.batch >"$R/setup.out" 2>&1 ||
		fail "setting up $nic failed: $(tail -n 1 "$R/setup.out")"
	chroot "$H" /usr/bin/rdma -b /run/dg-rdma.batch >"$R/setup.out" 2>&1 ||
		fail "rdma link add failed: $(tail -n 1 "$R/setup.out")"
	wait_rxe "$DG_VM_DEV0" || fail "$DG_VM_DEV0 did not become ACTIVE with an IPv4 GID"
fi

# The command's output channel: the virtio serial port named dg.out (no
# udev here to make /dev/virtio-ports/dg.out: find it through sysfs).
out=
for p in /sys/class/virtio-ports/*; do
	[ "$(cat "$p/name" 2>/dev/null)" = dg.out ] && out=/dev/${p##*/}
done
{ [ -n "$out" ] && [ -c "$out" ]; } || fail "no virtio serial port dg.out for the command's output"

cut -d' ' -f1 /proc/uptime >"$R/booted"
step "running the command"
chroot "$H" /bin/bash /run/dg-rxe-vm/cmd.sh </dev/null >"$out" 2>&1
echo "$?" >"$R/status"
step "command exited $(cat "$R/status")"
off
