// SPDX-License-Identifier: MIT
/*
 * dagger-bench: latency and throughput of dagger RPCs.
 *
 *   dagger-bench server --engine ADDR:PORT [--threads N] ...
 *   dagger-bench client --engine ADDR:PORT [--remote ADDR:PORT] ...
 *   dagger-bench local  [--loopback] ...   (engine, servers and clients in
 *                                           this process, shared memory)
 *
 * Clients run closed loop (--window N calls in flight per thread) or open
 * loop (--rate R: Poisson arrivals, R calls/s over all threads; latency
 * counts from each call's scheduled time, so a stalled client cannot hide
 * its queueing). Functions: echo, or --work-ns N (the server spins N ns,
 * or with --work-sleep sleeps them, then echoes). --workers N serves on a
 * worker pool of N threads behind the server threads (dispatch threads
 * that only move requests and responses). Latencies go into a log-linear
 * histogram; the result is a table row or a JSON line (--json) with
 * p50/p90/p99/p99.9/max, Krps, errors, and the client thread's busy cycles per
 * RPC: cycles spent inside dg_call and inside the dg_poll calls that returned
 * completions.
 *
 * --callgrind: run under `valgrind --tool=callgrind --collect-atstart=no`;
 * collection is switched on only inside dg_call/dg_poll (client) or
 * dg_serve_poll (server) during the measured interval, then a dump
 * "rpcs" ("server-rpcs") is written, then 10000 empty polls are collected
 * into a dump "empty" ("server-empty") so that the polls that found
 * nothing can be subtracted, and 10000 calls of the same wrapper around an
 * empty function into "wrap" ("server-wrap"): what the collection's own
 * toggles, the call and the return add to each counted call, taken out
 * for the counted calls that were not empty polls ("cg_wrapped" in the
 * JSON counts them all). With --separate-threads=yes each thread's dumps
 * are its own; the names tell the client's from the server's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "bench_common.h"
#include "dagger/dagger.h"
#include "engine.h"

enum { FN_ECHO = 1, FN_WORK = 2 };
enum { CALIB_POLLS = 10000 };
#define TS_MASK 0xffffu /* send times by rpc id; far more than in flight */

struct cfg {
	const char *mode;
	char engine_addr[64], remote_addr[64];
	uint16_t engine_port, remote_port;
	const char *src, *service, *label, *cdf;
	const char *shm_path; /* --engine unix:PATH: an engine daemon */
	bool loopback, json, quiet, callgrind, yield, server_only, pin, csum;
	bool work_sleep;
	uint32_t workers;
	char listen_addr[64];
	uint16_t listen_port;
	uint32_t threads, sthreads, conns, size, window, work_ns, slots;
	uint64_t payload; /* --payload: bytes of each payload area (0: auto) */
	int iface;	  /* --mode: enum dg_mode (0: the library's default) */
	uint32_t trace;	  /* --trace N: every Nth call is traced (0: none) */
	uint32_t spin_us;
	bool busy_poll;
	double rate, duration, warmup, wait;
	uint64_t requests;
};

static struct cfg C = {.service = "bench",
		       .threads = 1,
		       .sthreads = 1,
		       .conns = 1,
		       .size = 64,
		       .window = 1,
		       .duration = 5,
		       .warmup = 1};

/* 0 warm-up, 1 measuring, 2 stopping. */
static volatile int phase;
static volatile sig_atomic_t got_signal;
/* Client threads connected and about to call: the clock starts then. */
static int nready;

/* ---- server ----------------------------------------------------------------
 */

static void spin_ns(uint32_t ns)
{
	uint64_t end = bench_now_ns() + ns;

	while (bench_now_ns() < end)
		;
}

/* --pin: client thread i on CPU i, the in-process engine on the last. */
static void pin_thread(pthread_t t, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(t, sizeof(set), &set);
}

static int h_echo(void *arg, const struct dg_request *req,
		  struct dg_response *resp)
{
	(void)arg;
	/*
	 * A large request: its response built in place in the payload area
	 * (no copy by the library); the echo's own copy is the
	 * application's work.
	 */
	if (req->len > DG_LARGE_DEFAULT && dg_response_buf(req, resp, req->len))
		return DG_ST_APP_BASE + 1;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

static int h_work(void *arg, const struct dg_request *req,
		  struct dg_response *resp)
{
	uint32_t ns;

	if (req->len < 4)
		return DG_ST_APP_BASE; /* the request names the work */
	memcpy(&ns, req->data, 4);
	if (C.work_sleep) {
		/* Work that waits (storage, a device): the core is free. */
		struct timespec t;
		uint64_t end;

		clock_gettime(CLOCK_MONOTONIC, &t);
		end = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec +
		      ns;
		t.tv_sec = (time_t)(end / 1000000000u);
		t.tv_nsec = (long)(end % 1000000000u);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t,
				       NULL) == EINTR)
			;
	} else {
		spin_ns(ns);
	}
	return h_echo(arg, req, resp);
}

static const struct dg_handler handlers[] = {{FN_ECHO, h_echo},
					     {FN_WORK, h_work}};

struct srv_thread {
	struct dg_host *h;
	uint32_t flow;
	struct dg_service_def def;
	uint64_t served, busy_cyc, empty, wrapped;
	int rc;
	pthread_t thr;
};

/*
 * CALLGRIND_TOGGLE_COLLECT with its request words prepared once: the
 * macro fills them on the stack at every use, about a dozen instructions
 * that would be counted with the stack's own. The sequence is valgrind's
 * documented client-request preamble for x86-64.
 */
#if defined(__x86_64__)
static const unsigned long cg_toggle_req[6] = {VG_USERREQ__TOGGLE_COLLECT};

static inline void cg_toggle(void)
{
	unsigned long r;

	__asm__ volatile("rolq $3, %%rdi\n\trolq $13, %%rdi\n\t"
			 "rolq $61, %%rdi\n\trolq $51, %%rdi\n\t"
			 "xchgq %%rbx, %%rbx"
			 : "=d"(r)
			 : "a"(cg_toggle_req), "0"(0ul)
			 : "cc", "memory");
}
#else
static inline void cg_toggle(void)
{
	CALLGRIND_TOGGLE_COLLECT;
}
#endif

/*
 * The stack's calls as callgrind counts them: the collection toggles
 * around exactly one call, in a function of its own so that little of the
 * bench is counted with it (callgrind applies a toggle at the next basic
 * block).
 */
static __attribute__((noinline)) int cg_call(struct dg_flow *f, int conn,
					     uint16_t fn, const void *req,
					     size_t len, uint32_t *id)
{
	int rc;

	cg_toggle();
	rc = dg_call(f, conn, fn, req, len, id);
	cg_toggle();
	return rc;
}

static __attribute__((noinline)) int cg_call_buf(struct dg_flow *f, size_t len,
						 void **p)
{
	int rc;

	cg_toggle();
	rc = dg_call_buf(f, len, p);
	cg_toggle();
	return rc;
}

static __attribute__((noinline)) int cg_poll(struct dg_flow *f,
					     struct dg_completion *c, int max)
{
	int k;

	cg_toggle();
	k = dg_poll(f, c, max);
	cg_toggle();
	return k;
}

/* The wrappers' own cost: the same toggles around a function that does
 * nothing with the same arguments. */
static __attribute__((noinline)) int nop_poll(struct dg_flow *f,
					      struct dg_completion *c, int max)
{
	__asm__ volatile("" : : "r"(f), "r"(c), "r"(max) : "memory");
	return 0;
}

static __attribute__((noinline)) int cg_nop(struct dg_flow *f,
					    struct dg_completion *c, int max)
{
	int k;

	cg_toggle();
	k = nop_poll(f, c, max);
	cg_toggle();
	return k;
}

static __attribute__((noinline)) int cg_serve_poll(struct dg_flow *f, int max)
{
	int k;

	cg_toggle();
	k = dg_serve_poll(f, max);
	cg_toggle();
	return k;
}

/*
 * A thread (server or client) that found nothing waits as the library's
 * own threads do (dg_wait, dg_server_start): dg_flow_idle spins for the
 * flow's spin (the library's default, or --spin-us), takes its yield
 * phase (a client with calls outstanding; one server thread at a time),
 * then sleeps until the engine delivers to its flow or timeout_ms pass:
 * idle threads cost no CPU and leave the core to the ones that have work.
 * Not with --yield or --busy-poll (they spin on).
 */
static void idle_sleep(struct dg_flow *f, uint64_t *t0, int timeout_ms,
		       bool own_calls)
{
	if (timeout_ms > 0 &&
	    dg_flow_idle(f, t0, timeout_ms, -1, own_calls) > 0)
		*t0 = 0; /* slept: spin again first */
}

static void *server_main(void *arg)
{
	struct srv_thread *s = arg;
	struct dg_flow *f = dg_host_flow(s->h, s->flow);
	uint64_t idle_t0 = 0;
	uint32_t idle = 0, i;

	s->rc = dg_serve(f, &s->def, 30000);
	if (s->rc)
		return NULL;
	while (__atomic_load_n(&phase, __ATOMIC_RELAXED) < 2 && !got_signal) {
		uint64_t t = bench_cycles();
		int k;

		if (C.callgrind)
			s->wrapped++;
		k = C.callgrind ? cg_serve_poll(f, 32) : dg_serve_poll(f, 32);
		if (k > 0) {
			s->busy_cyc += bench_cycles() - t;
			s->served += (uint64_t)k;
			idle = 0;
			idle_t0 = 0;
		} else {
			s->empty++;
			/* Fewer cores than pollers: let the others run. */
			if (C.callgrind)
				usleep(200); /* few empty polls to subtract */
			else if (C.yield || C.busy_poll)
				sched_yield();
			else if ((++idle & 255) == 0)
				idle_sleep(f, &idle_t0, 100,
					   false); /* then the phase */
		}
	}
	if (C.callgrind) {
		CALLGRIND_DUMP_STATS_AT("server-rpcs");
		for (i = 0; i < CALIB_POLLS; i++)
			cg_serve_poll(f, 32);
		CALLGRIND_DUMP_STATS_AT("server-empty");
		for (i = 0; i < CALIB_POLLS; i++)
			cg_nop(f, NULL, 32);
		CALLGRIND_DUMP_STATS_AT("server-wrap");
	}
	return NULL;
}

/* --workers: the library's worker pool behind n dispatch threads. */
static struct dg_server *pool;
static struct dg_service_def pool_def;

static int start_servers(struct dg_host *h, struct srv_thread *s, uint32_t n)
{
	uint32_t i;

	if (C.workers) {
		struct dg_server_opts so = {.nthreads = n,
					    .workers = C.workers};

		/* Sleeping handlers: no timer slack on top of their time. */
		prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
		for (i = 0; i < n; i++)
			s[i] = (struct srv_thread){.h = h, .flow = i};
		pool_def = (struct dg_service_def){.name = C.service,
						   .handlers = handlers,
						   .nhandlers = 2};
		return dg_server_start_opts(h, &pool_def, &so, &pool);
	}
	if (C.work_sleep)
		prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	for (i = 0; i < n; i++) {
		s[i] = (struct srv_thread){.h = h,
					   .flow = i,
					   .def = {.name = C.service,
						   .handlers = handlers,
						   .nhandlers = 2}};
		if (pthread_create(&s[i].thr, NULL, server_main, &s[i]))
			return -EAGAIN;
	}
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
}

/* Attaches, retrying for --wait seconds while the engine is not up yet. */
static int attach_wait(const struct dg_host_opts *o, struct dg_host **h)
{
	uint64_t until = bench_now_ns() + (uint64_t)(C.wait * 1e9);
	int rc;

	while ((rc = dg_host_attach(o, h)) != 0 && !got_signal &&
	       bench_now_ns() < until)
		usleep(200000);
	if (rc && o->engine_addr)
		fprintf(stderr, "dagger-bench: attach to %s:%u: %s\n",
			o->engine_addr, o->engine_port, strerror(-rc));
	else if (rc)
		fprintf(stderr, "dagger-bench: attach to unix:%s: %s\n",
			o->shm_path, strerror(-rc));
	return rc;
}

/* Joins the server threads and prints their JSON line. */
static void join_servers(struct srv_thread *s, uint32_t n)
{
	uint64_t served = 0, cyc = 0, empty = 0, wrapped = 0;
	uint32_t i;

	if (pool) {
		dg_server_stop(pool);
		pool = NULL;
		for (i = 0; i < n; i++) {
			struct dg_flow_stats fs;

			dg_flow_stats(dg_host_flow(s[i].h, s[i].flow), &fs);
			served += fs.responses;
		}
		n = 0;
	}
	for (i = 0; i < n; i++) {
		pthread_join(s[i].thr, NULL);
		if (s[i].rc)
			fprintf(stderr, "dagger-bench: serve: %s\n",
				strerror(-s[i].rc));
		served += s[i].served;
		cyc += s[i].busy_cyc;
		empty += s[i].empty;
		wrapped += s[i].wrapped;
	}
	printf("{\"bench\":\"dagger-server\",\"label\":\"%s\",\"threads\":%u,"
	       "\"workers\":%u,\"served\":%llu,\"cyc_rpc\":%.0f,"
	       "\"polls_empty\":%llu,\"cg_wrapped\":%llu,\"calib_polls\":%u}\n",
	       C.label ? C.label : "", C.sthreads, C.workers,
	       (unsigned long long)served,
	       served ? (double)cyc / (double)served : 0,
	       (unsigned long long)empty, (unsigned long long)wrapped,
	       CALIB_POLLS);
}

static int run_server(void)
{
	struct dg_host_opts o = {.engine_addr =
					 C.shm_path ? NULL : C.engine_addr,
				 .engine_port = C.engine_port,
				 .shm_path = C.shm_path,
				 .csum = C.csum,
				 .mode = C.iface,
				 .spin_us = C.spin_us,
				 .busy_poll = C.busy_poll,
				 .src_addr = C.src,
				 .nflows = C.sthreads,
				 .slots = C.slots,
				 .payload = C.payload,
				 .timeout_ms = 30000};
	struct srv_thread *s = calloc(C.sthreads, sizeof(*s));
	struct dg_host *h;
	int rc;

	if (!s)
		return 1;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rc = attach_wait(&o, &h);
	if (rc) {
		free(s);
		return 1;
	}
	if (start_servers(h, s, C.sthreads))
		return 1;
	fprintf(stderr, "dagger-bench: serving \"%s\" with %u thread(s)\n",
		C.service, C.sthreads);
	while (!got_signal && dg_host_check(h) == 0)
		usleep(100000);
	phase = 2;
	join_servers(s, C.sthreads);
	dg_host_detach(h);
	free(s);
	return 0;
}

/* ---- client ----------------------------------------------------------------
 */

struct cli_thread {
	struct bench_live live; /* first: the clock reads it */
	struct dg_host *h;
	uint32_t flow;
	struct bench_hist hist;
	struct bench_hist *thist; /* --trace: the traced calls' latency */
	uint64_t rpcs, errors, busy_cyc, empty, busy, wrapped;
	int first_err;
	pthread_t thr;
};

static int open_conns(struct dg_flow *f, int *conns)
{
	uint64_t until = bench_now_ns() + 30000000000ull;
	uint32_t i;

	for (i = 0; i < C.conns; i++) {
		int c;

		do {
			c = dg_connect(
				f, C.remote_addr[0] ? C.remote_addr : NULL,
				C.remote_port,
				C.loopback ? DG_LOOPBACK_SERVICE : C.service,
				10000);
			if (c == -ENOENT)
				usleep(10000);
		} while (c == -ENOENT && bench_now_ns() < until);
		if (c < 0)
			return c;
		conns[i] = c;
	}
	return 0;
}

static void *client_main(void *arg)
{
	struct cli_thread *t = arg;
	struct dg_flow *f = dg_host_flow(t->h, t->flow);
	uint64_t *ts = calloc(TS_MASK + 1, sizeof(*ts));
	uint8_t *traced = C.trace ? calloc(TS_MASK + 1, 1) : NULL;
	uint8_t *buf = calloc(1, C.size ? C.size : 1);
	int *conns = calloc(C.conns, sizeof(*conns));
	uint64_t seed = 0x9e3779b97f4a7c15ull * (t->flow + 1), next = 0;
	double mean = C.rate > 0 ? 1e9 * C.threads / C.rate : 0;
	uint64_t idle_t0 = 0;
	uint32_t out = 0, rr = 0, i, idle = 0;
	uint64_t sent = 0;
	uint16_t fn = C.work_ns ? FN_WORK : FN_ECHO;
	struct dg_completion c[64];
	/*
	 * Calls the server's full ring refused (BUSY: back-pressure): sent
	 * again first, keeping their original time. At most the window.
	 */
	uint64_t *again = calloc(C.window, sizeof(*again));
	uint32_t nagain = 0;

	if (!ts || !buf || !conns || !again || (C.trace && !traced)) {
		t->live.rc = -ENOMEM;
		goto out;
	}
	memset(buf, 0x5a, C.size);
	if (C.work_ns)
		memcpy(buf, &C.work_ns, 4);
	t->live.rc = open_conns(f, conns);
	if (t->live.rc)
		goto out;
	__atomic_fetch_add(&nready, 1, __ATOMIC_RELEASE);
	next = bench_fast_ns();
	for (;;) {
		int ph = __atomic_load_n(&phase, __ATOMIC_ACQUIRE);
		uint64_t now = 0;
		int k;

		/* Done: every call sent and answered, no BUSY one to resend. */
		if (ph == 2 ||
		    (C.requests && sent >= C.requests && !out && !nagain))
			break;
		/* Issue: up to the window (closed) or what is due (open). */
		while (out < C.window &&
		       (nagain || !C.requests || sent < C.requests)) {
			uint64_t t0, when;
			uint32_t id;
			size_t sz;
			bool cg;
			int rc, cn;

			if (nagain) {
				when = again[nagain - 1];
			} else if (mean > 0) {
				now = bench_fast_ns();
				if (next > now)
					break;
				when = next;
			} else {
				when = bench_fast_ns();
			}
			/*
			 * The arguments first: under callgrind only the
			 * stack's own call is counted.
			 */
			cn = conns[rr % C.conns];
			cg = C.callgrind && ph == 1;
			sz = C.size;
			t0 = bench_cycles();
			if (C.trace && rr % C.trace == 0) {
				rc = dg_call_traced(f, cn, fn, buf, sz, &id);
				if (!rc)
					traced[id & TS_MASK] = 1;
			} else {
				const void *req = buf;

				/*
				 * A large call is built in place (the bench
				 * writes nothing into it: its bytes are what
				 * the area holds); no copy by the library.
				 */
				if (sz > DG_LARGE_DEFAULT) {
					void *p;

					t->wrapped += cg;
					rc = cg ? cg_call_buf(f, sz, &p)
						: dg_call_buf(f, sz, &p);
					if (rc == -EAGAIN)
						break; /* completions first */
					if (rc) {
						t->live.rc = rc;
						goto out;
					}
					req = p;
				}
				t->wrapped += cg;
				rc = cg ? cg_call(f, cn, fn, req, sz, &id)
					: dg_call(f, cn, fn, req, sz, &id);
				if (!rc && traced)
					traced[id & TS_MASK] = 0;
			}
			if (rc == -EAGAIN)
				break; /* ring full: completions first */
			if (rc) {
				t->live.rc = rc;
				goto out;
			}
			if (ph == 1)
				t->busy_cyc += bench_cycles() - t0;
			ts[id & TS_MASK] = when;
			rr++;
			out++;
			if (nagain) {
				nagain--;
				continue;
			}
			if (mean > 0)
				next += bench_exp_ns(&seed, mean);
			sent++;
		}
		{
			bool cg = C.callgrind && ph == 1;
			uint64_t t0 = bench_cycles();

			t->wrapped += cg;
			k = cg ? cg_poll(f, c, 64) : dg_poll(f, c, 64);
			if (k > 0 && ph == 1)
				t->busy_cyc += bench_cycles() - t0;
		}
		if (k < 0) {
			t->live.rc = k;
			break;
		}
		if (k == 0) {
			if (ph == 1)
				t->empty++;
			if (C.callgrind && ph == 1) {
				usleep(200); /* few empty polls to subtract */
			} else if (C.yield) {
				sched_yield();
			} else if (!C.busy_poll && (++idle & 255) == 0) {
				/*
				 * As dg_wait: spin, then sleep until a
				 * completion, the next arrival (open loop) or
				 * a look at the phase.
				 */
				uint64_t tn = bench_fast_ns();
				int ms = 100;

				if (mean > 0 && out < C.window)
					ms = next > tn ? (int)((next - tn) /
							       1000000u)
						       : 0;
				idle_sleep(f, &idle_t0, ms < 100 ? ms : 100,
					   out > 0);
			}
			continue;
		}
		idle = 0;
		idle_t0 = 0;
		now = bench_fast_ns();
		for (i = 0; i < (uint32_t)k; i++) {
			uint64_t s = ts[c[i].rpc_id & TS_MASK];

			out--;
			if (c[i].status == DG_ST_BUSY && ph < 2 &&
			    nagain < C.window) {
				if (ph == 1)
					t->busy++;
				again[nagain++] = s;
				continue;
			}
			/*
			 * Every completion inside the measured interval counts
			 * (in open loop under overload, the calls issued
			 * before it are the queue it measures).
			 */
			if (ph != 1)
				continue;
			hist_add(&t->hist, now - s);
			if (traced && traced[c[i].rpc_id & TS_MASK])
				hist_add(t->thist, now - s);
			t->rpcs++;
			if (c[i].status != 0 || c[i].len != C.size) {
				t->errors++;
				if (!t->first_err)
					t->first_err = c[i].status ? c[i].status
								   : -EPROTO;
			}
		}
		__atomic_store_n(&t->live.done, t->live.done + (uint64_t)k,
				 __ATOMIC_RELAXED);
	}
	if (C.callgrind) {
		CALLGRIND_DUMP_STATS_AT("rpcs");
	}
	/* Drain what is in flight, so the connections close cleanly. */
	{
		uint64_t until = bench_now_ns() + 10000000000ull;

		while (out && bench_now_ns() < until) {
			int k = dg_poll(f, c, 64);

			if (k < 0)
				break;
			out -= (uint32_t)k;
		}
	}
	if (C.callgrind) {
		for (i = 0; i < CALIB_POLLS; i++)
			cg_poll(f, c, 64);
		CALLGRIND_DUMP_STATS_AT("empty");
		for (i = 0; i < CALIB_POLLS; i++)
			cg_nop(f, c, 64);
		CALLGRIND_DUMP_STATS_AT("wrap");
	}
	if (!out)
		for (i = 0; i < C.conns; i++)
			dg_close(f, conns[i]);
out:
	free(ts);
	free(traced);
	free(buf);
	free(conns);
	free(again);
	return NULL;
}

/* The in-process engine (local mode): its trace is printed with ours. */
static struct dg_nic *local_nic;

/*
 * --trace: the traced calls' end-to-end latency, and (local mode) the
 * engine's hops for them; engines in other processes give theirs through
 * dagger-ctl stats ("trace").
 */
static void print_trace(struct cli_thread *t)
{
	struct bench_hist *h = malloc(sizeof(*h));
	struct dg_nic_stats ns = {0};
	bool eng = local_nic && !dg_nic_stats(local_nic, &ns, 5000);
	uint32_t i;

	if (!h)
		return;
	hist_init(h);
	for (i = 0; i < C.threads; i++)
		hist_merge(h, t[i].thist);
	if (C.json)
		printf("{\"bench\":\"dagger-trace\",\"label\":\"%s\","
		       "\"every\":%u,\"n\":%llu,\"total_p50_us\":%.2f,"
		       "\"total_p99_us\":%.2f,\"engine_n\":%llu,"
		       "\"server_p50_us\":%.2f,\"remote_p50_us\":%.2f}\n",
		       C.label ? C.label : "", C.trace,
		       (unsigned long long)h->n, hist_pct(h, 0.5) / 1e3,
		       hist_pct(h, 0.99) / 1e3,
		       (unsigned long long)ns.trace_server_n,
		       ns.trace_server_p50_ns / 1e3,
		       ns.trace_remote_p50_ns / 1e3);
	else
		printf("# trace (every %u%s call): %llu calls, p50 %.2f us end "
		       "to end%s",
		       C.trace, C.trace == 1 ? "st" : "th",
		       (unsigned long long)h->n, hist_pct(h, 0.5) / 1e3,
		       eng ? "" : "\n");
	if (!C.json && eng)
		printf("; engine: request in the server's RX ring -> response "
		       "out of its TX ring p50 %.2f us (%llu calls)\n",
		       ns.trace_server_p50_ns / 1e3,
		       (unsigned long long)ns.trace_server_n);
	free(h);
}

/*
 * memcpy of C.size bytes between two buffers of that size (touched first),
 * back to back for the duration: MB/s (2^20 bytes) copied.
 */
static int run_memcpy(void)
{
	size_t n = C.size ? C.size : 1;
	uint8_t *a = malloc(n), *b = malloc(n);
	uint64_t t0, t, bytes = 0;
	double sec;

	if (!a || !b)
		return 1;
	memset(a, 1, n);
	memset(b, 2, n);
	t0 = bench_now_ns();
	do {
		memcpy(b, a, n);
		/* Kept: the copy must happen. */
		__asm__ volatile("" : : "r"(b) : "memory");
		bytes += n;
		t = bench_now_ns();
	} while (t - t0 < (uint64_t)(C.duration * 1e9));
	sec = (double)(t - t0) / 1e9;
	if (C.json)
		printf("{\"bench\":\"memcpy\",\"label\":\"%s\",\"size\":%u,"
		       "\"mbps\":%.1f}\n",
		       C.label ? C.label : "memcpy", C.size,
		       (double)bytes / 1048576.0 / sec);
	else
		printf("memcpy of %u bytes: %.1f MB/s\n", C.size,
		       (double)bytes / 1048576.0 / sec);
	free(a);
	free(b);
	return 0;
}

/* Runs the client threads on host h; prints the result. */
static int run_clients(struct dg_host *h)
{
	struct cli_thread *t = calloc(C.threads, sizeof(*t));
	struct bench_hist *all = malloc(sizeof(*all));
	struct bench_result r = {.bench = "dagger",
				 .mode = C.rate > 0 ? "open" : "closed",
				 .label = C.label,
				 .size = C.size,
				 .threads = C.threads,
				 .conns = C.conns,
				 .window = C.window,
				 .rate = C.rate};
	uint64_t t0, t_end = 0, busy = 0;
	uint32_t i;
	int rc = 0;

	if (!t || !all)
		return 1;
	bench_fast_init();
	hist_init(all);
	phase = C.warmup > 0 && !C.requests ? 0 : 1;
	for (i = 0; i < C.threads; i++) {
		t[i].h = h;
		t[i].flow = i;
		hist_init(&t[i].hist);
		t[i].thist = malloc(sizeof(*t[i].thist));
		if (!t[i].thist)
			return 1;
		hist_init(t[i].thist);
		pthread_create(&t[i].thr, NULL, client_main, &t[i]);
		if (C.pin)
			pin_thread(t[i].thr, (int)i);
	}
	bench_clock("dagger-bench", &phase, &nready, &got_signal, t, sizeof(*t),
		    C.threads, !C.requests, C.warmup, C.duration, C.quiet, &t0,
		    &t_end);
	for (i = 0; i < C.threads; i++) {
		pthread_join(t[i].thr, NULL);
		if (t[i].live.rc) {
			fprintf(stderr, "dagger-bench: client %u: %s\n", i,
				strerror(-t[i].live.rc));
			rc = 1;
		}
		if (t[i].first_err)
			fprintf(stderr,
				"dagger-bench: client %u: %llu errors, the "
				"first: %s\n",
				i, (unsigned long long)t[i].errors,
				t[i].first_err > 0
					? dg_status_str(t[i].first_err)
					: "wrong response length");
		hist_merge(all, &t[i].hist);
		r.rpcs += t[i].rpcs;
		r.errors += t[i].errors;
		r.polls_empty += t[i].empty;
		r.cg_wrapped += t[i].wrapped;
		r.busy += t[i].busy;
		busy += t[i].busy_cyc;
	}
	if (C.requests)
		t_end = bench_now_ns();
	r.seconds = (double)(t_end - t0) / 1e9;
	r.h = all;
	/* Ticks of the cycle counter per RPC (the TSC on x86). */
	r.cyc_rpc = r.rpcs ? (double)busy / (double)r.rpcs : 0;
	if (!r.rpcs && !rc)
		fprintf(stderr,
			"%s: no call completed in the measured "
			"interval\n",
			r.bench);
	bench_print(&r, C.json, true);
	if (C.trace)
		print_trace(t);
	if (C.cdf) {
		FILE *f = fopen(C.cdf, "w");

		if (f) {
			hist_cdf(all, f);
			fclose(f);
		} else {
			fprintf(stderr, "dagger-bench: %s: %s\n", C.cdf,
				strerror(errno));
		}
	}
	for (i = 0; i < C.threads; i++)
		free(t[i].thist);
	free(t);
	free(all);
	return rc || !r.rpcs;
}

static int run_client(void)
{
	struct dg_host_opts o = {.engine_addr =
					 C.shm_path ? NULL : C.engine_addr,
				 .engine_port = C.engine_port,
				 .shm_path = C.shm_path,
				 .csum = C.csum,
				 .mode = C.iface,
				 .spin_us = C.spin_us,
				 .busy_poll = C.busy_poll,
				 .src_addr = C.src,
				 .nflows = C.threads,
				 .slots = C.slots,
				 .payload = C.payload,
				 .timeout_ms = 30000};
	struct dg_host *h;
	int rc;

	signal(SIGINT, on_signal);
	rc = attach_wait(&o, &h);
	if (rc)
		return 1;
	rc = run_clients(h);
	dg_host_detach(h);
	return rc;
}

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static int run_local(void)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .csum = C.csum,
				 .spin_us = C.spin_us,
				 .busy_poll = C.busy_poll,
				 .slots = C.slots,
				 .payload = C.payload};
	struct srv_thread *s = calloc(C.sthreads, sizeof(*s));
	struct dg_host *srv = NULL, *cli;
	struct dg_nic *nic;
	pthread_t et;
	int rc;

	/*
	 * Under callgrind the engine busy-polls: the client sleeps 200 us
	 * after each empty poll there, which would let the engine fall
	 * asleep between calls and every call pay a wake-up. The busy path
	 * is what is measured; waking is measured apart (deploy/bench).
	 */
	struct dg_nic_opts no = {.listen_addr = C.listen_addr[0] ? C.listen_addr
								 : NULL,
				 .port = C.listen_port,
				 .busy_poll = C.callgrind};

	if (!s || dg_nic_create(&no, &nic)) {
		fprintf(stderr, "dagger-bench: engine on %s:%u failed\n",
			C.listen_addr, C.listen_port);
		return 1;
	}
	local_nic = nic;
	pthread_create(&et, NULL, engine_main, nic);
	if (C.pin)
		pin_thread(et, (int)sysconf(_SC_NPROCESSORS_ONLN) - 1);
	o.local_arg = nic;
	if (!C.loopback) {
		o.nflows = C.sthreads;
		if (dg_host_attach(&o, &srv) ||
		    start_servers(srv, s, C.sthreads))
			return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (C.server_only) {
		fprintf(stderr,
			"dagger-bench: engine on %s:%u serving \"%s\" with %u "
			"thread(s)\n",
			C.listen_addr, dg_nic_port(nic), C.service, C.sthreads);
		while (!got_signal)
			usleep(100000);
		phase = 2;
		rc = 0;
		cli = NULL;
	} else {
		o.nflows = C.threads;
		if (dg_host_attach(&o, &cli))
			return 1;
		rc = run_clients(cli);
		phase = 2;
	}
	if (!C.loopback)
		join_servers(s, C.sthreads);
	if (cli)
		dg_host_detach(cli);
	if (srv)
		dg_host_detach(srv);
	dg_nic_stop(nic);
	pthread_join(et, NULL);
	dg_nic_destroy(nic);
	free(s);
	return rc;
}

/* ---- options ----------------------------------------------------------------
 */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dagger-bench server --engine ADDR:PORT [options]\n"
		"       dagger-bench client --engine ADDR:PORT [--remote "
		"ADDR:PORT] [options]\n"
		"       dagger-bench local [--loopback | --listen ADDR[:PORT] "
		"[--server-only]] [options]\n"
		"       dagger-bench memcpy --size B [--duration S]: this "
		"machine's memcpy\n"
		"                      bandwidth for B-byte copies (the "
		"reference for\n"
		"                      large messages on shared memory)\n"
		"  --engine ADDR:PORT  the engine to attach to (RDMA)\n"
		"  --src ADDR          local device address to attach from\n"
		"  --wait S            retry the attach for S seconds (engine "
		"starting)\n"
		"  --remote ADDR:PORT  the service is behind that engine\n"
		"  --service NAME      service name (default bench)\n"
		"  --loopback          call the engine's loopback service (no "
		"server)\n"
		"  --threads N         client threads, one flow each (1)\n"
		"  --server-threads N  server threads (server/local; 1)\n"
		"  --conns N           connections per client thread (1)\n"
		"  --size B            request bytes (64)\n"
		"  --window N          calls in flight per thread (1); the cap "
		"in open loop\n"
		"  --rate R            open loop: Poisson arrivals, R calls/s "
		"in all\n"
		"  --work-ns N         the server spins N ns per call\n"
		"  --work-sleep        ... sleeps them instead (work that "
		"waits)\n"
		"  --workers N         server/local: a pool of N worker "
		"threads runs the\n"
		"                      handlers behind the server (dispatch) "
		"threads\n"
		"  --duration S        measured seconds (5)\n"
		"  --warmup S          seconds before measuring (1)\n"
		"  --requests N        per thread, instead of a duration\n"
		"  --slots N           ring slots (power of two; default: "
		"enough for the window)\n"
		"  --payload B         bytes of each payload area (power of "
		"two;\n"
		"                      default: the library's, or enough for "
		"the window\n"
		"                      of large calls, up to 64 MiB)\n"
		"  --yield             sched_yield() when a poll finds "
		"nothing\n"
		"  --pin               client thread i on CPU i; in local mode "
		"the engine on the\n"
		"                      last CPU\n"
		"  --json              one JSON line instead of a table\n"
		"  --label TEXT        carried into the JSON line\n"
		"  --cdf FILE          write the latency CDF (us, fraction)\n"
		"  --quiet             no progress lines\n"
		"  --callgrind         collection toggles for callgrind (see "
		"source)\n"
		"  --csum              checksum slots on shared-memory rings "
		"too (as RDMA\n"
		"                      rings do), to measure what that costs\n"
		"  --mode M            poll, doorbell or push: how the engine "
		"learns of new\n"
		"                      frames (RDMA; default doorbell)\n"
		"  --spin-us N         spin N us before a waiting thread "
		"sleeps\n"
		"  --busy-poll         never sleep\n"
		"  --trace N           every Nth call is traced: its latency, "
		"and (local\n"
		"                      mode) the engine's hops; other engines "
		"give theirs\n"
		"                      in dagger-ctl stats\n"
		"local mode: the engine runs in this process and its hosts "
		"reach it by shared\n"
		"memory; with --listen it also takes peer links on "
		"ADDR[:PORT], "
		"so a client in\n"
		"another local-mode process can call its service with "
		"--remote.\n"
		"  --listen ADDR[:PORT] the in-process engine's RDMA address\n"
		"  --server-only       local mode: serve until SIGINT/SIGTERM, "
		"no clients\n");
}

static int parse_ep(const char *s, char *addr, size_t cap, uint16_t *port)
{
	const char *c = strrchr(s, ':');
	char *end;
	unsigned long p;

	if (!c || (size_t)(c - s) >= cap || c == s)
		return -EINVAL;
	memcpy(addr, s, (size_t)(c - s));
	addr[c - s] = 0;
	p = strtoul(c + 1, &end, 10);
	if (*end || !p || p > 65535)
		return -EINVAL;
	*port = (uint16_t)p;
	return 0;
}

static int parse_u32(const char *s, uint32_t *v)
{
	char *end;
	unsigned long x = strtoul(s, &end, 0);

	if (!*s || *end || x > UINT32_MAX)
		return -EINVAL;
	*v = (uint32_t)x;
	return 0;
}

static int parse_d(const char *s, double *v)
{
	char *end;

	*v = strtod(s, &end);
	return !*s || *end || *v < 0 ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"engine", 1, 0, 'e'},
					   {"src", 1, 0, 'S'},
					   {"remote", 1, 0, 'r'},
					   {"service", 1, 0, 'N'},
					   {"loopback", 0, 0, 'L'},
					   {"threads", 1, 0, 't'},
					   {"server-threads", 1, 0, 'T'},
					   {"conns", 1, 0, 'c'},
					   {"size", 1, 0, 's'},
					   {"window", 1, 0, 'w'},
					   {"rate", 1, 0, 'R'},
					   {"work-ns", 1, 0, 'W'},
					   {"work-sleep", 0, 0, 'Z'},
					   {"workers", 1, 0, 'Q'},
					   {"duration", 1, 0, 'd'},
					   {"warmup", 1, 0, 'u'},
					   {"requests", 1, 0, 'n'},
					   {"slots", 1, 0, 'l'},
					   {"payload", 1, 0, 0x100},
					   {"yield", 0, 0, 'y'},
					   {"json", 0, 0, 'j'},
					   {"label", 1, 0, 'b'},
					   {"cdf", 1, 0, 'C'},
					   {"quiet", 0, 0, 'q'},
					   {"callgrind", 0, 0, 'g'},
					   {"csum", 0, 0, 'K'},
					   {"listen", 1, 0, 'A'},
					   {"server-only", 0, 0, 'O'},
					   {"pin", 0, 0, 'P'},
					   {"wait", 1, 0, 'X'},
					   {"mode", 1, 0, 'M'},
					   {"spin-us", 1, 0, 'U'},
					   {"busy-poll", 0, 0, 'B'},
					   {"trace", 1, 0, 'E'},
					   {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	uint32_t frames, need;
	int o, bad = 0;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	C.mode = argv[1];
	optind = 2;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		uint32_t n = 0;

		switch (o) {
		case 'e':
			if (!strncmp(optarg, "unix:", 5) && optarg[5]) {
				C.shm_path = optarg + 5;
				snprintf(C.engine_addr, sizeof(C.engine_addr),
					 "%s", optarg);
				break;
			}
			bad |= parse_ep(optarg, C.engine_addr,
					sizeof(C.engine_addr), &C.engine_port);
			break;
		case 'K':
			C.csum = true;
			break;
		case 'r':
			bad |= parse_ep(optarg, C.remote_addr,
					sizeof(C.remote_addr), &C.remote_port);
			break;
		case 'S':
			C.src = optarg;
			break;
		case 'A':
			if (!strchr(optarg, ':')) {
				snprintf(C.listen_addr, sizeof(C.listen_addr),
					 "%s", optarg);
				break;
			}
			bad |= parse_ep(optarg, C.listen_addr,
					sizeof(C.listen_addr), &C.listen_port);
			break;
		case 'O':
			C.server_only = true;
			break;
		case 'P':
			C.pin = true;
			break;
		case 'X':
			bad |= parse_d(optarg, &C.wait);
			break;
		case 'M':
			C.iface = dg_mode_parse(optarg);
			bad |= C.iface < 0;
			break;
		case 'U':
			bad |= parse_u32(optarg, &C.spin_us);
			break;
		case 'B':
			C.busy_poll = true;
			break;
		case 'E':
			bad |= parse_u32(optarg, &C.trace);
			break;
		case 'N':
			C.service = optarg;
			break;
		case 'L':
			C.loopback = true;
			break;
		case 't':
			bad |= parse_u32(optarg, &C.threads);
			break;
		case 'T':
			bad |= parse_u32(optarg, &C.sthreads);
			break;
		case 'c':
			bad |= parse_u32(optarg, &C.conns);
			break;
		case 's':
			bad |= parse_u32(optarg, &C.size);
			break;
		case 'w':
			bad |= parse_u32(optarg, &C.window);
			break;
		case 'R':
			bad |= parse_d(optarg, &C.rate);
			break;
		case 'W':
			bad |= parse_u32(optarg, &C.work_ns);
			break;
		case 'Z':
			C.work_sleep = true;
			break;
		case 'Q':
			bad |= parse_u32(optarg, &C.workers);
			bad |= C.workers > 1024 ? -EINVAL : 0;
			break;
		case 'd':
			bad |= parse_d(optarg, &C.duration);
			break;
		case 'u':
			bad |= parse_d(optarg, &C.warmup);
			break;
		case 'n':
			bad |= parse_u32(optarg, &n);
			C.requests = n;
			break;
		case 'l':
			bad |= parse_u32(optarg, &C.slots);
			break;
		case 0x100:
			bad |= parse_u32(optarg, &n);
			C.payload = n;
			break;
		case 'y':
			C.yield = true;
			break;
		case 'j':
			C.json = true;
			break;
		case 'b':
			C.label = optarg;
			break;
		case 'C':
			C.cdf = optarg;
			break;
		case 'q':
			C.quiet = true;
			break;
		case 'g':
			C.callgrind = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (bad) {
			const struct option *x = lo;

			while (x->name && x->val != o)
				x++;
			fprintf(stderr,
				"dagger-bench: bad value for --%s: %s\n",
				x->name, optarg);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!C.threads || !C.sthreads || !C.conns || !C.window ||
	    C.threads > DG_MAX_FLOWS || C.sthreads > DG_MAX_FLOWS ||
	    C.size > DG_MAX_MSG || (C.work_ns && C.size < 4) ||
	    C.window > 4096 || !C.duration) {
		fprintf(stderr,
			"dagger-bench: threads 1..%u, conns and window "
			"1..4096, size <= %u (>= 4 with --work-ns), "
			"duration > 0\n",
			DG_MAX_FLOWS, DG_MAX_MSG);
		return 2;
	}
	/*
	 * Rings that hold a whole window of the largest calls, twice (a
	 * large call is one descriptor frame; its bytes go in the payload
	 * areas, sized for the window of them, up to 64 MiB).
	 */
	frames = C.size > DG_LARGE_DEFAULT ? 1 : dg_frames_for(C.size);
	need = frames * C.window * 2;
	if (!C.payload && C.size > DG_LARGE_DEFAULT) {
		C.payload = 16u << 20;
		while (C.payload < (uint64_t)C.size * C.window &&
		       C.payload < 64u << 20)
			C.payload <<= 1;
	}
	if (!C.slots) {
		/* A server takes whatever its callers send: room for the
		 * largest call in ring frames, twice. */
		if (!strcmp(C.mode, "server") || C.server_only)
			need = 2 * dg_frames_for(DG_MAX_INLINE);
		C.slots = 1024;
		while (C.slots < need && C.slots < 65536)
			C.slots <<= 1;
	}
	if (C.slots & (C.slots - 1) || C.slots < frames) {
		fprintf(stderr,
			"dagger-bench: --slots must be a power of two "
			">= the frames of one call (%u)\n",
			frames);
		return 2;
	}
	if (!strcmp(C.mode, "local"))
		return run_local();
	if (!strcmp(C.mode, "memcpy"))
		return run_memcpy();
	if (!C.engine_addr[0]) {
		fprintf(stderr,
			"dagger-bench: %s needs --engine ADDR:PORT or "
			"unix:PATH\n",
			C.mode);
		return 2;
	}
	if (!strcmp(C.mode, "server"))
		return run_server();
	if (!strcmp(C.mode, "client"))
		return run_client();
	usage(stderr);
	return 2;
}
