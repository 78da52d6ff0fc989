/* SPDX-License-Identifier: MIT */
/*
 * dg_cpu.h - choosing a function's build by the CPU it runs on, once, when
 * the program is loaded (GNU indirect functions, glibc's loader resolves
 * them): a call goes straight to the chosen build with no test on the way.
 * Used where the CRC32C instructions pay (common/crc32c.c, the host's
 * checksummed fast paths).
 */
#ifndef DG_CPU_H
#define DG_CPU_H

#include <stdbool.h>
#include <stdint.h>

#if (defined(__x86_64__) || defined(__aarch64__)) && defined(__GLIBC__)
#define DG_HAVE_IFUNC 1
#endif

/*
 * A resolver runs while the program is being relocated, before the
 * sanitizers' runtime or any constructor: it touches no global (none may
 * be relocated yet) and is not instrumented. x86-64 asks the CPU itself
 * (CPUID leaf 1, ECX bit 20: SSE4.2), arm64 is handed the hwcaps.
 */
#define DG_RESOLVER                                                            \
	__attribute__((used, no_sanitize_address, no_sanitize("undefined"),    \
		       no_instrument_function)) static
#if defined(__x86_64__)
static inline __attribute__((always_inline)) bool dg_cpu_crc_now(void)
{
	uint32_t a = 1, b, c = 0, d;

	__asm__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	return (c >> 20) & 1u;
}
#define DG_RESOLVER_ARGS void
#define DG_CRC_NOW	 dg_cpu_crc_now()
#elif defined(__aarch64__)
#include <sys/auxv.h>
#define DG_RESOLVER_ARGS uint64_t hwcap
#define DG_CRC_NOW	 ((hwcap & HWCAP_CRC32) != 0)
#endif

#endif /* DG_CPU_H */
