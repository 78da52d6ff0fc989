// SPDX-License-Identifier: MIT
/*
 * The benchmarks' log-linear histogram: bucket bounds, relative error,
 * percentiles against exact ones, merging, and extremes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../../bench/bench_common.h"

/* Every value lands in a bucket whose middle is within 1/32 of it. */
static void test_buckets(void **state)
{
	uint64_t v;
	uint32_t last = 0;

	(void)state;
	for (v = 0; v < 64; v++) {
		assert_int_equal(hist_index(v), v);
		assert_true(hist_value(hist_index(v)) == (double)v);
	}
	for (v = 64; v < (1ull << 40); v += v / 7 + 1) {
		uint32_t i = hist_index(v);
		double mid = hist_value(i);

		assert_true(i < HIST_BUCKETS);
		assert_true(i >= last); /* monotonic */
		last = i;
		assert_true(mid > (double)v * (1 - 1.0 / 32));
		assert_true(mid < (double)v * (1 + 1.0 / 32));
	}
	/* Values past the range go to the last bucket, not out of bounds. */
	assert_int_equal(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
	assert_int_equal(hist_index(1ull << 47), HIST_BUCKETS - 1 - 31);
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Percentiles agree with the exact ones within the bucket width. */
static void test_percentiles(void **state)
{
	static struct bench_hist h, a, b;
	enum { N = 100000 };
	uint64_t *v = malloc(N * sizeof(*v)), seed = 42;
	double ps[] = {0.5, 0.9, 0.99, 0.999};
	uint32_t i;

	(void)state;
	assert_non_null(v);
	hist_init(&h);
	hist_init(&a);
	hist_init(&b);
	for (i = 0; i < N; i++) {
		/* A long-tailed mix: mostly ~10 us, a tail to ~10 ms. */
		v[i] = 10000 + bench_exp_ns(&seed, i % 100 ? 2000.0 : 2e6);
		hist_add(&h, v[i]);
		hist_add(i & 1 ? &a : &b, v[i]);
	}
	qsort(v, N, sizeof(*v), cmp);
	for (i = 0; i < 4; i++) {
		double exact = (double)v[(size_t)(ps[i] * N) - 1];
		double got = hist_pct(&h, ps[i]);

		assert_true(got > exact * (1 - 1.0 / 16));
		assert_true(got < exact * (1 + 1.0 / 16));
	}
	assert_true(hist_pct(&h, 1.0) == (double)v[N - 1]);
	assert_int_equal(h.min, v[0]);
	/* Two halves merged are the whole. */
	hist_merge(&a, &b);
	assert_int_equal(a.n, h.n);
	assert_int_equal(a.sum, h.sum);
	assert_int_equal(a.max, h.max);
	assert_memory_equal(a.b, h.b, sizeof(h.b));
	free(v);
}

static void test_empty_and_one(void **state)
{
	static struct bench_hist h;

	(void)state;
	hist_init(&h);
	assert_true(hist_pct(&h, 0.5) == 0);
	hist_add(&h, 123456);
	/* One sample: every percentile is that sample, clamped exactly. */
	assert_true(hist_pct(&h, 0.5) == 123456.0);
	assert_true(hist_pct(&h, 0.999) == 123456.0);
	assert_true(hist_pct(&h, 1.0) == 123456.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_percentiles),
		cmocka_unit_test(test_empty_and_one),
	};

	return cmocka_run_group_tests_name("hist", tests, NULL, NULL);
}
