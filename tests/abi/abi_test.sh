#!/bin/sh
# The installed libraries export their public API and nothing else.
# After `cmake --install` into a staging prefix:
#  - libdagger.so: its dynamic symbols (nm -D --defined-only) are exactly
#    the functions declared extern in the installed include/dagger/*.h
#    other than pb.h (gcc -aux-info lists every declaration of a
#    translation unit with its file; static inline helpers are not extern);
#  - libdagger-pb.so: exactly those of dagger/pb.h;
#  - libdagger-wkt.so: exactly the functions and the data (descriptors,
#    default values) its headers declare extern, all google__protobuf__*;
#  - each one's SONAME is lib<name>.so.<ABI> (README: what changes ABI).
# A symbol exported but not declared, or declared but not exported, fails.
#   abi_test.sh BUILD_DIR WORKDIR CC NM READELF ABI
set -u
build=$1 work=$2 cc=$3 nm=$4 readelf=$5 abi=$6
rm -rf "$work" && mkdir -p "$work" || exit 1
stage=$work/stage
cmake --install "$build" --prefix "$stage" >"$work/install.log" || {
	echo "FAIL: cmake --install"
	exit 1
}
inc=$stage/include
rc=0
fail() { echo "FAIL: $*"; rc=1; }

lib_of() { # lib_of NAME: the installed lib<NAME>.so
	find "$stage" -name "lib$1.so" | head -n 1
}

# Functions declared extern in the given headers (and nowhere else).
declared_functions() {
	: >"$work/tu.c"
	for h; do
		printf '#include "%s"\n' "$h" >>"$work/tu.c"
	done
	"$cc" -std=gnu11 -fsyntax-only -aux-info "$work/aux.txt" -I "$inc" \
		-I "$inc/dagger/wkt" "$work/tu.c" || {
		fail "$cc -aux-info on $*"
		return
	}
	for h; do
		grep -F "/* $h:" "$work/aux.txt"
	done | sed -n 's/^\/\* [^ ]* \*\/ extern [^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\) (.*/\1/p'
}

exported() { # exported LIB
	"$nm" -D --defined-only "$1" | awk 'NF >= 3 { print $3 }'
}

compare() { # compare NAME EXPORTED-FILE DECLARED-FILE
	sort -u "$2" >"$2.s"
	sort -u "$3" >"$3.s"
	[ -s "$3.s" ] || fail "$1: no public functions found in its headers"
	comm -23 "$2.s" "$3.s" >"$work/$1.extra"
	comm -13 "$2.s" "$3.s" >"$work/$1.missing"
	if [ -s "$work/$1.extra" ]; then
		fail "$1 exports $(wc -l <"$work/$1.extra") symbol(s) no installed header declares:"
		sed 's/^/  /' "$work/$1.extra"
	fi
	if [ -s "$work/$1.missing" ]; then
		fail "$1 does not export $(wc -l <"$work/$1.missing") function(s) its headers declare:"
		sed 's/^/  /' "$work/$1.missing"
	fi
	echo "$1: $(wc -l <"$2.s") exported, $(wc -l <"$3.s") declared"
}

soname() { # soname NAME LIB
	s=$("$readelf" -d "$2" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
	[ "$s" = "lib$1.so.$abi" ] || fail "lib$1.so: SONAME '$s', want lib$1.so.$abi"
}

# libdagger: every installed dagger header but pb.h.
lib=$(lib_of dagger)
[ -n "$lib" ] || { echo "FAIL: libdagger.so not installed"; exit 1; }
hdrs=$(find "$inc/dagger" -maxdepth 1 -name '*.h' ! -name pb.h | sort)
[ -n "$hdrs" ] || fail "no installed dagger headers"
# shellcheck disable=SC2086
declared_functions $hdrs >"$work/dagger.declared"
exported "$lib" >"$work/dagger.exported"
compare libdagger.so "$work/dagger.exported" "$work/dagger.declared"
grep -qx dg_host_attach "$work/dagger.declared" ||
	fail "libdagger.so: dg_host_attach not seen in the headers"
soname dagger "$lib"

# libdagger-pb: dagger/pb.h.
lib=$(lib_of dagger-pb)
[ -n "$lib" ] || { echo "FAIL: libdagger-pb.so not installed"; exit 1; }
declared_functions "$inc/dagger/pb.h" >"$work/pb.declared"
exported "$lib" >"$work/pb.exported"
compare libdagger-pb.so "$work/pb.exported" "$work/pb.declared"
soname dagger-pb "$lib"

# libdagger-wkt: the well-known types' generated code.
lib=$(lib_of dagger-wkt)
[ -n "$lib" ] || { echo "FAIL: libdagger-wkt.so not installed"; exit 1; }
whdrs=$(find "$inc/dagger/wkt" -name '*.pb-c.h' | sort)
[ "$(echo "$whdrs" | wc -l)" -eq 11 ] || fail "libdagger-wkt: $(echo "$whdrs" | wc -l) headers installed, want 11"
# shellcheck disable=SC2086
{
	declared_functions $whdrs
	sed -n 's/^extern [^(]*[ *]\(google__protobuf__[A-Za-z0-9_]*\)\(\[\]\)\{0,1\};$/\1/p' $whdrs
} >"$work/wkt.declared"
exported "$lib" >"$work/wkt.exported"
compare libdagger-wkt.so "$work/wkt.exported" "$work/wkt.declared"
grep -qvx 'google__protobuf__[a-z0-9_]*' "$work/wkt.exported" &&
	fail "libdagger-wkt.so exports symbols outside google__protobuf__*"
grep -qx google__protobuf__timestamp__descriptor "$work/wkt.exported" ||
	fail "libdagger-wkt.so: no google__protobuf__timestamp__descriptor"
soname dagger-wkt "$lib"

[ $rc -eq 0 ] && echo "abi_test: the libraries export their public API, nothing else"
exit $rc
