// SPDX-License-Identifier: MIT
/*
 * test_crc32c: dg_crc32c() (common/crc32c.c) against published check values
 * and against a bitwise reference written here, for every length 0..200 at
 * every alignment 0..7, with seed 0 and other seeds, and under chaining.
 *
 * Seed convention (what ring slots rely on): dg_crc32c(seed, buf, len)
 * starts from ~seed and returns the complemented register, so seed 0 gives
 * the standard CRC-32C and dg_crc32c(dg_crc32c(0, a), b) == dg_crc32c(0, ab).
 *
 * The library picks the SSE4.2 path or the slicing-by-8 table at run time,
 * so on one machine only one of them would ever be tested. This file
 * therefore also compiles a second, renamed copy of common/crc32c.c, whose
 * file-static have_hw it can switch, and checks both paths (the hardware one
 * only when the CPU has it), besides the library's own dg_crc32c().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/*
 * The copy: every use of dg_crc32c inside crc32c.c and dagger/ring.h (first
 * included here) becomes dg_crc32c_copy. Its statics (table, have_hw,
 * crc32c_sw, crc32c_hw, crc32c_init) are private to this file.
 */
#define dg_crc32c    dg_crc32c_copy
#define dg_slot_csum dg_slot_csum_copy
#define dg_cont_csum dg_cont_csum_copy
#include "../../common/crc32c.c"
#undef dg_crc32c
#undef dg_slot_csum
#undef dg_cont_csum

/* The library's functions (dg_common), whose prototypes were renamed above. */
uint32_t dg_crc32c(uint32_t seed, const void *buf, size_t len);
uint32_t dg_slot_csum(const void *slot, uint32_t stamp);
uint32_t dg_cont_csum(const void *slot, uint32_t stamp);

#define CRC32C_POLY_REFLECTED 0x82F63B78u

/* Bit at a time, straight from the definition: init ~seed, final xor ~0. */
static uint32_t ref_crc32c(uint32_t seed, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~seed;
	int k;

	while (len--) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY_REFLECTED
				     : c >> 1;
	}
	return ~c;
}

static bool cpu_has_hw;

static uint32_t lib_crc(uint32_t seed, const void *buf, size_t len)
{
	return dg_crc32c(seed, buf, len);
}

static uint32_t copy_sw_crc(uint32_t seed, const void *buf, size_t len)
{
	have_hw = false;
	return dg_crc32c_copy(seed, buf, len);
}

static uint32_t copy_hw_crc(uint32_t seed, const void *buf, size_t len)
{
	have_hw = true; /* only listed in impls[] when cpu_has_hw */
	return dg_crc32c_copy(seed, buf, len);
}

struct impl {
	const char *name;
	uint32_t (*fn)(uint32_t seed, const void *buf, size_t len);
};

static struct impl impls[3];
static size_t nimpls;

static void init_impls(void)
{
	cpu_has_hw = have_hw; /* as crc32c_init() of the copy found it */
	nimpls = 0;
	impls[nimpls++] = (struct impl){"library", lib_crc};
	impls[nimpls++] = (struct impl){"table", copy_sw_crc};
	if (cpu_has_hw)
		impls[nimpls++] = (struct impl){"sse4.2", copy_hw_crc};
}

static uint64_t rng_state;

/* splitmix64: deterministic, good enough for test data. */
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void rng_fill(uint8_t *p, size_t n)
{
	while (n--)
		*p++ = (uint8_t)rng_next();
}

#define EXPECT_CRC(got, want, ...)                                             \
	do {                                                                   \
		uint32_t got_ = (got), want_ = (want);                         \
		if (got_ != want_) {                                           \
			print_error(__VA_ARGS__);                              \
			fail_msg("crc 0x%08x, expected 0x%08x", got_, want_);  \
		}                                                              \
	} while (0)

static int setup(void **state)
{
	(void)state;
	init_impls();
	print_message("crc32c: implementations tested: library%s%s\n",
		      ", table", cpu_has_hw ? ", sse4.2" : " (no sse4.2 cpu)");
	return 0;
}

/* The reference itself, against the standard check value. */
static void test_reference_check_value(void **state)
{
	(void)state;
	assert_int_equal(ref_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(ref_crc32c(0, "", 0), 0u);
}

static void test_check_value(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nimpls; i++) {
		const struct impl *m = &impls[i];

		EXPECT_CRC(m->fn(0, "123456789", 9), 0xE3069283u,
			   "%s: \"123456789\"\n", m->name);
		/* No bytes: the seed comes back unchanged (~~seed). */
		EXPECT_CRC(m->fn(0, "", 0), 0u, "%s: empty\n", m->name);
		EXPECT_CRC(m->fn(0xDEADBEEFu, "", 0), 0xDEADBEEFu,
			   "%s: empty, seeded\n", m->name);
		EXPECT_CRC(m->fn(0, NULL, 0), 0u, "%s: NULL, 0\n", m->name);
	}
}

/* RFC 3720 (iSCSI) B.4 vectors. */
static void test_known_vectors(void **state)
{
	uint8_t zeros[32], ones[32], inc[32], dec[32];
	size_t i;

	(void)state;
	memset(zeros, 0, sizeof(zeros));
	memset(ones, 0xFF, sizeof(ones));
	for (i = 0; i < 32; i++) {
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	assert_int_equal(ref_crc32c(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(ref_crc32c(0, ones, 32), 0x62A8AB43u);
	for (i = 0; i < nimpls; i++) {
		const struct impl *m = &impls[i];

		EXPECT_CRC(m->fn(0, zeros, 32), 0x8A9136AAu, "%s: 32 x 00\n",
			   m->name);
		EXPECT_CRC(m->fn(0, ones, 32), 0x62A8AB43u, "%s: 32 x FF\n",
			   m->name);
		EXPECT_CRC(m->fn(0, inc, 32), 0x46DD794Eu, "%s: 00..1F\n",
			   m->name);
		EXPECT_CRC(m->fn(0, dec, 32), 0x113FDB5Cu, "%s: 1F..00\n",
			   m->name);
	}
}

/* dg_crc32c(dg_crc32c(0, a), b) == dg_crc32c(0, a || b), any split. */
static void test_chaining(void **state)
{
	static const char check[] = "123456789";
	uint8_t buf[300];
	size_t i, k, j;

	(void)state;
	rng_state = 0xC4C32C00ull;
	rng_fill(buf, sizeof(buf));
	for (i = 0; i < nimpls; i++) {
		const struct impl *m = &impls[i];
		uint32_t whole = m->fn(0, buf, sizeof(buf));

		for (k = 0; k <= 9; k++)
			EXPECT_CRC(m->fn(m->fn(0, check, k), check + k, 9 - k),
				   0xE3069283u, "%s: check split at %zu\n",
				   m->name, k);
		for (k = 0; k <= sizeof(buf); k++) {
			uint32_t a = m->fn(0, buf, k);

			EXPECT_CRC(m->fn(a, buf + k, sizeof(buf) - k), whole,
				   "%s: split at %zu\n", m->name, k);
		}
		/* Three pieces. */
		for (k = 0; k <= sizeof(buf); k += 7)
			for (j = k; j <= sizeof(buf); j += 13) {
				uint32_t c = m->fn(0, buf, k);

				c = m->fn(c, buf + k, j - k);
				c = m->fn(c, buf + j, sizeof(buf) - j);
				EXPECT_CRC(c, whole, "%s: split %zu/%zu\n",
					   m->name, k, j);
			}
	}
}

/*
 * Every length 0..200 at every alignment 0..7, seed 0 and a non-zero seed,
 * each against the reference. The bytes sit at the very end of an
 * exact-size heap block, so a sanitizer build catches any over-read, and a
 * second copy with different bytes after the end checks that they do not
 * count.
 */
static void test_lengths_alignments(void **state)
{
	static const uint32_t seeds[] = {0, 0xDEADBEEFu, 0xFFFFFFFFu, 1};
	uint8_t src[200], tail[208];
	size_t i, s, align, len;
	unsigned long checked = 0;

	(void)state;
	rng_state = 0xA11A11ull;
	rng_fill(src, sizeof(src));
	rng_fill(tail, sizeof(tail));
	for (align = 0; align < 8; align++) {
		for (len = 0; len <= 200; len++) {
			/* exact: the block ends right after p[len - 1] */
			uint8_t *exact = malloc(align + len ? align + len : 1);
			uint8_t *longer = malloc(align + len + 16);
			uint8_t *p, *q;

			assert_non_null(exact);
			assert_non_null(longer);
			p = exact + align;
			q = longer + align;
			/* malloc() returns 8-aligned (or better) blocks */
			assert_int_equal((uintptr_t)p & 7u, align);
			assert_int_equal((uintptr_t)q & 7u, align);
			memcpy(p, src, len);
			memcpy(q, src, len);
			memcpy(q + len, tail, 16);
			for (s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
				uint32_t want = ref_crc32c(seeds[s], src, len);

				for (i = 0; i < nimpls; i++) {
					const struct impl *m = &impls[i];

					EXPECT_CRC(
						m->fn(seeds[s], p, len), want,
						"%s: seed 0x%08x align %zu "
						"len %zu\n",
						m->name, seeds[s], align, len);
					EXPECT_CRC(m->fn(seeds[s], q, len),
						   want,
						   "%s: trailing bytes, align "
						   "%zu len %zu\n",
						   m->name, align, len);
					checked++;
				}
			}
			free(exact);
			free(longer);
		}
	}
	print_message("crc32c: %lu (impl, seed, alignment, length) cases\n",
		      checked);
	assert_int_equal(checked, 8 * 201 * 4 * nimpls);
}

/* Random seeds, lengths and contents up to 64 KiB (DG_MAX_INLINE). */
static void test_random_long(void **state)
{
	size_t n = 64 * 1024 + 7;
	uint8_t *buf = malloc(n);
	int t;
	size_t i;

	(void)state;
	assert_non_null(buf);
	rng_state = 0x10F6ull;
	rng_fill(buf, n);
	for (t = 0; t < 64; t++) {
		size_t off = rng_next() % 8;
		size_t len = t == 0 ? n - off : rng_next() % (n - off + 1);
		uint32_t seed = (uint32_t)rng_next();
		uint32_t want = ref_crc32c(seed, buf + off, len);

		for (i = 0; i < nimpls; i++)
			EXPECT_CRC(impls[i].fn(seed, buf + off, len), want,
				   "%s: seed 0x%08x off %zu len %zu\n",
				   impls[i].name, seed, off, len);
	}
	free(buf);
}

/*
 * dg_slot_csum and dg_cont_csum (the unrolled one-call forms slots use)
 * equal their definitions, CRC32C over the stamp's four bytes then bytes
 * 8..63 of a first frame or 0..55 of a continuation frame, on every path:
 * the library's, the table's and the instructions' (when the CPU has them).
 */
static void test_slot_csum(void **state)
{
	uint8_t slot[DG_SLOT_SIZE] __attribute__((aligned(64)));
	uint32_t t, stamp, want, wantc;

	(void)state;
	/* The load-time choice: the instructions when the CPU has them. */
#if defined(DG_HAVE_IFUNC) && defined(__x86_64__)
	assert_true(resolve_slot_csum() ==
		    (cpu_has_hw ? slot_csum_hw_at : slot_csum_sw));
	assert_true(resolve_cont_csum() ==
		    (cpu_has_hw ? cont_csum_hw_at : cont_csum_sw));
#elif defined(DG_HAVE_IFUNC)
	assert_true(resolve_slot_csum(getauxval(AT_HWCAP)) ==
		    (cpu_has_hw ? slot_csum_hw_at : slot_csum_sw));
	assert_true(resolve_cont_csum(getauxval(AT_HWCAP)) ==
		    (cpu_has_hw ? cont_csum_hw_at : cont_csum_sw));
#endif
	rng_state = 0x5107ull;
	for (t = 0; t < 2000; t++) {
		rng_fill(slot, sizeof(slot));
		stamp = t < 3 ? (uint32_t[]){0u, 1u, 0xffffffffu}[t]
			      : (uint32_t)rng_next();
		want = ref_crc32c(ref_crc32c(0, &stamp, 4), slot + 8,
				  DG_SLOT_SIZE - 8);
		wantc = ref_crc32c(ref_crc32c(0, &stamp, 4), slot,
				   DG_SLOT_SIZE - 8);
		assert_int_equal(dg_slot_csum(slot, stamp), want);
		assert_int_equal(dg_cont_csum(slot, stamp), wantc);
		/* Both variants the load-time choice picks from. */
		assert_int_equal(slot_csum_sw(slot, stamp), want);
		assert_int_equal(cont_csum_sw(slot, stamp), wantc);
#ifdef DG_HAVE_IFUNC
		if (cpu_has_hw) {
			assert_int_equal(slot_csum_hw_at(slot, stamp), want);
			assert_int_equal(cont_csum_hw_at(slot, stamp), wantc);
		}
#endif
		/* The in-line forms the host's checksummed fast paths use
		 * (dagger/ring.h), on a CPU that has the instructions; the
		 * flag alone, elsewhere, is the call. */
		if (cpu_has_hw) {
			assert_int_equal(dg_slot_csum_as(slot, stamp,
							 DG_RING_F_CRC_INLINE),
					 want);
			assert_int_equal(dg_cont_csum_as(slot, stamp,
							 DG_RING_F_CRC_INLINE),
					 wantc);
		}
		assert_int_equal(dg_slot_csum_as(slot, stamp, 0), want);
		assert_int_equal(dg_cont_csum_as(slot, stamp, 0), wantc);
		/* Bytes 0..7 of a first frame (its stamp and checksum) and
		 * 56..63 of a continuation frame are not covered. */
		slot[5] ^= 0xff;
		assert_int_equal(dg_slot_csum(slot, stamp), want);
		slot[5] ^= 0xff;
		slot[60] ^= 0xff;
		assert_int_equal(dg_cont_csum(slot, stamp), wantc);
		slot[8 + t % 48] ^= 1;
		assert_int_not_equal(dg_slot_csum(slot, stamp), want);
		assert_int_not_equal(dg_cont_csum(slot, stamp), wantc);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_check_value),
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_chaining),
		cmocka_unit_test(test_lengths_alignments),
		cmocka_unit_test(test_random_long),
		cmocka_unit_test(test_slot_csum),
	};

	return cmocka_run_group_tests_name("crc32c", tests, setup, NULL);
}
