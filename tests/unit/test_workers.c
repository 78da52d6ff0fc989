// SPDX-License-Identifier: MIT
/*
 * test_workers: a server's worker pool (dg_server_start_opts, workers >
 * 0) on the in-process engine (shared memory, no devices).
 *
 *  - concurrency: with one dispatch thread and 4 workers, 4 requests are
 *    in their handlers at once (each handler waits, bounded, until it
 *    sees 4 inside); handlers run on the workers' threads with the
 *    workers' own flows (dg_flow_alloc works there, calls do not);
 *  - correctness: 2 dispatch threads, 4 workers, 2 pipelined clients,
 *    sizes from 0 to 64 KiB, handlers that take varying time: every call
 *    completes exactly once with its own bytes, and responses did come
 *    back out of order;
 *  - the options are checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dagger/dagger.h"
#include "engine.h"

enum { FN_ECHO = 1, FN_MEET = 2 };

static struct {
	struct dg_nic *nic;
	pthread_t thr;
	struct dg_host *srv;
} E;

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static int inside, met, wrong_flow, alloc_failed, call_worked;

/* Waits (at most 5 s) until 4 handlers are inside at once. */
static int meet(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	uint64_t until = now_ms() + 5000;
	uint32_t i, id;

	(void)arg;
	for (i = 0; i < dg_host_nflows(E.srv); i++)
		if (req->flow == dg_host_flow(E.srv, i))
			__atomic_add_fetch(&wrong_flow, 1, __ATOMIC_RELAXED);
	if (dg_call(req->flow, 0, FN_ECHO, "x", 1, &id) == 0)
		__atomic_add_fetch(&call_worked, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&inside, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&inside, __ATOMIC_ACQUIRE) < 4 &&
	       now_ms() < until)
		sched_yield();
	if (__atomic_load_n(&inside, __ATOMIC_ACQUIRE) >= 4)
		__atomic_add_fetch(&met, 1, __ATOMIC_RELAXED);
	resp->len = 0;
	return 0;
}

/* Echo through the worker's arena, after a pause that depends on the
 * request (so later requests often finish first). */
static int slow_echo(void *arg, const struct dg_request *req,
		     struct dg_response *resp)
{
	struct timespec d = {0, 0};
	uint8_t *p;

	(void)arg;
	if (req->len >= 4) {
		uint32_t s;

		memcpy(&s, req->data, 4);
		d.tv_nsec = (long)(s % 7) * 20000;
		nanosleep(&d, NULL);
	}
	p = dg_flow_alloc(req->flow, req->len ? req->len : 1);
	if (!p) {
		__atomic_add_fetch(&alloc_failed, 1, __ATOMIC_RELAXED);
		return DG_ST_APP_BASE;
	}
	memcpy(p, req->data, req->len);
	memcpy(resp->data, p, req->len);
	resp->len = req->len;
	return 0;
}

static const struct dg_handler handlers[] = {{FN_ECHO, slow_echo},
					     {FN_MEET, meet}};
static const struct dg_service_def svc = {
	.name = "pool", .handlers = handlers, .nhandlers = 2};

static struct dg_host *attach(uint32_t nflows, uint32_t slots)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = E.nic,
				 .nflows = nflows,
				 .slots = slots};
	struct dg_host *h = NULL;

	assert_int_equal(dg_host_attach(&o, &h), 0);
	return h;
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(dg_nic_create(NULL, &E.nic), 0);
	assert_int_equal(pthread_create(&E.thr, NULL, engine_main, E.nic), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dg_nic_stop(E.nic);
	pthread_join(E.thr, NULL);
	dg_nic_destroy(E.nic);
	return 0;
}

static void test_options(void **state)
{
	struct dg_host *h = attach(2, 256);
	struct dg_server *s;

	(void)state;
	assert_int_equal(
		dg_server_start_opts(
			h, &svc,
			&(struct dg_server_opts){.nthreads = 0, .workers = 2},
			&s),
		-EINVAL);
	assert_int_equal(
		dg_server_start_opts(
			h, &svc,
			&(struct dg_server_opts){.nthreads = 3, .workers = 2},
			&s),
		-EINVAL);
	assert_int_equal(
		dg_server_start_opts(h, &svc,
				     &(struct dg_server_opts){.nthreads = 1,
							      .workers = 2000},
				     &s),
		-EINVAL);
	assert_int_equal(
		dg_server_start_opts(h, &svc,
				     &(struct dg_server_opts){.nthreads = 1,
							      .workers = 1,
							      .queue = 70000},
				     &s),
		-EINVAL);
	dg_host_detach(h);
}

/* One dispatch thread, 4 workers: 4 handlers run at the same time. */
static void test_concurrency(void **state)
{
	struct dg_server_opts so = {.nthreads = 1, .workers = 4};
	struct dg_host *cli = attach(1, 256);
	struct dg_flow *f = dg_host_flow(cli, 0);
	struct dg_completion c[8];
	struct dg_server *s;
	uint32_t id, done = 0, i;
	uint64_t until;
	int conn;

	(void)state;
	E.srv = attach(1, 256);
	inside = met = wrong_flow = call_worked = 0;
	assert_int_equal(dg_server_start_opts(E.srv, &svc, &so, &s), 0);
	conn = dg_connect(f, NULL, 0, "pool", 5000);
	assert_true(conn >= 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(dg_call(f, conn, FN_MEET, "m", 1, &id), 0);
	until = now_ms() + 20000;
	while (done < 4 && now_ms() < until) {
		int k = dg_poll(f, c, 8);

		for (i = 0; i < (uint32_t)(k > 0 ? k : 0); i++)
			assert_int_equal(c[i].status, 0);
		done += (uint32_t)(k > 0 ? k : 0);
	}
	assert_int_equal(done, 4);
	assert_int_equal(met, 4);	 /* all four were inside together */
	assert_int_equal(wrong_flow, 0); /* not on the dispatch flow */
	assert_int_equal(call_worked, 0);
	dg_close(f, conn);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(E.srv);
}

struct client {
	struct dg_host *h;
	uint32_t flow, n;
	uint32_t ok, bad, dup, reordered;
};

static uint32_t size_of(uint32_t s)
{
	static const uint32_t sz[] = {0,    4,	  31,	 32,
				      33,   88,	  89,	 200,
				      1000, 4096, 20000, DG_MAX_INLINE};

	return sz[s % (sizeof(sz) / sizeof(sz[0]))];
}

static void fill(uint8_t *p, uint32_t s, uint32_t len)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(s * 13 + i * 7);
	if (len >= 4)
		memcpy(p, &s, 4);
}

static void *client_main(void *arg)
{
	struct client *a = arg;
	struct dg_flow *f = dg_host_flow(a->h, a->flow);
	static __thread uint8_t buf[DG_MAX_INLINE], want[DG_MAX_INLINE];
	uint32_t sent = 0, done = 0, seq[1024], last = 0;
	uint8_t *seen = calloc(a->n, 1);
	struct dg_completion c[16];
	uint64_t until = now_ms() + 120000;
	int conn = dg_connect(f, NULL, 0, "pool", 5000);

	if (conn < 0 || !seen)
		return NULL;
	while (done < a->n && now_ms() < until) {
		int k, i;

		if (sent < a->n && sent - done < 16) {
			uint32_t id, len = size_of(sent);

			fill(buf, sent, len);
			if (dg_call(f, conn, FN_ECHO, buf, len, &id) == 0) {
				seq[id & 1023] = sent;
				sent++;
			}
		}
		k = dg_poll(f, c, 16);
		for (i = 0; i < k; i++) {
			uint32_t s = seq[c[i].rpc_id & 1023];
			uint32_t len = size_of(s);

			if (c[i].rpc_id < last)
				a->reordered++;
			last = c[i].rpc_id;
			fill(want, s, len);
			if (seen[s]++)
				a->dup++;
			if (c[i].status == 0 && c[i].len == len &&
			    !memcmp(c[i].data, want, len))
				a->ok++;
			else
				a->bad++;
			done++;
		}
	}
	dg_close(f, conn);
	free(seen);
	return NULL;
}

static void test_exactly_once(void **state)
{
	struct dg_server_opts so = {.nthreads = 2, .workers = 4, .queue = 8};
	struct dg_host *cli = attach(2, 4096);
	struct client a[2] = {{.h = cli, .flow = 0, .n = 3000},
			      {.h = cli, .flow = 1, .n = 3000}};
	struct dg_server *s;
	pthread_t t[2];
	int i;

	(void)state;
	E.srv = attach(2, 8192);
	alloc_failed = 0;
	assert_int_equal(dg_server_start_opts(E.srv, &svc, &so, &s), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(
			pthread_create(&t[i], NULL, client_main, &a[i]), 0);
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].ok, a[i].n);
		assert_int_equal(a[i].bad, 0);
		assert_int_equal(a[i].dup, 0);
	}
	assert_int_equal(alloc_failed, 0);
	/* Handlers of varying length: responses overtook each other. */
	assert_true(a[0].reordered + a[1].reordered > 0);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(E.srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_exactly_once),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
