#!/bin/busybox sh
# shellcheck shell=sh
# /init of the initramfs that deploy/rxe-vm builds (and caches): PID 1 in
# the throwaway guest. Deliberately small, because it is baked into the
# cache: it loads the kernel modules listed in /modules/order, mounts the
# per-run directory that the host shares over virtio-9p (tag dgrun) and
# hands over to the vm-init.sh found there, which is always the one of
# the rxe-vm that started this guest.
# Any failure prints a DG-FAIL line on the console (ttyS0, logged by the
# host) and powers off, which ends qemu (-no-reboot).

/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

off() {
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	sleep 10
}
fail() {
	echo "DG-FAIL: $*"
	off
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# "file.ko required|optional", dependencies first (made with modprobe
# --show-depends at build time).
while read -r ko need; do
	if ! insmod "/modules/$ko" 2>/tmp.insmod; then
		[ "$need" = optional ] || fail "insmod $ko: $(cat /tmp.insmod)"
	fi
done </modules/order

mkdir -p /dg-run
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 dgrun /dg-run ||
	fail "cannot mount the run directory (9p tag dgrun)"
[ -f /dg-run/vm-init.sh ] || fail "no vm-init.sh in the run directory"
exec /bin/sh /dg-run/vm-init.sh
