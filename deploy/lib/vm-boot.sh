# shellcheck shell=bash disable=SC2154 # (the caller's variables, below)
# The guest kernel and initramfs of deploy/rxe-vm and deploy/rxe-vm2: Debian's
# kernel package, fetched once with apt-get download, unpacked, and a
# busybox initramfs with the modules VM_MODULES names (built once, cached).
# Sourced, never run. The caller sets, before sourcing: HERE (deploy/),
# CACHE (the cache directory, with debs/ in it), VM_BOOT_ROOT (where the
# builds go, one directory per kernel package and build key), VM_MODULES,
# CACHE_FORMAT, BUSYBOX, refresh (0|1), tmp_paths (an array its cleanup
# removes), die and rxe_info. Then: KPKG=$(pick_kernel_pkg);
# ensure_boot "$KPKG" sets BOOT (the directory holding vmlinuz, vmlinux
# when it could be unpacked, initrd.gz, kver, pkg).

# Key of a build: everything that goes into the initramfs besides the kernel.
build_key=$(cat "$HERE/lib/vm-bootstrap.sh" <(echo "$VM_MODULES $CACHE_FORMAT") | sha256sum | cut -c1-12)

# The kernel package to use: the one already built or downloaded (so a
# cached run never touches apt), else the newest that apt offers.
newest_apt_kernel() {
	local p
	for p in $(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
		grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -rV || true); do
		# (Not piped into grep -q: with pipefail its early exit would
		# fail the pipeline through SIGPIPE.)
		if [[ $(apt-cache policy "$p" 2>/dev/null) == *"Candidate: "[0-9]* ]]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
pick_kernel_pkg() {
	local d
	if [[ -n ${DG_RXE_KERNEL_PKG:-} ]]; then echo "$DG_RXE_KERNEL_PKG"; return; fi
	if ((!refresh)); then
		d=$(find "$VM_BOOT_ROOT" -mindepth 2 -maxdepth 2 -path "*-$build_key/ready" 2>/dev/null | sort -V | tail -n 1)
		if [[ -n $d ]]; then cat "$(dirname "$d")/pkg"; return; fi
		d=$(find "$CACHE/debs" -maxdepth 1 -name 'linux-image-6.1.0-*-amd64_*.deb' 2>/dev/null | sort -V | tail -n 1)
		if [[ -n $d ]]; then d=${d##*/}; echo "${d%%_*}"; return; fi
	fi
	if newest_apt_kernel; then return; fi
	# A fresh machine may never have run apt-get update.
	if [[ $EUID -eq 0 ]]; then
		rxe_info "no linux-image-6.1.0-*-amd64 known to apt; running apt-get update"
		timeout 600 apt-get update -qq >/dev/null 2>&1 || true
		newest_apt_kernel && return
	fi
	die "apt knows no linux-image-6.1.0-*-amd64 package (run apt-get update; Debian 12 archive needed)"
}

# build_boot PKG DIR: download PKG (unless cached), unpack it, build the
# initramfs, and rename the result into DIR. Runs under the cache lock.
build_boot() {
	local pkg=$1 dest=$2 tmp deb kver line ko need m want base word i
	# Whatever tmp.* is here is left from a killed build: we hold the lock.
	rm -rf "$CACHE"/tmp.*
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	tmp_paths+=("$tmp")

	deb=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
	if [[ -z $deb ]]; then
		rxe_info "downloading $pkg (once; cached in $CACHE)"
		mkdir "$tmp/dl"
		# The sandbox user _apt cannot write to a root-only cache; we only
		# download a file, so drop the sandbox instead of warning about it.
		(cd "$tmp/dl" && timeout 900 apt-get download -q -o APT::Sandbox::User=root "$pkg") \
			>"$tmp/dl.log" 2>&1 || die "apt-get download $pkg failed: $(grep -E '^(E|W):' "$tmp/dl.log" | tail -n 1)"
		deb=$(find "$tmp/dl" -name "${pkg}_*.deb" | head -n 1)
		[[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
		mv "$deb" "$CACHE/debs/" # same file system: atomic
		deb=$CACHE/debs/${deb##*/}
	fi

	rxe_info "building the guest kernel and initramfs from ${deb##*/}"
	dpkg-deb -x "$deb" "$tmp/x" || die "cannot unpack $deb"
	kver=$(find "$tmp/x/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)
	[[ -n $kver && -f $tmp/x/boot/vmlinuz-$kver ]] || die "$pkg holds no kernel image"
	# The package ships no modules.dep.
	depmod -b "$tmp/x" "$kver" || die "depmod failed on $pkg"

	local ir=$tmp/initramfs
	mkdir -p "$ir"/{bin,modules}
	cp "$BUSYBOX" "$ir/bin/busybox"
	install -m 0755 "$HERE/lib/vm-bootstrap.sh" "$ir/init"
	: >"$ir/modules/order"
	# The point of it all first, for the clearest message.
	modprobe -d "$tmp/x" -S "$kver" --show-depends rdma_rxe >/dev/null 2>&1 ||
		die "kernel $kver ($pkg) has no rdma_rxe module; choose another kernel package (DG_RXE_KERNEL_PKG)"
	for want in $VM_MODULES; do
		m=${want%%:*} need=required
		[[ $want == *:optional ]] && need=optional
		if ! line=$(modprobe -d "$tmp/x" -S "$kver" --show-depends "$m" 2>&1); then
			[[ $need == optional ]] && continue
			die "kernel $kver ($pkg) has no $m module"
		fi
		# "insmod /path/x.ko" lines, dependencies first, the module asked
		# for last; "builtin x" lines need nothing. Each module goes in
		# once. Only the module asked for may be optional, not its deps.
		local kos=()
		while read -r word ko _; do
			[[ $word == insmod ]] && kos+=("$ko")
		done <<<"$line"
		for i in "${!kos[@]}"; do
			base=${kos[i]##*/}
			grep -qF "$base " "$ir/modules/order" && continue
			cp "${kos[i]}" "$ir/modules/$base"
			if ((i == ${#kos[@]} - 1)); then
				echo "$base $need" >>"$ir/modules/order"
			else
				echo "$base required" >>"$ir/modules/order"
			fi
		done
	done
	grep -q '^rdma_rxe.ko ' "$ir/modules/order" || die "kernel $kver ($pkg) has no rdma_rxe module"

	mkdir "$tmp/out"
	(cd "$ir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 >"$tmp/out/initrd.gz"
	cp "$tmp/x/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
	# Under TCG the kernel spends ~4 s unpacking itself. With CONFIG_PVH
	# qemu boots the uncompressed ELF directly: keep an unpacked copy
	# (the xz payload inside the bzImage). Optional: vmlinuz still works.
	if grep -qx 'CONFIG_PVH=y' "$tmp/x/boot/config-$kver" 2>/dev/null; then
		local off
		off=$(LC_ALL=C grep -abo -m 1 $'\xfd7zXZ' "$tmp/out/vmlinuz" 2>/dev/null || true)
		off=${off%%$'\n'*}
		off=${off%%:*}
		# --single-stream: stop at the end of the payload, ignore what follows.
		if [[ $off =~ ^[0-9]+$ ]] &&
			xz -dc --single-stream <(tail -c +$((off + 1)) "$tmp/out/vmlinuz") >"$tmp/out/vmlinux" 2>/dev/null &&
			[[ $(head -c 4 "$tmp/out/vmlinux") == $'\x7fELF' ]]; then
			:
		else
			rm -f "$tmp/out/vmlinux"
		fi
	fi
	echo "$pkg" >"$tmp/out/pkg"
	echo "$kver" >"$tmp/out/kver"
	touch "$tmp/out/ready"
	mv -T "$tmp/out" "$dest" || die "cannot move the build into $dest"
	rm -rf "$tmp"
	# Only the newest package is worth keeping for rebuilds.
	find "$CACHE/debs" -maxdepth 1 -name '*.deb' ! -name "${pkg}_*" -delete 2>/dev/null || true
	# Builds for an older rxe-vm (other key) unused for a day: drop them.
	find "$VM_BOOT_ROOT" -mindepth 1 -maxdepth 1 ! -name "*-$build_key" -mmin +1440 \
		-exec rm -rf {} + 2>/dev/null || true
}

# Serialise builders with a lock; readers need none because a build only
# becomes visible, complete, by rename.
ensure_boot() {
	local pkg=$1 dest lockfd
	dest=$VM_BOOT_ROOT/$pkg-$build_key
	[[ -e $dest/ready ]] && { BOOT=$dest; return; }
	exec {lockfd}>"$CACHE/lock"
	if ! flock -n "$lockfd"; then
		rxe_info "waiting for another rxe-vm to finish filling the cache"
		flock -w 1800 "$lockfd" || die "gave up waiting for the cache lock $CACHE/lock" 124
	fi
	[[ -e $dest/ready ]] || build_boot "$pkg" "$dest"
	exec {lockfd}>&-
	# shellcheck disable=SC2034 # (for the caller)
	BOOT=$dest
}
