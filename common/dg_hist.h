/* SPDX-License-Identifier: MIT */
/*
 * dg_hist.h - a log-linear histogram of nanoseconds, the layout of
 * bench/bench_common.h's: exact below 64 ns, then 32 buckets per power of
 * two (each at most 3% wide) up to 2^40 ns (about 18 minutes; larger
 * values land in the last bucket). Adding a value is a count-leading-zeros
 * and three stores: no allocation, no call. The engine keeps one per
 * service (request seen -> response seen); dagger-ctl computes quantiles
 * from it, and from the difference of two snapshots (top).
 */
#ifndef DG_HIST_H
#define DG_HIST_H

#include <stdint.h>
#include <string.h>

#define DG_HIST_SUB	32u
#define DG_HIST_LINEAR	64u
#define DG_HIST_MAXBIT	40u
#define DG_HIST_BUCKETS (DG_HIST_LINEAR + (DG_HIST_MAXBIT - 5u) * DG_HIST_SUB)

struct dg_hist {
	uint64_t n, sum, max;
	uint64_t b[DG_HIST_BUCKETS];
};

static inline uint32_t dg_hist_index(uint64_t v)
{
	uint32_t msb;

	if (v < DG_HIST_LINEAR)
		return (uint32_t)v;
	msb = 63u - (uint32_t)__builtin_clzll(v);
	if (msb > DG_HIST_MAXBIT)
		return DG_HIST_BUCKETS - 1;
	return DG_HIST_LINEAR + (msb - 6u) * DG_HIST_SUB +
	       (uint32_t)((v >> (msb - 5u)) - DG_HIST_SUB);
}

/* The middle of bucket i, in ns. */
static inline double dg_hist_value(uint32_t i)
{
	uint32_t e, top;

	if (i < DG_HIST_LINEAR)
		return i;
	e = (i - DG_HIST_LINEAR) / DG_HIST_SUB + 6u;
	top = (i - DG_HIST_LINEAR) % DG_HIST_SUB + DG_HIST_SUB;
	return ((double)top + 0.5) * (double)(1ull << (e - 5u));
}

static inline void dg_hist_add(struct dg_hist *h, uint64_t v)
{
	h->b[dg_hist_index(v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

/*
 * The p-quantile (0 < p < 1) of counts b[] (n in all) in ns: the middle
 * of the bucket that holds the rank ceil(p * n), at most max (when max is
 * not 0). 0 when n is 0.
 */
static inline double dg_hist_quantile(const uint64_t *b, uint64_t n,
				      uint64_t max, double p)
{
	uint64_t rank, seen = 0;
	uint32_t i;

	if (!n)
		return 0;
	rank = (uint64_t)(p * (double)n);
	if ((double)rank < p * (double)n)
		rank++;
	if (!rank)
		rank = 1;
	for (i = 0; i < DG_HIST_BUCKETS; i++) {
		seen += b[i];
		if (seen >= rank) {
			double v = dg_hist_value(i);

			return max && v > (double)max ? (double)max : v;
		}
	}
	return (double)max;
}

#endif /* DG_HIST_H */
