// SPDX-License-Identifier: MIT
/*
 * test_frame: the ring slot contract of dagger/frame.h and dagger/ring.h.
 *
 *  - the region layout: offsets, alignment, no overlap, totals, bad args;
 *  - dg_frames_for();
 *  - stamps, dg_slot_publish() and dg_slot_ready(), with and without
 *    DG_RING_F_CSUM, including the wrap of the 32-bit position;
 *  - the checksum: every 1- and 2-bit corruption, and stamp changes that a
 *    matching rpc_id change would cancel if the stamp were only the seed;
 *  - torn slots: a remote copy landing a new frame over the previous lap in
 *    any order must never be accepted early with DG_RING_F_CSUM (and is,
 *    without it: the test can see the problem). For unstructured content a
 *    32-bit check lets a torn state through with probability about 2^-32,
 *    so a given seed could in principle fail on a rare state; 90 seeds x
 *    1e5 trials have not;
 *  - a two-thread stress of the shared-memory (no checksum) protocol.
 *
 * Random data comes from a seeded PRNG: runs are deterministic. The seed is
 * printed; DG_TEST_SEED=<n> in the environment overrides it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dagger/frame.h"
#include "dagger/ring.h"

/* ---- static checks of the contract ---- */

static_assert(DG_SLOT_SIZE == 64, "a slot is one cache line");
static_assert(DG_FRAME_PAYLOAD == 32, "32 payload bytes in a first frame");
static_assert(DG_CONT_PAYLOAD == 56, "56 in each continuation frame");
static_assert(DG_MAX_FRAMES == 1171, "1 + ceil((65536 - 32) / 56)");
/* DG_MAX_FRAMES frames carry DG_MAX_INLINE, one fewer do not */
static_assert(DG_FRAME_PAYLOAD + (DG_MAX_FRAMES - 2) * DG_CONT_PAYLOAD <
			      DG_MAX_INLINE &&
		      DG_FRAME_PAYLOAD +
				      (DG_MAX_FRAMES - 1) * DG_CONT_PAYLOAD >=
			      DG_MAX_INLINE,
	      "DG_MAX_FRAMES is the fewest frames that carry DG_MAX_INLINE");
static_assert(DG_MAX_FLOWS <= UINT8_MAX + 1, "frame.flow is 8 bits");
static_assert(sizeof(struct dg_region_hdr) % DG_SLOT_SIZE == 0,
	      "control lines start aligned");
static_assert(sizeof(struct dg_flow_ctrl) == 3 * DG_SLOT_SIZE,
	      "three lines per flow");
static_assert(offsetof(struct dg_flow_ctrl, tx_head) == 0 &&
		      offsetof(struct dg_flow_ctrl, rx_head) == DG_SLOT_SIZE &&
		      offsetof(struct dg_flow_ctrl, tx_db) == 2 * DG_SLOT_SIZE,
	      "engine-written, host-written and host-cold lines apart");
static_assert((DG_MIN_SLOTS & (DG_MIN_SLOTS - 1)) == 0, "power of two");
static_assert((DG_MAX_SLOTS & (DG_MAX_SLOTS - 1)) == 0, "power of two");
/*
 * Every ring size divides 2^32, so pos & (slots - 1) stays continuous
 * across the wrap of the free-running position.
 */
static_assert((UINT64_C(1) << 32) % DG_MAX_SLOTS == 0, "slots divide 2^32");

/* Expected layout, written independently of dg_region_layout(). */
#define EXP_RINGS_OFF(n) (64ull + 192ull * (n))
#define EXP_TOTAL(n, s)	 (EXP_RINGS_OFF(n) + 2ull * (n) * (s)*64ull)
static_assert(EXP_TOTAL(1, 64) == 8448, "smallest region");
static_assert(EXP_TOTAL(DG_MAX_FLOWS, DG_MAX_SLOTS) == 536883264ull,
	      "largest region: 512 MiB + 12 KiB");

/* ---- helpers ---- */

static uint64_t test_seed = 0x0DA66E25EED5ull;
static uint64_t rng_state;

/* splitmix64 */
static uint64_t mix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t rng_next(void)
{
	return mix64(&rng_state);
}

static void rng_seed(uint64_t test_id)
{
	rng_state = test_seed ^ (test_id * 0xD1B54A32D192ED03ull);
}

static uint8_t *bytes(struct dg_frame *f)
{
	return (uint8_t *)f;
}

/* Random bytes 8..63 (everything the producer writes before sealing). */
static void fill_body(struct dg_frame *f)
{
	size_t i;

	for (i = 8; i < DG_SLOT_SIZE; i++)
		bytes(f)[i] = (uint8_t)rng_next();
}

/*
 * The checksum as the contract states it, computed in one pass: CRC32C
 * (standard, seed 0) of the stamp's four bytes as they sit in the slot
 * (little-endian) followed by bytes 8..63.
 */
static uint32_t contract_csum(uint32_t stamp, const struct dg_frame *f)
{
	uint8_t buf[4 + DG_SLOT_SIZE - 8];

	buf[0] = (uint8_t)stamp;
	buf[1] = (uint8_t)(stamp >> 8);
	buf[2] = (uint8_t)(stamp >> 16);
	buf[3] = (uint8_t)(stamp >> 24);
	memcpy(buf + 4, (const uint8_t *)f + 8, DG_SLOT_SIZE - 8);
	return dg_crc32c(0, buf, sizeof(buf));
}

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int group_setup(void **state)
{
	const char *env = getenv("DG_TEST_SEED");

	(void)state;
	if (env && *env)
		test_seed = strtoull(env, NULL, 0);
	print_message("test_frame: seed 0x%" PRIx64
		      " (set DG_TEST_SEED to change)\n",
		      test_seed);
	return 0;
}

/* ---- layout ---- */

struct known_layout {
	uint32_t nflows, slots;
	uint64_t rings_off, ring_size, total;
};

/* Hand-computed: 64 + 128 n, 64 s, rings_off + 2 n 64 s. */
static const struct known_layout known_layouts[] = {
	{1, 64, 256, 4096, 8448},
	{2, 128, 448, 8192, 33216},
	{3, 1024, 640, 65536, 393856},
	{64, 64, 12352, 4096, 536640},
	{64, 65536, 12352, 4194304, 536883264},
};

static void test_layout_known(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(known_layouts) / sizeof(known_layouts[0]); i++) {
		const struct known_layout *k = &known_layouts[i];
		struct dg_region_layout l = {0};

		assert_int_equal(dg_region_layout(k->nflows, k->slots, &l), 0);
		assert_int_equal(l.ctrl_off, 64);
		assert_int_equal(l.rings_off, k->rings_off);
		assert_int_equal(l.ring_size, k->ring_size);
		assert_int_equal(l.total, k->total);
		assert_int_equal(l.total, EXP_TOTAL(k->nflows, k->slots));
		/* last byte of the last RX ring is the last byte */
		assert_int_equal(dg_rx_ring_off(&l, k->nflows - 1) +
					 l.ring_size,
				 l.total);
	}
}

struct span {
	uint64_t off, len;
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/*
 * Every valid (nflows, slots): every ctrl line, index line and ring is
 * 64-byte aligned, nothing overlaps, and header + ctrl + rings tile the
 * region exactly.
 */
static void test_layout_all(void **state)
{
	static struct span spans[1 + 3 * DG_MAX_FLOWS];
	uint32_t n, s, f;
	unsigned long layouts = 0;

	(void)state;
	for (n = 1; n <= DG_MAX_FLOWS; n++) {
		for (s = DG_MIN_SLOTS; s <= DG_MAX_SLOTS; s <<= 1) {
			struct dg_region_layout l = {0};
			size_t ns = 0, i;
			uint64_t sum = 0;

			assert_int_equal(dg_region_layout(n, s, &l), 0);
			assert_int_equal(l.ctrl_off,
					 sizeof(struct dg_region_hdr));
			assert_int_equal(l.rings_off, EXP_RINGS_OFF(n));
			assert_int_equal(l.ring_size, (uint64_t)s * 64);
			assert_int_equal(l.total, EXP_TOTAL(n, s));
			spans[ns++] = (struct span){0, 64};
			for (f = 0; f < n; f++) {
				uint64_t c = dg_ctrl_off(&l, f);
				uint64_t t = dg_tx_ring_off(&l, f);
				uint64_t r = dg_rx_ring_off(&l, f);

				assert_int_equal(c % 64, 0);
				assert_int_equal(
					(c + offsetof(struct dg_flow_ctrl,
						      rx_head)) %
						64,
					0);
				assert_int_equal(t % 64, 0);
				assert_int_equal(r % 64, 0);
				assert_int_equal(c, 64 + 192ull * f);
				assert_int_equal(
					t, EXP_RINGS_OFF(n) +
						   2ull * f * l.ring_size);
				assert_int_equal(r, t + l.ring_size);
				spans[ns++] = (struct span){
					c, sizeof(struct dg_flow_ctrl)};
				spans[ns++] = (struct span){t, l.ring_size};
				spans[ns++] = (struct span){r, l.ring_size};
			}
			qsort(spans, ns, sizeof(spans[0]), span_cmp);
			for (i = 0; i < ns; i++) {
				assert_true(spans[i].off + spans[i].len <=
					    l.total);
				if (i + 1 < ns)
					assert_true(spans[i].off +
							    spans[i].len <=
						    spans[i + 1].off);
				sum += spans[i].len;
			}
			/* no overlap and sizes add up: exact tiling */
			assert_int_equal(sum, l.total);
			layouts++;
		}
	}
	print_message("layout: %lu valid (nflows, slots) checked\n", layouts);
	assert_int_equal(layouts, 64 * 11);
}

static void test_layout_invalid(void **state)
{
	static const uint32_t bad_flows[] = {0, DG_MAX_FLOWS + 1, 1000,
					     UINT32_MAX};
	static const uint32_t bad_slots[] = {
		0,
		1,
		2,
		32,
		DG_MIN_SLOTS - 1,
		DG_MIN_SLOTS + 1,
		96,
		100,
		127,
		192,
		1000,
		65535,
		DG_MAX_SLOTS + 1,
		2 * DG_MAX_SLOTS,
		1u << 31,
		UINT32_MAX,
	};
	struct dg_region_layout l = {0};
	size_t i;
	uint32_t s;

	(void)state;
	for (i = 0; i < sizeof(bad_flows) / sizeof(bad_flows[0]); i++)
		assert_int_equal(dg_region_layout(bad_flows[i], 64, &l),
				 -EINVAL);
	for (i = 0; i < sizeof(bad_slots) / sizeof(bad_slots[0]); i++)
		assert_int_equal(dg_region_layout(1, bad_slots[i], &l),
				 -EINVAL);
	/* all non powers of two in the valid range, for one flow count */
	for (s = DG_MIN_SLOTS; s <= DG_MAX_SLOTS; s++)
		assert_int_equal(dg_region_layout(7, s, &l),
				 is_pow2(s) ? 0 : -EINVAL);
	/* both bad */
	assert_int_equal(dg_region_layout(0, 63, &l), -EINVAL);
	/* the boundaries themselves are valid */
	assert_int_equal(dg_region_layout(1, DG_MIN_SLOTS, &l), 0);
	assert_int_equal(dg_region_layout(DG_MAX_FLOWS, DG_MAX_SLOTS, &l), 0);
}

/* ---- dg_frames_for ---- */

/* Payload bytes that n frames carry. */
static uint64_t carries(uint64_t n)
{
	return DG_FRAME_PAYLOAD + (n - 1) * DG_CONT_PAYLOAD;
}

/* n is the fewest frames whose payload holds len bytes. */
static bool frames_ok(uint32_t len, uint32_t n)
{
	return n >= 1 && carries(n) >= len && (n == 1 || carries(n - 1) < len);
}

static void test_frames_for(void **state)
{
	uint32_t len;
	int i;

	(void)state;
	assert_int_equal(dg_frames_for(0), 1);
	assert_int_equal(dg_frames_for(1), 1);
	assert_int_equal(dg_frames_for(31), 1);
	assert_int_equal(dg_frames_for(32), 1);
	assert_int_equal(dg_frames_for(33), 2);
	assert_int_equal(dg_frames_for(64), 2);
	assert_int_equal(dg_frames_for(88), 2);
	assert_int_equal(dg_frames_for(89), 3);
	assert_int_equal(dg_frames_for(144), 3);
	assert_int_equal(dg_frames_for(145), 4);
	assert_int_equal(dg_frames_for(DG_MAX_INLINE - 1), DG_MAX_FRAMES);
	assert_int_equal(dg_frames_for(DG_MAX_INLINE), DG_MAX_FRAMES);
	assert_int_equal(dg_frames_for(DG_MAX_INLINE), 1171);
	assert_int_equal(dg_frames_for((uint32_t)carries(DG_MAX_FRAMES)),
			 DG_MAX_FRAMES);
	assert_int_equal(dg_frames_for((uint32_t)carries(DG_MAX_FRAMES) + 1),
			 DG_MAX_FRAMES + 1);
	/* the smallest count that holds len, for every valid length */
	for (len = 0; len <= DG_MAX_INLINE; len++)
		if (!frames_ok(len, dg_frames_for(len)))
			fail_msg("dg_frames_for(%u) = %u", len,
				 dg_frames_for(len));
	/* and at random over the whole 32-bit range */
	rng_seed(7);
	for (i = 0; i < 100000; i++) {
		len = (uint32_t)rng_next() >> (rng_next() % 32);
		if (!frames_ok(len, dg_frames_for(len)))
			fail_msg("dg_frames_for(%u) = %u", len,
				 dg_frames_for(len));
	}
	/* no overflow near the top: 2 + (2^32 - 1 - 33) / 56 */
	assert_int_equal(dg_frames_for(UINT32_MAX), 76695845u);
	assert_true(frames_ok(UINT32_MAX, dg_frames_for(UINT32_MAX)));
	assert_true(frames_ok(UINT32_MAX - 56, dg_frames_for(UINT32_MAX - 56)));
}

/* ---- stamps, publish, ready ---- */

static const unsigned both_flags[] = {0, DG_RING_F_CSUM};

static void test_stamp_values(void **state)
{
	(void)state;
	assert_int_equal(dg_stamp(0), 1);
	assert_int_equal(dg_stamp(1), 2);
	assert_int_equal(dg_stamp(0x7FFFFFFFu), 0x80000000u);
	assert_int_equal(dg_stamp(UINT32_MAX - 1), UINT32_MAX);
	assert_int_equal(dg_stamp(UINT32_MAX), 0);
}

/*
 * All-zero memory (a fresh region) is not ready for any position a fresh
 * ring is polled at: the first lap and far beyond, with and without the
 * checksum.
 */
static void test_zeroed_slot(void **state)
{
	alignas(64) struct dg_frame slot;
	uint32_t pos;
	size_t fi;
	int i;

	(void)state;
	rng_seed(1);
	memset(&slot, 0, sizeof(slot));
	for (fi = 0; fi < 2; fi++) {
		unsigned fl = both_flags[fi];

		for (pos = 0; pos < 4 * DG_MAX_SLOTS; pos++)
			if (dg_slot_ready(&slot, pos, fl))
				fail_msg("zeroed slot ready at pos %u flags %u",
					 pos, fl);
		for (i = 0; i < 100000; i++) {
			pos = (uint32_t)rng_next();
			if (pos != UINT32_MAX && dg_slot_ready(&slot, pos, fl))
				fail_msg("zeroed slot ready at pos %u flags %u",
					 pos, fl);
		}
		assert_false(dg_slot_ready(&slot, UINT32_MAX - 1, fl));
	}
	/*
	 * The one exception: dg_stamp(UINT32_MAX) == 0. With the checksum a
	 * zeroed slot still fails (CRC32C of 60 zero bytes is not 0);
	 * without it, zeroed memory reads as a frame for that position.
	 * A fresh ring never polls a zeroed slot there (positions start at 0
	 * and slot i is first polled at pos i < slots), but a ring that is
	 * re-zeroed while its positions keep counting would be exposed.
	 */
	assert_int_equal(dg_slot_csum(&slot, 0), 0x5A0B0531u);
	assert_int_equal(contract_csum(0, &slot), 0x5A0B0531u);
	assert_false(dg_slot_ready(&slot, UINT32_MAX, DG_RING_F_CSUM));
	assert_true(dg_slot_ready(&slot, UINT32_MAX, 0));
}

static bool others_not_ready(const struct dg_frame *slot, uint32_t pos,
			     uint32_t ring, unsigned fl)
{
	const uint32_t other[] = {
		pos - 1,
		pos + 1,
		pos - ring,
		pos + ring,
		pos - 2 * ring,
		pos + 0x80000000u,
		pos ^ 1u,
		~pos,
		pos + 1 - ring,
		pos - 1 + ring,
		(uint32_t)rng_next(),
	};
	size_t i;

	for (i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		if (other[i] != pos && dg_slot_ready(slot, other[i], fl))
			return false;
	return true;
}

/*
 * A published slot: stamp dg_stamp(pos) at offset 0, the right csum (or 0),
 * body untouched; ready for pos and for no other position; the previous lap
 * is not ready for pos until the new frame is published.
 */
static void test_publish_ready(void **state)
{
	static const uint32_t rings[] = {DG_MIN_SLOTS, 4096, DG_MAX_SLOTS};
	uint32_t fixed[] = {0,
			    1,
			    63,
			    64,
			    65535,
			    65536,
			    0x7FFFFFFFu,
			    0x80000000u,
			    UINT32_MAX - 65536,
			    UINT32_MAX - 64,
			    UINT32_MAX - 1,
			    UINT32_MAX};
	size_t fi, ri, k;
	unsigned long checked = 0;

	(void)state;
	rng_seed(2);
	for (fi = 0; fi < 2; fi++) {
		unsigned fl = both_flags[fi];

		for (ri = 0; ri < 3; ri++) {
			uint32_t ring = rings[ri];

			for (k = 0; k < 12 + 500; k++) {
				alignas(64) struct dg_frame slot, body;
				uint32_t pos = k < 12 ? fixed[k]
						      : (uint32_t)rng_next();
				uint32_t prev = pos - ring, st;

				/* the previous lap, sealed */
				fill_body(&slot);
				slot.stamp = (uint32_t)rng_next();
				slot.csum = (uint32_t)rng_next();
				dg_slot_publish(&slot, prev, fl);
				assert_true(dg_slot_ready(&slot, prev, fl));
				assert_false(dg_slot_ready(&slot, pos, fl));
				assert_false(dg_slot_ready(&slot, pos, 0));

				/* new body written in place, not sealed */
				fill_body(&body);
				memcpy(bytes(&slot) + 8, bytes(&body) + 8,
				       DG_SLOT_SIZE - 8);
				assert_false(dg_slot_ready(&slot, pos, fl));
				/* with csum, the old lap is no longer valid */
				if (fl)
					assert_false(
						dg_slot_ready(&slot, prev, fl));

				dg_slot_publish(&slot, pos, fl);
				memcpy(&st, &slot, 4);
				assert_int_equal(st, pos + 1u);
				assert_int_equal(slot.stamp, dg_stamp(pos));
				if (fl)
					assert_int_equal(
						slot.csum,
						contract_csum(pos + 1u, &body));
				assert_memory_equal(bytes(&slot) + 8,
						    bytes(&body) + 8,
						    DG_SLOT_SIZE - 8);
				assert_true(dg_slot_ready(&slot, pos, fl));
				assert_false(dg_slot_ready(&slot, prev, fl));
				assert_true(
					others_not_ready(&slot, pos, ring, fl));
				/* the stamp alone decides without the flag */
				assert_true(dg_slot_ready(&slot, pos, 0));
				/*
				 * Sealed without a checksum (csum 0), a
				 * checksummed ring rejects it.
				 */
				if (!fl) {
					assert_int_not_equal(
						dg_slot_csum(&slot, pos + 1u),
						0);
					assert_false(dg_slot_ready(
						&slot, pos, DG_RING_F_CSUM));
				}
				checked++;
			}
		}
	}
	print_message("publish/ready: %lu published slots checked\n", checked);
}

/*
 * A ring of 64 slots driven across the wrap of the 32-bit position:
 * positions UINT32_MAX - 200 .. 200, one frame each, checking before and
 * after each publish.
 */
static void test_wrap(void **state)
{
	alignas(64) struct dg_frame ring[DG_MIN_SLOTS];
	const uint32_t mask = DG_MIN_SLOTS - 1;
	const uint32_t start = UINT32_MAX - 200;
	size_t fi;
	uint32_t pos, n;
	bool seen_max = false, seen_zero = false;

	(void)state;
	rng_seed(3);
	for (fi = 0; fi < 2; fi++) {
		unsigned fl = both_flags[fi];

		/* ring holds the lap before start */
		for (pos = start - DG_MIN_SLOTS; pos != start; pos++) {
			fill_body(&ring[pos & mask]);
			dg_slot_publish(&ring[pos & mask], pos, fl);
		}
		for (n = 0, pos = start; n < 402; n++, pos++) {
			struct dg_frame *s = &ring[pos & mask];

			/* previous lap: ready for pos - 64, not for pos */
			assert_true(dg_slot_ready(s, pos - DG_MIN_SLOTS, fl));
			assert_false(dg_slot_ready(s, pos, fl));
			fill_body(s);
			dg_slot_publish(s, pos, fl);
			assert_true(dg_slot_ready(s, pos, fl));
			assert_false(dg_slot_ready(s, pos - DG_MIN_SLOTS, fl));
			assert_false(dg_slot_ready(s, pos + DG_MIN_SLOTS, fl));
			/* the next slot still holds the previous lap */
			assert_false(dg_slot_ready(&ring[(pos + 1) & mask],
						   pos + 1, fl));
			seen_max |= pos == UINT32_MAX;
			seen_zero |= pos == 0;
		}
		assert_int_equal(pos, 201);
	}
	assert_true(seen_max && seen_zero);

	/* the two positions at the wrap, explicitly */
	for (fi = 0; fi < 2; fi++) {
		unsigned fl = both_flags[fi];
		alignas(64) struct dg_frame s;

		fill_body(&s);
		dg_slot_publish(&s, UINT32_MAX, fl);
		assert_int_equal(s.stamp, 0);
		assert_true(dg_slot_ready(&s, UINT32_MAX, fl));
		assert_false(dg_slot_ready(&s, 0, fl));
		assert_false(dg_slot_ready(&s, UINT32_MAX - DG_MIN_SLOTS, fl));
		assert_false(dg_slot_ready(&s, DG_MIN_SLOTS - 1, fl));

		dg_slot_publish(&s, 0u - DG_MIN_SLOTS, fl); /* lap before 0 */
		assert_int_equal(s.stamp, 0xFFFFFFC1u);
		assert_false(dg_slot_ready(&s, 0, fl));
		fill_body(&s);
		dg_slot_publish(&s, 0, fl);
		assert_int_equal(s.stamp, 1);
		assert_true(dg_slot_ready(&s, 0, fl));
		assert_false(dg_slot_ready(&s, 0u - DG_MIN_SLOTS, fl));
		assert_false(dg_slot_ready(&s, UINT32_MAX, fl));
	}
}

/*
 * With DG_RING_F_CSUM, every single-bit and every two-bit corruption of a
 * sealed slot is rejected (CRC32C's Hamming distance over 480 bits is well
 * above 2); flips in the stamp are rejected with or without the flag.
 */
static void test_csum_bit_flips(void **state)
{
	alignas(64) struct dg_frame s;
	unsigned a, b, rep;
	unsigned long pairs = 0;
	uint32_t pos;

	(void)state;
	rng_seed(4);
	for (rep = 0; rep < 3; rep++) {
		pos = (uint32_t)rng_next();
		fill_body(&s);
		dg_slot_publish(&s, pos, DG_RING_F_CSUM);
		assert_true(dg_slot_ready(&s, pos, DG_RING_F_CSUM));
		for (a = 0; a < 8 * DG_SLOT_SIZE; a++) {
			bytes(&s)[a / 8] ^= (uint8_t)(1u << (a % 8));
			assert_false(dg_slot_ready(&s, pos, DG_RING_F_CSUM));
			/* without the flag only the stamp is looked at */
			assert_true(dg_slot_ready(&s, pos, 0) == (a >= 32));
			bytes(&s)[a / 8] ^= (uint8_t)(1u << (a % 8));
		}
		for (a = 32; a < 8 * DG_SLOT_SIZE; a++) {
			bytes(&s)[a / 8] ^= (uint8_t)(1u << (a % 8));
			for (b = a + 1; b < 8 * DG_SLOT_SIZE; b++) {
				bytes(&s)[b / 8] ^= (uint8_t)(1u << (b % 8));
				if (dg_slot_ready(&s, pos, DG_RING_F_CSUM))
					fail_msg("bits %u,%u flipped: accepted",
						 a, b);
				bytes(&s)[b / 8] ^= (uint8_t)(1u << (b % 8));
				pairs++;
			}
			bytes(&s)[a / 8] ^= (uint8_t)(1u << (a % 8));
		}
		assert_true(dg_slot_ready(&s, pos, DG_RING_F_CSUM));
	}
	print_message("csum: %lu two-bit corruptions rejected\n", pairs);
	assert_int_equal(pairs, 3ul * 480 * 479 / 2);
}

/*
 * The stamp must not cancel against the bytes after it. If it only seeded
 * the CRC (which XORs it into the first four covered bytes, rpc_id), the
 * check would see nothing but stamp ^ rpc_id: a slot whose stamp and rpc_id
 * both changed by the same bits would keep its checksum. That is the torn
 * state "new stamp, new rpc_id, old everything else" when rpc ids advance
 * with positions, one single-frame RPC per slot, as they do.
 */
static void test_csum_stamp_rpc_id(void **state)
{
	uint32_t k, m, rep;
	unsigned long cases = 0;

	(void)state;
	rng_seed(8);
	/*
	 * Every stamp change a lap can make: a run of ones from bit k (ring
	 * size 2^k) up to bit m, the carry chain of pos - 2^k.
	 */
	for (k = 0; k < 32; k++) {
		for (m = k; m < 32; m++) {
			uint32_t run = (uint32_t)(((2ull << m) - 1) ^
						  ((1ull << k) - 1));
			alignas(64) struct dg_frame s;
			uint32_t pos = (uint32_t)rng_next();

			fill_body(&s);
			dg_slot_publish(&s, pos, DG_RING_F_CSUM);
			s.stamp ^= run;
			s.rpc_id ^= run;
			if (dg_slot_ready(&s, s.stamp - 1u, DG_RING_F_CSUM))
				fail_msg("stamp and rpc_id ^ 0x%08x: accepted",
					 run);
			cases++;
		}
	}
	/*
	 * The torn state itself: frame n at pos p - ring (rpc id r) under
	 * frame n + ring at pos p (rpc id r + ring, new payload); only stamp
	 * and rpc_id have landed.
	 */
	for (rep = 0; rep < 20000; rep++) {
		alignas(64) struct dg_frame old, newf, slot;
		uint32_t ring = DG_MIN_SLOTS << (rng_next() % 11);
		uint32_t pos = (uint32_t)rng_next();
		uint32_t rpc = rep % 2 ? pos : (uint32_t)rng_next();

		fill_body(&old);
		old.rpc_id = rpc - ring;
		dg_slot_publish(&old, pos - ring, DG_RING_F_CSUM);
		fill_body(&newf);
		newf.rpc_id = rpc;
		dg_slot_publish(&newf, pos, DG_RING_F_CSUM);
		slot = old;
		slot.stamp = newf.stamp;
		slot.rpc_id = newf.rpc_id;
		if (dg_slot_ready(&slot, pos, DG_RING_F_CSUM))
			fail_msg("torn (stamp, rpc_id) accepted: pos %u ring "
				 "%u rpc %u",
				 pos, ring, rpc);
		cases++;
	}
	print_message("csum: %lu stamp/rpc_id cancellations rejected\n", cases);
}

/* ---- torn slots ---- */

#define TORN_TRIALS	100000
#define TORN_SUBSETS	8
#define TORN_SLOT_WORDS (DG_SLOT_SIZE / 8)

struct torn_stats {
	unsigned long trials;
	unsigned long states;	       /* intermediate states checked */
	unsigned long new_stamp;       /* ... whose stamp was already new */
	unsigned long complete_ready;  /* complete and accepted (fine) */
	unsigned long complete_missed; /* complete but rejected: bug */
	unsigned long corrupt_csum;    /* torn, accepted with CSUM: bug */
	unsigned long corrupt_nocsum;  /* torn, accepted without CSUM */
	unsigned long trials_nocsum;   /* trials with such a state */
};

/*
 * One intermediate state of the slot. It is "complete" when it is byte for
 * byte the new frame (some bytes may not have changed between laps, so that
 * can happen before every byte has landed).
 */
static void torn_check(const struct dg_frame *slot, const struct dg_frame *newf,
		       uint32_t pos, struct torn_stats *st, bool *nocsum_seen)
{
	bool complete = memcmp(slot, newf, DG_SLOT_SIZE) == 0;
	bool ready_csum = dg_slot_ready(slot, pos, DG_RING_F_CSUM);
	bool ready_plain = dg_slot_ready(slot, pos, 0);

	st->states++;
	st->new_stamp += slot->stamp == newf->stamp;
	if (complete) {
		st->complete_ready += ready_csum;
		st->complete_missed += !ready_csum;
		return;
	}
	if (ready_csum) {
		if (!st->corrupt_csum)
			print_error("torn slot accepted with CSUM, pos %u\n",
				    pos);
		st->corrupt_csum++;
	}
	if (ready_plain) {
		st->corrupt_nocsum++;
		*nocsum_seen = true;
	}
}

/* Fisher-Yates; with identity / reversed orders now and then. */
static void shuffle(unsigned *v, unsigned n, unsigned long trial)
{
	unsigned i, j, t;

	for (i = 0; i < n; i++)
		v[i] = trial % 10 == 1 ? n - 1 - i : i;
	if (trial % 10 <= 1)
		return;
	for (i = n - 1; i > 0; i--) {
		j = (unsigned)(rng_next() % (i + 1));
		t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

/*
 * Make the new frame for pos over old (the lap before). Kinds: 0 all new
 * random bytes; 1 a few bytes changed; 2 same header, new payload; 3 the
 * same body republished; 4 the next RPC of a flow that sends one frame per
 * RPC: rpc_id advanced by the ring size, everything else new.
 */
static void make_new_frame(struct dg_frame *newf, const struct dg_frame *old,
			   uint32_t pos, uint32_t ring, unsigned kind)
{
	unsigned i, n;

	*newf = *old;
	switch (kind) {
	case 0:
		fill_body(newf);
		break;
	case 1:
		n = 1 + (unsigned)(rng_next() % 4);
		for (i = 0; i < n; i++) {
			unsigned at = 8 + (unsigned)(rng_next() % 56);

			bytes(newf)[at] ^= (uint8_t)(1 + rng_next() % 255);
		}
		break;
	case 2:
		for (i = 0; i < DG_FRAME_PAYLOAD; i++)
			newf->data[i] = (uint8_t)rng_next();
		break;
	case 3:
		break;
	default:
		fill_body(newf);
		newf->rpc_id = old->rpc_id + ring;
		break;
	}
	dg_slot_publish(newf, pos, DG_RING_F_CSUM);
}

/*
 * The safety argument for RDMA: a slot holding the previous lap (pos - ring)
 * is overwritten by the new frame for pos, the bytes landing in an arbitrary
 * order, as a remote WRITE can, or as a remote READ can observe the host's
 * stores. Every intermediate state is offered to dg_slot_ready(): with the
 * checksum it may accept only the complete new frame. Without the checksum
 * the same states are accepted torn, which shows the test can see the
 * problem.
 */
static void test_torn_slots(void **state)
{
	struct torn_stats st = {0};
	unsigned long trial;
	uint64_t t0 = now_ns();

	(void)state;
	rng_seed(5);
	for (trial = 0; trial < TORN_TRIALS; trial++) {
		alignas(64) struct dg_frame old, newf, slot;
		uint32_t ring = DG_MIN_SLOTS << (rng_next() % 11);
		uint32_t pos;
		unsigned order[DG_SLOT_SIZE], i, k;
		bool nocsum_seen = false;

		assert_true(ring <= DG_MAX_SLOTS);
		switch (rng_next() % 8) {
		case 0: /* around the wrap: pos - ring or pos itself wraps */
			pos = (uint32_t)(rng_next() % (2ull * ring)) - ring;
			break;
		case 1:
			pos = UINT32_MAX; /* stamp 0 */
			break;
		default:
			pos = (uint32_t)rng_next();
			break;
		}
		fill_body(&old);
		dg_slot_publish(&old, pos - ring, DG_RING_F_CSUM);
		make_new_frame(&newf, &old, pos, ring, (unsigned)(trial % 5));
		assert_false(dg_slot_ready(&old, pos, DG_RING_F_CSUM));
		assert_true(dg_slot_ready(&newf, pos, DG_RING_F_CSUM));

		/* byte by byte */
		slot = old;
		shuffle(order, DG_SLOT_SIZE, trial);
		for (i = 0; i < DG_SLOT_SIZE; i++) {
			bytes(&slot)[order[i]] = bytes(&newf)[order[i]];
			torn_check(&slot, &newf, pos, &st, &nocsum_seen);
		}

		/* 8-byte words */
		slot = old;
		shuffle(order, TORN_SLOT_WORDS, trial);
		for (i = 0; i < TORN_SLOT_WORDS; i++) {
			memcpy(bytes(&slot) + 8 * order[i],
			       bytes(&newf) + 8 * order[i], 8);
			torn_check(&slot, &newf, pos, &st, &nocsum_seen);
		}

		/*
		 * Random subsets of bytes, each new with a random density;
		 * usually with the whole stamp landed, as otherwise the
		 * state is rejected trivially.
		 */
		for (k = 0; k < TORN_SUBSETS; k++) {
			unsigned dens = 1 + (unsigned)(rng_next() % 7);
			bool stamp_new = rng_next() % 4 != 0;

			slot = old;
			for (i = 0; i < DG_SLOT_SIZE; i++)
				if ((i < 4 && stamp_new) ||
				    rng_next() % 8 < dens)
					bytes(&slot)[i] = bytes(&newf)[i];
			torn_check(&slot, &newf, pos, &st, &nocsum_seen);
		}
		st.trials++;
		st.trials_nocsum += nocsum_seen;
	}
	print_message("torn: %lu trials, %lu states (%lu with the new stamp), "
		      "%lu complete accepted, %lu complete rejected, "
		      "%lu torn accepted with CSUM, %lu torn accepted without "
		      "CSUM (in %lu trials), %.2f s\n",
		      st.trials, st.states, st.new_stamp, st.complete_ready,
		      st.complete_missed, st.corrupt_csum, st.corrupt_nocsum,
		      st.trials_nocsum, (double)(now_ns() - t0) / 1e9);
	assert_int_equal(st.trials, TORN_TRIALS);
	assert_int_equal(st.corrupt_csum, 0);
	assert_int_equal(st.complete_missed, 0);
	/* each byte and word walk ends complete */
	assert_true(st.complete_ready >= 2ul * TORN_TRIALS);
	/* the checker can fail: the same states are accepted torn */
	assert_true(st.corrupt_nocsum > 0);
	assert_true(st.trials_nocsum > 0);
}

/* ---- two-thread stress, shared memory, no checksum ---- */

#define STRESS_SLOTS	  64u
#define STRESS_FRAMES	  200000u
#define STRESS_TIMEOUT_NS (30ull * 1000000000ull)
#define STRESS_PAYLOAD	  (DG_FRAME_PAYLOAD - 4) /* + 4-byte checksum */

struct stress {
	struct dg_frame *ring; /* STRESS_SLOTS, 64-byte aligned */
	uint32_t base;	       /* position of frame 0 */
	uint64_t seed;
	uint64_t deadline_ns;

	/*
	 * Shared, through __atomic builtins only. head: the consumer's next
	 * position (it is done with every slot below). stop: set by whichever
	 * thread gives up, so the other one does not wait forever.
	 */
	uint32_t head;
	int stop;

	/* producer's results */
	uint32_t produced;
	bool producer_timeout;
	unsigned long full_waits;

	/* consumer's results */
	uint32_t received;
	uint32_t corrupt;
	uint32_t out_of_order;
	bool consumer_timeout;
	unsigned long empty_polls;
};

/* FNV-1a, the producer's own check over bytes 8..59 (not the ring CRC). */
static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

/*
 * The content of frame n: bytes 8..63, a pure function of (seed, n) so the
 * consumer can recompute it. rpc_id carries n, the payload is random and
 * its last four bytes hold fnv1a of bytes 8..59.
 */
static void stress_frame(uint64_t seed, uint32_t n, struct dg_frame *f)
{
	uint64_t s = seed ^ ((uint64_t)n << 20);
	uint32_t h;
	unsigned i;

	f->stamp = 0;
	f->csum = 0;
	f->rpc_id = n;
	f->conn = (uint32_t)mix64(&s);
	f->fn_id = (uint16_t)mix64(&s);
	f->len = (uint32_t)(mix64(&s) % (STRESS_PAYLOAD + 1));
	f->cnt = (uint16_t)(1 + mix64(&s) % DG_MAX_FRAMES);
	f->flags = DG_FF_REQ;
	f->status = 0;
	f->flow = (uint8_t)(n % DG_MAX_FLOWS);
	f->rsvd = 0;
	f->key = (uint32_t)mix64(&s);
	for (i = 0; i < STRESS_PAYLOAD; i++)
		f->data[i] = (uint8_t)mix64(&s);
	h = fnv1a(bytes(f) + 8, DG_SLOT_SIZE - 8 - 4);
	memcpy(&f->data[STRESS_PAYLOAD], &h, 4);
}

/*
 * Called on every failed poll: true when the thread must give up. Checks
 * the clock every 1024 polls (not a sleep) and yields the CPU then.
 */
static bool stress_give_up(struct stress *s, unsigned long *spins,
			   bool *timed_out)
{
	/* relaxed: only a flag, it orders nothing */
	if (__atomic_load_n(&s->stop, __ATOMIC_RELAXED))
		return true;
	if (++*spins % 1024)
		return false;
	if (now_ns() > s->deadline_ns) {
		*timed_out = true;
		__atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
		return true;
	}
	sched_yield();
	return false;
}

/*
 * Pacing, the same function of n on both sides: in blocks of 256 frames
 * neither, the producer, the consumer or both (at random) dawdle between
 * frames, so the ring runs empty (the consumer spins on the very slot being
 * written) and full (the producer spins on head while the consumer copies
 * the slot it is about to get back) in turn. A busy loop, not a sleep.
 * Returns whether to yield the CPU in the middle of this frame's copy (1 in
 * 8): when the two threads share a CPU, that is what lets one of them run
 * while the other is halfway through a slot.
 */
static bool stress_pace(uint64_t seed, uint32_t n, bool producer)
{
	uint64_t s = seed ^ ((uint64_t)n << 24) ^ producer;
	unsigned phase = (n / 256) % 4;
	volatile unsigned sink = 0;
	unsigned iters;
	uint64_t r = mix64(&s);

	if (phase == 0 || (phase == 1 && !producer) || (phase == 2 && producer))
		iters = 0;
	else
		iters = (unsigned)(r % 256);
	while (iters--)
		sink++;
	return (r >> 8) % 8 == 0;
}

/*
 * One byte at a time through volatile, optionally yielding halfway: slower
 * than memcpy on purpose, to widen the window in which a wrong publish or
 * release order would show.
 */
static void copy_bytes(void *dst, const void *src, size_t n, bool yield_mid)
{
	volatile uint8_t *d = dst;
	const volatile uint8_t *p = src;
	size_t i;

	for (i = 0; i < n; i++) {
		if (yield_mid && i == n / 2)
			sched_yield();
		d[i] = p[i];
	}
}

static void *stress_producer(void *arg)
{
	struct stress *s = arg;
	alignas(64) struct dg_frame f;
	unsigned long spins = 0;
	bool yield_mid;
	uint32_t n;

	for (n = 0; n < STRESS_FRAMES; n++) {
		uint32_t pos = s->base + n;
		struct dg_frame *slot = &s->ring[pos & (STRESS_SLOTS - 1)];

		stress_frame(s->seed, n, &f);
		yield_mid = stress_pace(s->seed, n, true);
		/*
		 * Room: the slot held pos - STRESS_SLOTS, which the consumer
		 * must be done with (head > pos - STRESS_SLOTS). Acquire
		 * pairs with the consumer's release store of head: its loads
		 * from that slot happen before our stores to it below.
		 */
		while ((uint32_t)(pos - __atomic_load_n(&s->head,
							__ATOMIC_ACQUIRE)) >=
		       STRESS_SLOTS) {
			s->full_waits++;
			if (stress_give_up(s, &spins, &s->producer_timeout))
				return NULL;
		}
		/*
		 * Plain stores of bytes 8..63: until the stamp says pos the
		 * consumer loads only the stamp (atomically), nothing else.
		 */
		copy_bytes(bytes(slot) + 8, bytes(&f) + 8, DG_SLOT_SIZE - 8,
			   yield_mid);
		/* its release store of the stamp orders the stores above */
		dg_slot_publish(slot, pos, 0);
		s->produced = n + 1;
	}
	return NULL;
}

static void *stress_consumer(void *arg)
{
	struct stress *s = arg;
	alignas(64) struct dg_frame got, want;
	unsigned long spins = 0;
	bool yield_mid = false;
	uint32_t n, h;

	for (n = 0; n < STRESS_FRAMES; n++) {
		uint32_t pos = s->base + n;
		struct dg_frame *slot = &s->ring[pos & (STRESS_SLOTS - 1)];
		bool bad = false;

		/*
		 * dg_slot_ready's acquire load of the stamp pairs with the
		 * producer's release store: the loads below see the frame.
		 */
		while (!dg_slot_ready(slot, pos, 0)) {
			s->empty_polls++;
			if (stress_give_up(s, &spins, &s->consumer_timeout))
				return NULL;
		}
		copy_bytes(&got, slot, sizeof(got), yield_mid);
		/*
		 * Release: our loads of the slot (the copy above) happen
		 * before the producer, acquiring this head, overwrites it.
		 */
		__atomic_store_n(&s->head, pos + 1, __ATOMIC_RELEASE);

		stress_frame(s->seed, n, &want);
		memcpy(&h, &got.data[STRESS_PAYLOAD], 4);
		if (got.stamp != dg_stamp(pos) || got.csum != 0 ||
		    h != fnv1a(bytes(&got) + 8, DG_SLOT_SIZE - 8 - 4) ||
		    memcmp(bytes(&got) + 8, bytes(&want) + 8, DG_SLOT_SIZE - 8))
			bad = true;
		if (got.rpc_id != n) {
			s->out_of_order++;
			bad = true;
		}
		s->corrupt += bad;
		s->received++;
		yield_mid = stress_pace(s->seed, n, false);
	}
	return NULL;
}

static void run_stress(uint32_t base, uint64_t seed)
{
	struct stress s;
	pthread_t prod, cons;
	uint32_t pos;
	uint64_t t0;

	memset(&s, 0, sizeof(s));
	s.ring = aligned_alloc(64, STRESS_SLOTS * DG_SLOT_SIZE);
	assert_non_null(s.ring);
	memset(s.ring, 0, STRESS_SLOTS * DG_SLOT_SIZE);
	s.base = base;
	s.seed = seed;
	s.head = base;
	/*
	 * A ring that does not start at 0 holds the lap before base, as one
	 * that had been running would (a zeroed slot is only "the lap before
	 * 0").
	 */
	if (base)
		for (pos = base - STRESS_SLOTS; pos != base; pos++) {
			struct dg_frame *f = &s.ring[pos & (STRESS_SLOTS - 1)];

			fill_body(f);
			dg_slot_publish(f, pos, 0);
		}
	t0 = now_ns();
	s.deadline_ns = t0 + STRESS_TIMEOUT_NS;
	assert_int_equal(pthread_create(&cons, NULL, stress_consumer, &s), 0);
	assert_int_equal(pthread_create(&prod, NULL, stress_producer, &s), 0);
	assert_int_equal(pthread_join(prod, NULL), 0);
	assert_int_equal(pthread_join(cons, NULL), 0);
	print_message("stress base 0x%08x: %u produced, %u received, "
		      "%u corrupt, %u out of order, %lu empty polls, "
		      "%lu full waits, %.3f s%s%s\n",
		      base, s.produced, s.received, s.corrupt, s.out_of_order,
		      s.empty_polls, s.full_waits,
		      (double)(now_ns() - t0) / 1e9,
		      s.producer_timeout ? ", PRODUCER TIMED OUT" : "",
		      s.consumer_timeout ? ", CONSUMER TIMED OUT" : "");
	free(s.ring);
	assert_false(s.producer_timeout);
	assert_false(s.consumer_timeout);
	assert_int_equal(s.produced, STRESS_FRAMES);
	assert_int_equal(s.received, STRESS_FRAMES);
	assert_int_equal(s.corrupt, 0);
	assert_int_equal(s.out_of_order, 0);
	assert_int_equal(s.head, base + STRESS_FRAMES);
}

static void test_stress_local(void **state)
{
	(void)state;
	rng_seed(6);
	/* fresh zeroed ring from position 0 */
	run_stress(0, rng_next());
	/* across the 32-bit wrap, halfway through */
	run_stress(0u - STRESS_FRAMES / 2, rng_next());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_known),
		cmocka_unit_test(test_layout_all),
		cmocka_unit_test(test_layout_invalid),
		cmocka_unit_test(test_frames_for),
		cmocka_unit_test(test_stamp_values),
		cmocka_unit_test(test_zeroed_slot),
		cmocka_unit_test(test_publish_ready),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_csum_bit_flips),
		cmocka_unit_test(test_csum_stamp_rpc_id),
		cmocka_unit_test(test_torn_slots),
		cmocka_unit_test(test_stress_local),
	};

	return cmocka_run_group_tests_name("frame", tests, group_setup, NULL);
}
