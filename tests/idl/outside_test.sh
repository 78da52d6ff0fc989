#!/bin/sh
# The installed tree, used for real: `cmake --install` into a staging
# prefix, then an outside project configured against it with
# find_package(dagger) + dagger_proto_library() (-Wall -Wextra -Werror),
# built and run; the same project's stubs from the installed dagger-idlc
# on the command line, built with `pkg-config dagger-pb` alone; and a
# program built with `pkg-config dagger` alone. The project's service
# uses protobuf's well-known types: no step of it generates their code.
#   outside_test.sh BUILD_DIR SRCDIR WORKDIR EXTRA_CFLAGS CC [TOOLCHAIN EMULATOR...]
# EXTRA_CFLAGS: what the installed libraries were built with that their
# users need too (the sanitizer flags of a DG_SANITIZE build). CC: the
# build's C compiler. In a cross build, TOOLCHAIN is its CMake toolchain
# file (the outside project is cross-compiled the same way) and EMULATOR
# what runs the target's programs, the installed dagger-idlc included.
set -eu
build=$1 src=$2 work=$3 extra=$4 cc=$5 toolchain=${6:-}
shift 5
[ $# -gt 0 ] && shift
emu=$*
rm -rf "$work"
mkdir -p "$work"
stage=$work/stage
cmake --install "$build" --prefix "$stage" >"$work/install.log"
set -- -DCMAKE_C_COMPILER="$cc"
if [ -n "$toolchain" ]; then
	set -- -DCMAKE_TOOLCHAIN_FILE="$toolchain"
	# The target's .pc files (libprotobuf-c), and the staging prefix's.
	PKG_CONFIG_LIBDIR=/usr/lib/$("$cc" -print-multiarch)/pkgconfig:/usr/share/pkgconfig
	export PKG_CONFIG_LIBDIR
fi
cmake -S "$src/outside" -B "$work/build" -DCMAKE_PREFIX_PATH="$stage" "$@" \
	-DCMAKE_C_FLAGS="-Wall -Wextra -Werror $extra" >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log"
$emu "$work/build/greeter"

pc=$(find "$stage" -name dagger.pc)
[ -n "$pc" ]
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
libdir=$(pkg-config --variable=libdir dagger)
cat >"$work/pc.c" <<'C'
#include <errno.h>
#include "dagger/dagger.h"
int main(void)
{
	struct dg_host_opts o = {0};
	struct dg_host *h;

	return dg_host_attach(&o, &h) == -EINVAL ? 0 : 1;
}
C
# shellcheck disable=SC2046
"$cc" -Wall -Wextra -Werror $extra $(pkg-config --cflags dagger) \
	"$work/pc.c" -o "$work/pc" $(pkg-config --libs dagger)
LD_LIBRARY_PATH=$libdir $emu "$work/pc"

$emu "$stage/bin/dagger-idlc" -I "$src/outside" --out "$work/gen" \
	"$src/outside/greeter.proto"
# shellcheck disable=SC2046
"$cc" -Wall -Wextra -Werror $extra -I "$work/gen" \
	$(pkg-config --cflags dagger-pb) "$src/outside/main.c" \
	"$work/gen/greeter.pb-c.c" "$work/gen/greeter.dg.c" \
	-o "$work/greeter-pc" $(pkg-config --libs dagger-pb)
LD_LIBRARY_PATH=$libdir $emu "$work/greeter-pc"
echo "outside_test: installed package and pkg-config file work"
