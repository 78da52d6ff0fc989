/* SPDX-License-Identifier: MIT */
/*
 * bench_common.h - what the benchmarks share: a log-linear latency
 * histogram, clocks, a cycle counter, Poisson inter-arrival times, the
 * result table and JSON line, and callgrind collection toggles.
 *
 * Header-only (static functions) so each benchmark stays one file.
 */
#ifndef DG_BENCH_COMMON_H
#define DG_BENCH_COMMON_H

#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif
#ifndef BENCH_HAVE_CALLGRIND
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_DUMP_STATS_AT(s) ((void)(s))
#endif

/* ---- clocks -------------------------------------------------------------- */

static inline uint64_t bench_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The CPU's cycle counter (x86: TSC; arm64: the virtual counter). */
static inline uint64_t bench_cycles(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint32_t lo, hi;

	/*
	 * volatile asm, not __rdtsc(): it stays in program order with the
	 * callgrind toggles (also volatile asm), outside what they count.
	 */
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
#elif defined(__aarch64__)
	uint64_t v;

	__asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
	return v;
#else
	return bench_now_ns();
#endif
}

/* Cycle-counter ticks per nanosecond, measured over ~50 ms. */
static inline double bench_cycles_per_ns(void)
{
	uint64_t t0 = bench_now_ns(), c0 = bench_cycles(), t1, c1;
	struct timespec d = {0, 50000000};

	nanosleep(&d, NULL);
	t1 = bench_now_ns();
	c1 = bench_cycles();
	return t1 > t0 ? (double)(c1 - c0) / (double)(t1 - t0) : 1.0;
}

/*
 * A clock in nanoseconds read from the cycle counter (a few ns, against
 * tens for clock_gettime): for per-call time stamps in the measured loop,
 * where the bench's own cost would otherwise count against the stack.
 * bench_fast_init() calibrates it against CLOCK_MONOTONIC once (50 ms).
 */
static double bench_fast_scale __attribute__((unused)) = 1.0;
static uint64_t bench_fast_c0 __attribute__((unused));
static uint64_t bench_fast_t0 __attribute__((unused));

static inline void bench_fast_init(void)
{
	bench_fast_scale = 1.0 / bench_cycles_per_ns();
	bench_fast_t0 = bench_now_ns();
	bench_fast_c0 = bench_cycles();
}

static inline uint64_t bench_fast_ns(void)
{
	return bench_fast_t0 +
	       (uint64_t)((double)(bench_cycles() - bench_fast_c0) *
			  bench_fast_scale);
}

/* ---- histogram ----------------------------------------------------------- */

/*
 * Log-linear buckets of nanoseconds: exact below 64 ns, then 32 buckets
 * per power of two (at most 3% wide) up to 2^47 ns (39 hours).
 */
#define HIST_SUB     32u
#define HIST_LINEAR  64u
#define HIST_MAXBIT  47u
#define HIST_BUCKETS (HIST_LINEAR + (HIST_MAXBIT - 5u) * HIST_SUB)

struct bench_hist {
	uint64_t n, sum, min, max;
	uint64_t b[HIST_BUCKETS];
};

static inline void hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

static inline uint32_t hist_index(uint64_t v)
{
	uint32_t msb;

	if (v < HIST_LINEAR)
		return (uint32_t)v;
	msb = 63u - (uint32_t)__builtin_clzll(v);
	if (msb > HIST_MAXBIT)
		return HIST_BUCKETS - 1;
	return HIST_LINEAR + (msb - 6u) * HIST_SUB +
	       (uint32_t)((v >> (msb - 5u)) - HIST_SUB);
}

/* The middle of bucket i, in ns. */
static inline double hist_value(uint32_t i)
{
	uint32_t e, top;

	if (i < HIST_LINEAR)
		return i;
	e = (i - HIST_LINEAR) / HIST_SUB + 6u;
	top = (i - HIST_LINEAR) % HIST_SUB + HIST_SUB;
	return ((double)top + 0.5) * (double)(1ull << (e - 5u));
}

static inline void hist_add(struct bench_hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->n++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

static inline void hist_merge(struct bench_hist *d, const struct bench_hist *s)
{
	uint32_t i;

	for (i = 0; i < HIST_BUCKETS; i++)
		d->b[i] += s->b[i];
	d->n += s->n;
	d->sum += s->sum;
	if (s->min < d->min)
		d->min = s->min;
	if (s->max > d->max)
		d->max = s->max;
}

/* The p-quantile (0 < p <= 1) in ns; the exact max for p == 1. */
static inline double hist_pct(const struct bench_hist *h, double p)
{
	uint64_t rank, seen = 0;
	uint32_t i;

	if (!h->n)
		return 0;
	if (p >= 1.0)
		return (double)h->max;
	rank = (uint64_t)ceil(p * (double)h->n);
	if (!rank)
		rank = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			double v = hist_value(i);

			/* Never outside what was seen. */
			if (v > (double)h->max)
				v = (double)h->max;
			if (v < (double)h->min)
				v = (double)h->min;
			return v;
		}
	}
	return (double)h->max;
}

/* Writes "x y" lines of the latency CDF (us, fraction) to f. */
static inline void hist_cdf(const struct bench_hist *h, FILE *f)
{
	uint64_t seen = 0;
	uint32_t i;

	for (i = 0; i < HIST_BUCKETS; i++) {
		if (!h->b[i])
			continue;
		seen += h->b[i];
		fprintf(f, "%.3f %.6f\n", hist_value(i) / 1e3,
			(double)seen / (double)h->n);
	}
}

/* ---- arrivals ------------------------------------------------------------ */

/* xorshift64*: a per-thread generator, seeded by the caller. */
static inline uint64_t bench_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* An exponential inter-arrival time with the given mean (Poisson). */
static inline uint64_t bench_exp_ns(uint64_t *s, double mean_ns)
{
	double u = ((double)(bench_rand(s) >> 11) + 0.5) / 9007199254740992.0;

	return (uint64_t)(-log(u) * mean_ns);
}

/* ---- results ------------------------------------------------------------- */

struct bench_result {
	const char *bench, *mode, *label;
	uint32_t size, threads, conns, window;
	double rate;	/* offered load (open loop), rps; 0: closed */
	double seconds; /* measured interval */
	uint64_t rpcs, errors;
	uint64_t busy;	/* BUSY answers, sent again (not errors) */
	double cyc_rpc; /* client thread cycles per RPC (busy work only) */
	uint64_t polls_empty; /* for the callgrind correction */
	uint64_t cg_wrapped;  /* calls counted under callgrind (ditto) */
	struct bench_hist *h;
};

static inline void bench_print(const struct bench_result *r, bool json,
			       bool header)
{
	const struct bench_hist *h = r->h;
	double krps = r->seconds > 0 ? (double)r->rpcs / r->seconds / 1e3 : 0;

	if (json) {
		printf("{\"bench\":\"%s\",\"mode\":\"%s\",\"label\":\"%s\","
		       "\"size\":%u,\"threads\":%u,\"conns\":%u,"
		       "\"window\":%u,\"rate\":%.0f,\"seconds\":%.3f,"
		       "\"rpcs\":%llu,\"errors\":%llu,\"krps\":%.3f,"
		       "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,"
		       "\"p999_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f,"
		       "\"cyc_rpc\":%.0f,\"polls_empty\":%llu,"
		       "\"cg_wrapped\":%llu,\"busy\":%llu}\n",
		       r->bench, r->mode, r->label ? r->label : "", r->size,
		       r->threads, r->conns, r->window, r->rate, r->seconds,
		       (unsigned long long)r->rpcs,
		       (unsigned long long)r->errors, krps,
		       hist_pct(h, 0.5) / 1e3, hist_pct(h, 0.9) / 1e3,
		       hist_pct(h, 0.99) / 1e3, hist_pct(h, 0.999) / 1e3,
		       (double)h->max / 1e3,
		       h->n ? (double)h->sum / (double)h->n / 1e3 : 0,
		       r->cyc_rpc, (unsigned long long)r->polls_empty,
		       (unsigned long long)r->cg_wrapped,
		       (unsigned long long)r->busy);
		fflush(stdout);
		return;
	}
	if (header)
		printf("%-8s %-6s %6s %4s %5s %6s %9s %7s %9s %8s %8s %8s "
		       "%8s %8s %8s\n",
		       "bench", "mode", "bytes", "thr", "conns", "window",
		       "rpcs", "errors", "Krps", "p50_us", "p90_us", "p99_us",
		       "p999_us", "max_us", "cyc/rpc");
	printf("%-8s %-6s %6u %4u %5u %6u %9llu %7llu %9.2f %8.1f %8.1f "
	       "%8.1f %8.1f %8.1f %8.0f\n",
	       r->bench, r->mode, r->size, r->threads, r->conns, r->window,
	       (unsigned long long)r->rpcs, (unsigned long long)r->errors, krps,
	       hist_pct(h, 0.5) / 1e3, hist_pct(h, 0.9) / 1e3,
	       hist_pct(h, 0.99) / 1e3, hist_pct(h, 0.999) / 1e3,
	       (double)h->max / 1e3, r->cyc_rpc);
	fflush(stdout);
}

/* ---- the clients' clock ----------------------------------------------------
 */

/* What a client thread shares with the clock (first in its state). */
struct bench_live {
	uint64_t done; /* completions so far (relaxed stores) */
	int rc;	       /* non-zero: the thread failed */
};

/*
 * Waits until n client threads (their bench_live every stride bytes from
 * live) are connected (*nready) or one failed; then, when timed, runs
 * warmup seconds (*phase 0) and duration measured seconds (*phase 1),
 * printing progress once a second unless quiet, and sets *phase 2. Stores
 * the measured interval's start in *t0 and, when timed, its end in *t_end.
 */
static inline void bench_clock(const char *prog, volatile int *phase,
			       const int *nready, volatile sig_atomic_t *stop,
			       const void *live, size_t stride, uint32_t n,
			       bool timed, double warmup, double duration,
			       bool quiet, uint64_t *t0, uint64_t *t_end)
{
#define LIVE(i) ((const struct bench_live *)((const char *)live + (i)*stride))
	uint64_t t_meas, last = 0;
	uint32_t i;

	/* Connections first (1,000 of them take a while): then the clock. */
	while (__atomic_load_n(nready, __ATOMIC_ACQUIRE) < (int)n && !*stop) {
		uint32_t failed = 0;

		for (i = 0; i < n; i++)
			failed += __atomic_load_n(&LIVE(i)->rc,
						  __ATOMIC_RELAXED) != 0;
		if (failed)
			break;
		usleep(1000);
	}
	*t0 = bench_now_ns();
	if (!timed)
		return;
	t_meas = *t0 + (uint64_t)(warmup * 1e9);
	*t_end = t_meas + (uint64_t)(duration * 1e9);
	while (!*stop) {
		uint64_t now = bench_now_ns(), done = 0, wake;

		if (*phase == 0 && now >= t_meas) {
			*t0 = now;
			*t_end = now + (uint64_t)(duration * 1e9);
			__atomic_store_n(phase, 1, __ATOMIC_RELEASE);
		}
		if (now >= *t_end)
			break;
		/* Wake for the next phase change or report. */
		wake = *phase ? *t_end : t_meas;
		if (wake > now + 1000000000ull)
			wake = now + 1000000000ull;
		usleep((useconds_t)((wake - now) / 1000 + 1));
		for (i = 0; i < n; i++)
			done += __atomic_load_n(&LIVE(i)->done,
						__ATOMIC_RELAXED);
		if (!quiet)
			fprintf(stderr, "%s: %5.1f s  %9.2f Krps%s\n", prog,
				(bench_now_ns() - *t0) / 1e9,
				(double)(done - last) / 1e3,
				*phase ? "" : "  (warm-up)");
		last = done;
	}
	*t_end = bench_now_ns();
	__atomic_store_n(phase, 2, __ATOMIC_RELEASE);
#undef LIVE
}

#endif /* DG_BENCH_COMMON_H */
