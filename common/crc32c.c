// SPDX-License-Identifier: MIT
/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as carried by ring
 * slots. Built for a portable baseline: the CRC32C instructions (SSE4.2 on
 * x86-64, the ARMv8 CRC32 extension on arm64) are used via a function-level
 * target attribute only when the CPU reports them at run time; elsewhere a
 * slicing-by-8 table does the work.
 */
#include "dagger/ring.h"
#include "dg_cpu.h"

#include <stdbool.h>
#include <string.h>

#if defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#endif

static uint32_t table[8][256];
/* (Never set on CPUs for which no instruction path is built.) */
static bool have_hw __attribute__((unused));

__attribute__((constructor)) static void crc32c_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
		table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (j = 1; j < 8; j++)
			table[j][i] = (table[j - 1][i] >> 8) ^
				      table[0][table[j - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_hw = __builtin_cpu_supports("sse4.2");
#elif defined(__aarch64__)
	/* Optional in ARMv8.0, mandatory from ARMv8.1: ask the kernel. */
	have_hw = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#endif
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		v ^= crc;
		crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^
		      table[5][(v >> 16) & 0xff] ^ table[4][(v >> 24) & 0xff] ^
		      table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff] ^
		      table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
/* A slot: the stamp, then 56 bytes from p, all in registers. */
__attribute__((target("sse4.2"))) static uint32_t slot_csum_hw(const uint8_t *p,
							       uint32_t stamp)
{
	uint64_t c = __builtin_ia32_crc32si(~0u, stamp), v;
	uint32_t i;

#pragma GCC unroll 7
	for (i = 0; i < DG_SLOT_SIZE - 8; i += 8) {
		memcpy(&v, p + i, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	return ~(uint32_t)c;
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = crc;

	while (n >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	crc = (uint32_t)c;
	while (n--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#elif defined(__aarch64__)
#if defined(__clang__)
#define DG_TARGET_CRC __attribute__((target("crc")))
#else
#define DG_TARGET_CRC __attribute__((target("+crc")))
#endif
DG_TARGET_CRC static uint32_t slot_csum_hw(const uint8_t *p, uint32_t stamp)
{
	uint32_t c = __crc32cw(~0u, stamp), i;
	uint64_t v;

#pragma GCC unroll 7
	for (i = 0; i < DG_SLOT_SIZE - 8; i += 8) {
		memcpy(&v, p + i, 8);
		c = __crc32cd(c, v);
	}
	return ~c;
}

DG_TARGET_CRC static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
					size_t n)
{
	while (n >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		crc = __crc32cd(crc, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = __crc32cb(crc, *p++);
	return crc;
}
#endif

uint32_t dg_crc32c(uint32_t seed, const void *buf, size_t len)
{
	uint32_t crc = ~seed;

	/*
	 * A little-endian-only target (x86 and arm64 as built here) is
	 * assumed by the slicing-by-8 fallback.
	 */
#if defined(__x86_64__) || defined(__aarch64__)
	if (have_hw)
		return ~crc32c_hw(crc, buf, len);
#endif
	return ~crc32c_sw(crc, buf, len);
}

/* CRC32C of the stamp, then the 56 bytes at p, without the instructions. */
static uint32_t stamp_csum_sw(const uint8_t *p, uint32_t stamp)
{
	return ~crc32c_sw(crc32c_sw(~0u, (const uint8_t *)&stamp, 4), p,
			  DG_SLOT_SIZE - 8);
}

static uint32_t slot_csum_sw(const void *slot, uint32_t stamp)
{
	return stamp_csum_sw((const uint8_t *)slot + 8, stamp);
}

static uint32_t cont_csum_sw(const void *slot, uint32_t stamp)
{
	return stamp_csum_sw(slot, stamp);
}

#ifdef DG_HAVE_IFUNC
/*
 * Every frame published or taken on a checksummed ring costs one of these
 * (where no fast path computes it in line, dagger/ring.h): the variant is
 * chosen once, when the program is loaded (dg_cpu.h).
 */
#if defined(__x86_64__)
#define DG_TARGET_HW __attribute__((target("sse4.2")))
#else
#define DG_TARGET_HW DG_TARGET_CRC
#endif
DG_TARGET_HW static uint32_t slot_csum_hw_at(const void *slot, uint32_t stamp)
{
	return slot_csum_hw((const uint8_t *)slot + 8, stamp);
}

DG_TARGET_HW static uint32_t cont_csum_hw_at(const void *slot, uint32_t stamp)
{
	return slot_csum_hw(slot, stamp);
}

typedef uint32_t (*csum_fn)(const void *, uint32_t);

DG_RESOLVER csum_fn resolve_slot_csum(DG_RESOLVER_ARGS)
{
	return DG_CRC_NOW ? slot_csum_hw_at : slot_csum_sw;
}

DG_RESOLVER csum_fn resolve_cont_csum(DG_RESOLVER_ARGS)
{
	return DG_CRC_NOW ? cont_csum_hw_at : cont_csum_sw;
}

uint32_t dg_slot_csum(const void *slot, uint32_t stamp)
	__attribute__((ifunc("resolve_slot_csum")));
uint32_t dg_cont_csum(const void *slot, uint32_t stamp)
	__attribute__((ifunc("resolve_cont_csum")));
#else
/* Without indirect functions: the instructions behind a test. */
uint32_t dg_slot_csum(const void *slot, uint32_t stamp)
{
#if defined(__x86_64__) || defined(__aarch64__)
	if (have_hw)
		return slot_csum_hw((const uint8_t *)slot + 8, stamp);
#endif
	return slot_csum_sw(slot, stamp);
}

uint32_t dg_cont_csum(const void *slot, uint32_t stamp)
{
#if defined(__x86_64__) || defined(__aarch64__)
	if (have_hw)
		return slot_csum_hw(slot, stamp);
#endif
	return cont_csum_sw(slot, stamp);
}
#endif
