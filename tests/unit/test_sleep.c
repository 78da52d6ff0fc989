// SPDX-License-Identifier: MIT
/*
 * Sleeping and waking on the shared-memory backend (docs/ARCHITECTURE.md,
 * "Sleeping and waking"): an engine and hosts that sleep whenever they
 * find nothing for a microsecond, under calls spaced so that deliveries
 * keep racing the decisions to sleep.
 *
 *  - every call is answered once and intact. Dispatch threads sleep with
 *    no timeout and callers until their deadline, and each client has a
 *    server thread of its own: a lost wake-up leaves a call unanswered
 *    until it fails (-ETIMEDOUT), it does not hide as latency. The engine
 *    counts its own sleeps that ran to their timeout over a published
 *    frame (missed_wakes), and the flows theirs;
 *  - the sleeping paths were taken (sleeps counted on every side), so
 *    the test exercises what it claims to;
 *  - dg_flow_fd() in an application's own poll loop: armed, readable
 *    after a delivery, never armed over a frame already there.
 *
 * The engine runs in this process; its hosts attach by shared memory,
 * the same direct rings and wake-up protocol as the engine daemon's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dagger/dagger.h"
#include "engine.h"

enum { FN_ECHO = 1, NCLIENTS = 2 };

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static int echo(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	(void)arg;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

static const struct dg_handler handlers[] = {{FN_ECHO, echo}};
static const struct dg_service_def echo_svc = {
	.name = "echo", .handlers = handlers, .nhandlers = 1};
/*
 * One service per client, one server thread each: a server thread's only
 * deliveries are its client's calls, so a lost wake-up is not rescued by
 * someone else's call: the call times out (-ETIMEDOUT) and the test fails.
 */
static const struct dg_service_def pair_svc[NCLIENTS] = {
	{.name = "echo0", .handlers = handlers, .nhandlers = 1},
	{.name = "echo1", .handlers = handlers, .nhandlers = 1}};

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* A pause of the client's: none, a short spin, or a short sleep. */
static void pause_a_bit(uint32_t *seed)
{
	uint32_t r = lcg(seed) % 8;

	if (r < 3)
		return;
	if (r < 6) {
		uint64_t until = now_ns() + 1000u * (1 + lcg(seed) % 40);

		while (now_ns() < until)
			;
		return;
	}
	usleep(20 + lcg(seed) % 200);
}

struct client {
	struct dg_host *h;
	const char *service;
	uint32_t n, ok, bad;
	int rc;
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct dg_flow *f = dg_host_flow(c->h, 0);
	uint32_t seed = (uint32_t)(uintptr_t)c, i;
	uint8_t req[256], resp[256];
	int conn = dg_connect(f, NULL, 0, c->service, 10000);

	if (conn < 0) {
		c->rc = conn;
		return NULL;
	}
	for (i = 0; i < c->n; i++) {
		size_t len = 1 + lcg(&seed) % sizeof(req), olen = sizeof(resp);
		size_t j;
		int rc;

		for (j = 0; j < len; j++)
			req[j] = (uint8_t)(i * 13u + j);
		rc = dg_call_sync(f, conn, FN_ECHO, req, len, resp, &olen,
				  20000);
		if (rc) {
			c->rc = rc;
			break;
		}
		if (olen == len && !memcmp(req, resp, len))
			c->ok++;
		else
			c->bad++;
		/* A wake-up lost on our side: stop at the first. */
		{
			struct dg_flow_stats fs;

			dg_flow_stats(f, &fs);
			if (fs.missed_wakes) {
				c->rc = -EPROTO;
				break;
			}
		}
		pause_a_bit(&seed);
	}
	dg_close(f, conn);
	return NULL;
}

/*
 * An engine and hosts that sleep after 1 us without work, 2 clients, each
 * with a server thread of its own (a service each), 2 x 6000 synchronous
 * calls with pauses between them. *state: worker threads per server (0:
 * dispatch threads run the handlers; else a worker pool, whose workers
 * and dispatch threads sleep too).
 */
static void test_sleep_wake_stress(void **state)
{
	struct dg_server_opts so = {.nthreads = 1,
				    .workers = *(const uint32_t *)*state};
	struct dg_nic_opts no = {.spin_us = 1};
	struct dg_nic *nic;
	struct dg_host_opts o = {.detach_local = dg_nic_detach_cb,
				 .attach_local = dg_nic_attach_cb,
				 .spin_us = 1,
				 .yield_us = DG_YIELD_OFF,
				 .slots = 256};
	struct dg_host *srv, *cli[NCLIENTS];
	struct client c[NCLIENTS];
	struct dg_server *s[NCLIENTS];
	struct dg_nic_stats ns;
	struct dg_flow_stats fs;
	pthread_t et, ct[NCLIENTS];
	uint64_t ssleeps = 0, csleeps = 0, missed = 0;
	int i;

	assert_int_equal(dg_nic_create(&no, &nic), 0);
	assert_int_equal(pthread_create(&et, NULL, engine_main, nic), 0);
	o.local_arg = nic;
	o.nflows = NCLIENTS;
	assert_int_equal(dg_host_attach(&o, &srv), 0);
	for (i = 0; i < NCLIENTS; i++) {
		so.first_flow = (uint32_t)i;
		assert_int_equal(
			dg_server_start_opts(srv, &pair_svc[i], &so, &s[i]), 0);
	}
	o.nflows = 1;
	for (i = 0; i < NCLIENTS; i++) {
		assert_int_equal(dg_host_attach(&o, &cli[i]), 0);
		c[i] = (struct client){
			.h = cli[i], .service = pair_svc[i].name, .n = 6000};
		assert_int_equal(
			pthread_create(&ct[i], NULL, client_main, &c[i]), 0);
	}
	for (i = 0; i < NCLIENTS; i++) {
		pthread_join(ct[i], NULL);
		assert_int_equal(c[i].rc, 0);
		assert_int_equal(c[i].bad, 0);
		assert_int_equal(c[i].ok, c[i].n);
		dg_flow_stats(dg_host_flow(cli[i], 0), &fs);
		csleeps += fs.sleeps;
		missed += fs.missed_wakes;
		/* Each call answered once: one completion per call. */
		assert_int_equal(fs.completions, fs.calls);
	}
	for (i = 0; i < NCLIENTS; i++)
		dg_server_stop(s[i]);
	for (i = 0; i < NCLIENTS; i++) {
		dg_flow_stats(dg_host_flow(srv, (uint32_t)i), &fs);
		ssleeps += fs.sleeps;
		missed += fs.missed_wakes;
	}
	assert_int_equal(dg_nic_stats(nic, &ns, 10000), 0);
	printf("# engine: %llu sleeps, %llu wake-ups sent, %llu missed; "
	       "hosts: %llu server and %llu client sleeps, %llu missed\n",
	       (unsigned long long)ns.sleeps, (unsigned long long)ns.wakes,
	       (unsigned long long)ns.missed_wakes, (unsigned long long)ssleeps,
	       (unsigned long long)csleeps, (unsigned long long)missed);
	assert_int_equal(ns.missed_wakes, 0);
	assert_int_equal(missed, 0);
	/* The sleeping paths were taken, many times, on every side. */
	assert_true(ns.sleeps >= 100);
	assert_true(ssleeps >= 100);
	assert_true(ns.wakes >= 100);
	for (i = 0; i < NCLIENTS; i++)
		dg_host_detach(cli[i]);
	dg_host_detach(srv);
	dg_nic_stop(nic);
	pthread_join(et, NULL);
	dg_nic_destroy(nic);
}

/*
 * dg_flow_fd() in the application's own loop: after each call the client
 * arms its flow and polls the descriptor, as an epoll loop would. Arming
 * over a response that is already there says so (-EAGAIN); otherwise the
 * descriptor becomes readable once the response is delivered; arming
 * again then says -EAGAIN, the response being there.
 */
static void test_flow_fd(void **state)
{
	struct dg_nic_opts no = {.spin_us = 1};
	struct dg_nic *nic;
	struct dg_host_opts o = {.detach_local = dg_nic_detach_cb,
				 .attach_local = dg_nic_attach_cb,
				 .spin_us = 1,
				 .yield_us = DG_YIELD_OFF,
				 .slots = 256};
	struct dg_host *srv, *cli;
	struct dg_server *s;
	struct dg_flow *f;
	struct dg_completion comp;
	struct dg_flow_stats fs;
	uint32_t i, id, armed = 0, already = 0;
	pthread_t et;
	int conn, fd;

	(void)state;
	assert_int_equal(dg_nic_create(&no, &nic), 0);
	assert_int_equal(pthread_create(&et, NULL, engine_main, nic), 0);
	o.local_arg = nic;
	o.nflows = 1;
	assert_int_equal(dg_host_attach(&o, &srv), 0);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	assert_int_equal(dg_host_attach(&o, &cli), 0);
	f = dg_host_flow(cli, 0);
	fd = dg_flow_fd(f);
	assert_true(fd >= 0);
	conn = dg_connect(f, NULL, 0, "echo", 10000);
	assert_true(conn >= 0);
	for (i = 0; i < 2000; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int rc, k;

		assert_int_equal(dg_call(f, conn, FN_ECHO, &i, sizeof(i), &id),
				 0);
		rc = dg_flow_arm(f);
		if (rc == -EAGAIN) {
			already++;
		} else {
			assert_int_equal(rc, 0);
			armed++;
			/* Bounded only to fail instead of hanging. */
			assert_int_equal(poll(&p, 1, 20000), 1);
			dg_flow_disarm(f);
			/* The response is there now: arming must say so. */
			assert_int_equal(dg_flow_arm(f), -EAGAIN);
		}
		k = dg_poll(f, &comp, 1);
		assert_int_equal(k, 1);
		assert_int_equal(comp.rpc_id, id);
		assert_int_equal(comp.status, 0);
		assert_int_equal(comp.len, sizeof(i));
		assert_memory_equal(comp.data, &i, sizeof(i));
	}
	dg_flow_stats(f, &fs);
	printf("# flow fd: %u waits armed, %u found the response there\n",
	       armed, already);
	assert_int_equal(armed + already, 2000);
	assert_true(armed > 0);
	dg_close(f, conn);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	dg_nic_stop(nic);
	pthread_join(et, NULL);
	dg_nic_destroy(nic);
}

/* Waits (on the clock: what is tested is time passing) until t_ns. */
static void until_ns(uint64_t t_ns)
{
	while (now_ns() < t_ns)
		;
}

/* dg_flow_idle once after the flow's spin (1 us) has passed. */
static int idle_past_spin(struct dg_flow *f, uint64_t *idle, int own)
{
	until_ns(*idle + 2000);
	return dg_flow_idle(f, idle, 0, -1, own);
}

static uint64_t stat_of(struct dg_flow *f, size_t off)
{
	struct dg_flow_stats st;

	dg_flow_stats(f, &st);
	return *(const uint64_t *)((const char *)&st + off);
}
#define STAT(f, field) stat_of(f, offsetof(struct dg_flow_stats, field))

/*
 * The yield phase of threads waiting for requests (dg_flow_idle, 0 for
 * own_calls): one flow of a host at a time takes it; it gives way (and
 * sleeps) when another flow of the host takes a request, then skips its
 * next spell's phase; a phase whose holder stopped looking frees the
 * token at its end. A thread waiting for its own calls always yields.
 * Returns: 0 looked (spin or yield), 1 slept (timeout 0: at once).
 */
static void test_yield_phase(void **state)
{
	struct dg_nic_opts no = {.spin_us = 1};
	struct dg_nic *nic;
	struct dg_host_opts o = {.detach_local = dg_nic_detach_cb,
				 .attach_local = dg_nic_attach_cb,
				 .spin_us = 1,
				 .yield_us = 60000000, /* a minute */
				 .nflows = 2,
				 .slots = 256};
	struct dg_host *h, *h2;
	struct dg_flow *a, *b, *c, *d;
	uint64_t ia = 0, ib = 0, ic = 0, id = 0;
	pthread_t et;

	(void)state;
	assert_int_equal(dg_nic_create(&no, &nic), 0);
	assert_int_equal(pthread_create(&et, NULL, engine_main, nic), 0);
	o.local_arg = nic;
	assert_int_equal(dg_host_attach(&o, &h), 0);
	a = dg_host_flow(h, 0);
	b = dg_host_flow(h, 1);

	/* b's spell begins (an event: it took a request), then a's. */
	assert_int_equal(dg_flow_idle(b, &ib, 0, -1, 0), 0);
	assert_int_equal(dg_flow_idle(a, &ia, 0, -1, 0), 0);
	/* a takes the phase; b, past its spin too, sleeps. */
	assert_int_equal(idle_past_spin(a, &ia, 0), 0);
	assert_int_equal(STAT(a, yield_phases), 1);
	assert_int_equal(idle_past_spin(b, &ib, 0), 1);
	assert_int_equal(STAT(b, yield_phases), 0);
	assert_int_equal(STAT(b, sleeps), 1);
	/* a looks on; b waiting for its own calls yields all the same. */
	assert_int_equal(dg_flow_idle(a, &ia, 0, -1, 0), 0);
	ib = 0;
	assert_int_equal(dg_flow_idle(b, &ib, 0, -1, 1), 0);
	assert_int_equal(idle_past_spin(b, &ib, 1), 0);
	assert_int_equal(dg_flow_idle(a, &ia, 0, -1, 0), 0);
	assert_int_equal(STAT(a, yield_given_way), 0);
	assert_int_equal(STAT(a, sleeps), 0);

	/* b takes a request: a gives way at its next look, and sleeps. */
	ib = 0;
	assert_int_equal(dg_flow_idle(b, &ib, 0, -1, 0), 0);
	assert_int_equal(dg_flow_idle(a, &ia, 0, -1, 0), 1);
	assert_int_equal(STAT(a, yield_given_way), 1);
	assert_int_equal(STAT(a, sleeps), 1);
	/* Its next spell has no phase; b takes the free token. */
	ia = 0;
	assert_int_equal(dg_flow_idle(a, &ia, 0, -1, 0), 0);
	assert_int_equal(idle_past_spin(a, &ia, 0), 1);
	assert_int_equal(STAT(a, yield_phases), 1);
	assert_int_equal(STAT(a, sleeps), 2);
	/* (a's spell began after b's: b holds no stale event.) */
	ib = 0;
	assert_int_equal(dg_flow_idle(b, &ib, 0, -1, 0), 0);
	assert_int_equal(idle_past_spin(b, &ib, 0), 0);
	assert_int_equal(STAT(b, yield_phases), 1);
	assert_int_equal(dg_flow_idle(b, &ib, 0, -1, 0), 0);

	/*
	 * A holder that stops looking (its thread ended) keeps the token
	 * only to its phase's end: a host whose phase is 20 ms.
	 */
	o.yield_us = 20000;
	assert_int_equal(dg_host_attach(&o, &h2), 0);
	c = dg_host_flow(h2, 0);
	d = dg_host_flow(h2, 1);
	assert_int_equal(dg_flow_idle(d, &id, 0, -1, 0), 0);
	assert_int_equal(dg_flow_idle(c, &ic, 0, -1, 0), 0);
	assert_int_equal(idle_past_spin(c, &ic, 0), 0);
	assert_int_equal(idle_past_spin(d, &id, 0), 1);
	until_ns(ic + 21000000ull);
	id = 0; /* (d's new spell is an event c, gone, never sees) */
	assert_int_equal(dg_flow_idle(d, &id, 0, -1, 0), 0);
	assert_int_equal(idle_past_spin(d, &id, 0), 0);
	assert_int_equal(STAT(d, yield_phases), 1);
	/* Another host's token: h's b looks on in its own phase. */
	assert_int_equal(dg_flow_idle(b, &ib, 0, -1, 0), 0);

	dg_host_detach(h2);
	dg_host_detach(h);
	dg_nic_stop(nic);
	pthread_join(et, NULL);
	dg_nic_destroy(nic);
}

static const uint32_t no_workers = 0, two_workers = 2;

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_sleep_wake_stress,
					  (void *)&no_workers),
		cmocka_unit_test_prestate(test_sleep_wake_stress,
					  (void *)&two_workers),
		cmocka_unit_test(test_flow_fd),
		cmocka_unit_test(test_yield_phase),
	};

	return cmocka_run_group_tests_name("sleep", tests, NULL, NULL);
}
