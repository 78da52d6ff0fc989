# Cross-compiling for arm64 (aarch64) Linux, e.g. the Arm cores of a
# BlueField-class SmartNIC, with Debian's cross toolchain and multiarch
# development packages (deploy/cross-arm64 installs them):
#   gcc-aarch64-linux-gnu, libibverbs-dev:arm64, librdmacm-dev:arm64, ...
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#
# Tests run through qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), which needs
# no binfmt_misc: ctest prefixes each test program with it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(DG_CROSS_TRIPLET aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${DG_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${DG_CROSS_TRIPLET}-g++)

# Debian multiarch: arm64 libraries live in /usr/lib/aarch64-linux-gnu and
# the cross gcc searches there by itself. Only pkg-config must be told to
# read the arm64 .pc files instead of the host's.
set(ENV{PKG_CONFIG_LIBDIR}
	"/usr/lib/${DG_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# Programs (protoc-c, ...) come from the build machine; libraries and
# headers for the target.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_FIND_ROOT_PATH /usr/${DG_CROSS_TRIPLET} /)
set(CMAKE_LIBRARY_ARCHITECTURE ${DG_CROSS_TRIPLET})

# qemu-user with the target's root at /: the arm64 dynamic loader
# (/lib/ld-linux-aarch64.so.1, from libc6:arm64) and the multiarch
# libraries are found in place. DG_CROSS_EMULATOR overrides it.
if(NOT DEFINED DG_CROSS_EMULATOR)
	find_program(DG_QEMU_AARCH64 qemu-aarch64 qemu-aarch64-static)
	if(DG_QEMU_AARCH64)
		set(DG_CROSS_EMULATOR ${DG_QEMU_AARCH64} -L /)
	endif()
endif()
if(DG_CROSS_EMULATOR)
	set(CMAKE_CROSSCOMPILING_EMULATOR ${DG_CROSS_EMULATOR})
endif()
