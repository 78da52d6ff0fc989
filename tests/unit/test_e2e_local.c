// SPDX-License-Identifier: MIT
/*
 * End to end on the local (shared-memory) backend: one in-process NIC
 * engine, a server host and a client host attached as tenants, RPCs of
 * mixed sizes with content checks, and the error cases: unknown service,
 * unknown function, application errors, wrong thread, oversize, full
 * rings, and malformed frames written straight into a TX ring.
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

#include "dagger/ctrl.h"
#include "dagger/dagger.h"
#include "dagger/ring.h"
#include "dg_track.h"
#include "engine.h"

enum { FN_ECHO = 1, FN_FAIL = 2 };

struct env {
	struct dg_nic *nic;
	pthread_t thr;
};

static struct env E;

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

static int app_fail(void *arg, const struct dg_request *req,
		    struct dg_response *resp)
{
	(void)arg;
	(void)req;
	memcpy(resp->data, "nope", 4);
	resp->len = 4;
	return DG_ST_APP_BASE + 6;
}

static const struct dg_handler handlers[] = {{FN_ECHO, echo},
					     {FN_FAIL, app_fail}};
static const struct dg_service_def echo_svc = {
	.name = "echo", .handlers = handlers, .nhandlers = 2};

static struct dg_host *attach_opts(struct dg_nic *nic, uint32_t nflows,
				   uint32_t slots, int csum)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = nic,
				 .nflows = nflows,
				 .slots = slots,
				 .csum = csum};
	struct dg_host *h = NULL;

	assert_int_equal(dg_host_attach(&o, &h), 0);
	return h;
}

static struct dg_host *attach_to(struct dg_nic *nic, uint32_t nflows,
				 uint32_t slots)
{
	return attach_opts(nic, nflows, slots, 0);
}

static struct dg_host *attach(uint32_t nflows, uint32_t slots)
{
	return attach_to(E.nic, nflows, slots);
}

static int group_setup(void **state)
{
	(void)state;
	assert_int_equal(dg_nic_create(NULL, &E.nic), 0);
	assert_int_equal(pthread_create(&E.thr, NULL, engine_main, E.nic), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dg_nic_stop(E.nic);
	pthread_join(E.thr, NULL);
	dg_nic_stats_print(E.nic, stdout);
	dg_nic_destroy(E.nic);
	return 0;
}

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

/* Sizes: small ones mostly, every frame boundary, up to 64 KiB. */
static uint32_t pick_size(uint32_t *s)
{
	uint32_t r = lcg(s) % 100;

	if (r < 60)
		return lcg(s) % 200;
	if (r < 90)
		return lcg(s) % 4096;
	if (r < 98)
		return lcg(s) % DG_MAX_INLINE;
	return DG_MAX_INLINE;
}

struct client_arg {
	struct dg_host *h;
	uint32_t flow;
	uint32_t n;
	struct dg_track t;
	int err;
	uint8_t buf[DG_MAX_INLINE]; /* the client thread's requests */
};

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 31u + (i >> 7));
}

/*
 * Pipelined client: up to 8 calls in flight. Every answer is matched to
 * the call in flight with its rpc id (dg_track.h): a duplicate, an answer
 * to no call, wrong bytes or a lost call are each counted.
 */
static void *client_main(void *arg)
{
	struct client_arg *a = arg;
	struct dg_flow *f = dg_host_flow(a->h, a->flow);
	uint8_t *buf = a->buf;
	uint32_t sizes[256], next = 0, resend[16], nresend = 0;
	uint32_t s = 12345u + a->flow, i;
	struct dg_completion c[8];
	time_t quiet = time(NULL) + 30; /* no answer for this long: stop */
	int conn = dg_connect(f, NULL, 0, "echo", 5000);

	if (conn < 0 || dg_track_init(&a->t, a->n)) {
		a->err = conn < 0 ? conn : -ENOMEM;
		return NULL;
	}
	for (i = 0; i < 256; i++)
		sizes[i] = pick_size(&s);
	while (a->t.ok + a->t.failed + a->t.corrupt < a->n &&
	       time(NULL) < quiet) {
		int k;

		/* New calls, and calls answered BUSY (sent again). */
		if ((next < a->n || nresend) && a->t.inflight < 8) {
			uint32_t seq = nresend ? resend[nresend - 1] : next;
			uint32_t len = sizes[seq % 256], id;

			dg_track_fill(buf, len, seq);
			if (dg_call(f, conn, FN_ECHO, buf, len, &id) == 0) {
				if (!dg_track_sent(&a->t, id, seq, len))
					a->err = -EOVERFLOW;
				if (nresend)
					nresend--;
				else
					next++;
			}
		}
		k = dg_poll(f, c, 8);
		if (k > 0)
			quiet = time(NULL) + 30;
		for (i = 0; i < (uint32_t)k; i++) {
			uint32_t seq;

			if (dg_track_answer(&a->t, &c[i], &seq) ==
				    DG_TRACK_BUSY &&
			    nresend < 16)
				resend[nresend++] = seq;
		}
	}
	dg_close(f, conn);
	return NULL;
}

/* What a client's book-keeping must show: every call once, intact. */
static void check_client(struct client_arg *a, int i)
{
	printf("# client %d: %llu ok, %llu resent after BUSY, %llu failed, "
	       "%llu lost, %llu duplicated, %llu unknown, %llu corrupt\n",
	       i, (unsigned long long)a->t.ok, (unsigned long long)a->t.busy,
	       (unsigned long long)a->t.failed,
	       (unsigned long long)dg_track_lost(&a->t),
	       (unsigned long long)a->t.dup, (unsigned long long)a->t.unknown,
	       (unsigned long long)a->t.corrupt);
	assert_int_equal(a->err, 0);
	assert_int_equal(a->t.dup, 0);
	assert_int_equal(a->t.unknown, 0);
	assert_int_equal(a->t.corrupt, 0);
	assert_int_equal(a->t.failed, 0);
	assert_int_equal(dg_track_lost(&a->t), 0);
	assert_int_equal(a->t.ok, a->n);
	dg_track_free(&a->t);
}

/* 2 client threads x 2 server threads, 5,000 mixed-size RPCs each. */
static void echo_mixed(int csum, uint32_t srv_slots, uint32_t cli_slots)
{
	struct dg_host *srv = attach_opts(E.nic, 2, srv_slots, csum),
		       *cli = attach_opts(E.nic, 2, cli_slots, csum);
	struct client_arg a[2] = {{.h = cli, .flow = 0, .n = 5000},
				  {.h = cli, .flow = 1, .n = 5000}};
	struct dg_server *s;
	pthread_t t[2];
	int i;

	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 2, &s), 0);
	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, client_main, &a[i]);
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		check_client(&a[i], i);
	}
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

static void test_echo_mixed(void **state)
{
	(void)state;
	echo_mixed(0, 8192, 2048);
}

/*
 * The same on checksummed rings (the RDMA format; the local backend then
 * checks every frame's CRC32C), with rings that wrap every few hundred
 * calls: the checksummed fast paths of dg_call, dg_poll and
 * dg_serve_poll (one and two frames, the CRC in line where the CPU has
 * the instruction), their hand-over to the general paths, and the scrub
 * of consumed continuation frames.
 */
static void test_echo_mixed_csum(void **state)
{
	(void)state;
	echo_mixed(1, 2048, 2048);
}

static void test_errors(void **state)
{
	struct dg_host *srv = attach(1, 256), *cli = attach(1, 256);
	struct dg_flow *f = dg_host_flow(cli, 0);
	static uint8_t big[DG_MAX_MSG + 1];
	char out[16];
	size_t olen = sizeof(out);
	struct dg_server *s;
	uint32_t id;
	int conn;

	(void)state;
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	/* Unknown service: a clear error at connect. */
	assert_int_equal(dg_connect(f, NULL, 0, "nosuch", 5000), -ENOENT);
	conn = dg_connect(f, NULL, 0, "echo", 5000);
	assert_true(conn >= 0);
	/* Unknown function id: DG_ST_NO_FUNCTION travels back. */
	assert_int_equal(dg_call_sync(f, conn, 99, "x", 1, out, &olen, 5000),
			 DG_ST_NO_FUNCTION);
	/* Application error status and its payload. */
	olen = sizeof(out);
	assert_int_equal(
		dg_call_sync(f, conn, FN_FAIL, "x", 1, out, &olen, 5000),
		DG_ST_APP_BASE + 6);
	assert_int_equal(olen, 4);
	assert_memory_equal(out, "nope", 4);
	/* Too big for the protocol (large sizes: test_large). */
	assert_int_equal(dg_call(f, conn, FN_ECHO, big, sizeof(big), &id),
			 -EMSGSIZE);
	/* Unknown connection id: the engine answers NO_CONN. */
	olen = sizeof(out);
	assert_int_equal(
		dg_call_sync(f, 4000, FN_ECHO, "x", 1, out, &olen, 5000),
		DG_ST_NO_CONN);
	/* After all that, a normal call still works. */
	olen = sizeof(out);
	assert_int_equal(
		dg_call_sync(f, conn, FN_ECHO, "hello", 5, out, &olen, 5000),
		0);
	assert_memory_equal(out, "hello", 5);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

/*
 * A call that runs out of time is given up: the flow's control calls work
 * at once (they refused with -EBUSY while the call counted as
 * outstanding), the late answer is dropped and counted, not handed out,
 * and dg_cancel gives up an asynchronous call the same way.
 */
static void test_abandoned_calls(void **state)
{
	struct dg_host *srv = attach(1, 256), *cli = attach(1, 256);
	struct dg_flow *f = dg_host_flow(cli, 0);
	struct dg_flow *sf = dg_host_flow(srv, 0);
	struct dg_flow_stats fs;
	struct dg_completion c[4];
	char out[16];
	size_t olen = sizeof(out);
	uint32_t id, id2;
	uint64_t until;
	int conn, conn2, k, got = 0;

	(void)state;
	/* Served by hand: the server answers only when the test says so. */
	assert_int_equal(dg_serve(sf, &echo_svc, 5000), 0);
	conn = dg_connect(f, NULL, 0, "echo", 5000);
	assert_true(conn >= 0);
	assert_int_equal(
		dg_call_sync(f, conn, FN_ECHO, "late", 4, out, &olen, 50),
		-ETIMEDOUT);
	dg_flow_stats(f, &fs);
	assert_int_equal(fs.abandoned, 1);
	assert_int_equal(fs.late, 0);
	/* Free for control calls although the answer has not come. */
	conn2 = dg_connect(f, NULL, 0, "echo", 5000);
	assert_true(conn2 >= 0);
	assert_int_equal(dg_close(f, conn2), 0);
	/* An asynchronous call, cancelled; then one that is kept. */
	assert_int_equal(dg_call(f, conn, FN_ECHO, "gone", 4, &id), 0);
	assert_int_equal(dg_cancel(f, id), 0);
	assert_int_equal(dg_cancel(f, id), -EALREADY);
	assert_int_equal(dg_cancel(f, id + 5), -ENOENT);
	assert_int_equal(dg_call(f, conn, FN_ECHO, "kept", 4, &id2), 0);
	/* Now the server answers all three: only the kept call comes. */
	until = (uint64_t)time(NULL) + 10;
	while (got < 1 && (uint64_t)time(NULL) < until) {
		dg_serve_poll(sf, 16);
		k = dg_poll(f, c, 4);
		assert_true(k >= 0 && k <= 1);
		if (k == 1) {
			assert_int_equal(c[0].rpc_id, id2);
			assert_int_equal(c[0].len, 4);
			assert_memory_equal(c[0].data, "kept", 4);
			got++;
		}
	}
	assert_int_equal(got, 1);
	dg_flow_stats(f, &fs);
	assert_int_equal(fs.abandoned, 2);
	assert_int_equal(fs.late, 2);
	assert_int_equal(fs.calls, fs.completions);
	/* Nothing more arrives; the flow works as before. */
	assert_int_equal(dg_poll(f, c, 4), 0);
	assert_int_equal(dg_cancel(f, id2), -ENOENT);
	assert_int_equal(dg_close(f, conn), 0);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

/*
 * A tenant's share: 1024 connections (a quarter of the engine's) and 16
 * services it creates; past them OPEN and REGISTER are refused with
 * DG_ST_QUOTA (-EDQUOT), counted, and other tenants are not affected.
 */
static void test_tenant_quota(void **state)
{
	struct dg_host *a = attach(17, 64), *b = attach(1, 64);
	struct dg_flow *f = dg_host_flow(a, 0);
	static struct dg_service_def defs[17];
	static char names[17][16];
	struct dg_nic_stats s0, s1;
	int conns[1024], c, i;

	(void)state;
	assert_int_equal(dg_nic_stats(E.nic, &s0, 5000), 0);
	for (i = 0; i < 1024; i++) {
		conns[i] = dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000);
		assert_true(conns[i] >= 0);
	}
	assert_int_equal(dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000),
			 -EDQUOT);
	/* Another tenant still opens; a closed one makes room again. */
	c = dg_connect(dg_host_flow(b, 0), NULL, 0, DG_LOOPBACK_SERVICE, 5000);
	assert_true(c >= 0);
	assert_int_equal(dg_close(f, conns[0]), 0);
	conns[0] = dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000);
	assert_true(conns[0] >= 0);
	/* Services: 16 new ones per tenant. */
	for (i = 0; i < 17; i++) {
		snprintf(names[i], sizeof(names[i]), "quota-%d", i);
		defs[i] = (struct dg_service_def){
			.name = names[i], .handlers = handlers, .nhandlers = 2};
		assert_int_equal(
			dg_serve(dg_host_flow(a, (uint32_t)i), &defs[i], 5000),
			i < 16 ? 0 : -EDQUOT);
	}
	assert_int_equal(dg_nic_stats(E.nic, &s1, 5000), 0);
	assert_int_equal(s1.quota_refused - s0.quota_refused, 2);
	dg_host_detach(a);
	dg_host_detach(b);
}

/*
 * Settings from the environment: taken when the options leave them at 0,
 * and a value that does not parse fails the attach instead of silently
 * becoming a default.
 */
static int attach_rc(int mode)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = E.nic,
				 .mode = mode};
	struct dg_host *h = NULL;
	int rc = dg_host_attach(&o, &h);

	if (!rc) {
		assert_non_null(h);
		dg_host_detach(h);
	} else {
		assert_null(h);
	}
	return rc;
}

/* A flow's yield phase (us) as attached with yield_us, or the error. */
static int attach_yield(uint32_t yield_us)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = E.nic,
				 .yield_us = yield_us};
	struct dg_host *h = NULL;
	int rc = dg_host_attach(&o, &h);

	if (rc) {
		assert_null(h);
		return rc;
	}
	rc = (int)dg_host_flow(h, 0)->yield_us;
	dg_host_detach(h);
	return rc;
}

static void test_env_settings(void **state)
{
	(void)state;
	assert_int_equal(attach_rc(DG_MODE_COUNT), -EINVAL);
	assert_int_equal(attach_rc(-1), -EINVAL);
	setenv("DG_MODE", "turbo", 1);
	assert_int_equal(attach_rc(0), -EINVAL);
	/* Given in the options, the environment is not consulted. */
	assert_int_equal(attach_rc(DG_MODE_PUSH), 0);
	setenv("DG_MODE", "push", 1);
	assert_int_equal(attach_rc(0), 0);
	unsetenv("DG_MODE");
	setenv("DG_SPIN_US", "12x", 1);
	assert_int_equal(attach_rc(0), -EINVAL);
	setenv("DG_SPIN_US", "20000000", 1);
	assert_int_equal(attach_rc(0), -EINVAL);
	setenv("DG_SPIN_US", "20", 1);
	assert_int_equal(attach_rc(0), 0);
	unsetenv("DG_SPIN_US");
	setenv("DG_BUSY_POLL", "1", 1);
	assert_int_equal(attach_rc(0), 0);
	unsetenv("DG_BUSY_POLL");
	/* The yield phase: default, from the environment, off, malformed. */
	assert_int_equal(attach_yield(0), 2000);
	assert_int_equal(attach_yield(DG_YIELD_OFF), 0);
	assert_int_equal(attach_yield(300), 300);
	setenv("DG_YIELD_US", "700", 1);
	assert_int_equal(attach_yield(0), 700);
	assert_int_equal(attach_yield(300), 300); /* options first */
	setenv("DG_YIELD_US", "0", 1);
	assert_int_equal(attach_yield(0), 0);
	setenv("DG_YIELD_US", "5ms", 1);
	assert_int_equal(attach_yield(0), -EINVAL);
	setenv("DG_YIELD_US", "20000000", 1);
	assert_int_equal(attach_yield(0), -EINVAL);
	unsetenv("DG_YIELD_US");
}

static void *other_thread(void *arg)
{
	uint32_t id;

	return (void *)(intptr_t)dg_call(arg, 0, FN_ECHO, "x", 1, &id);
}

static void test_wrong_thread(void **state)
{
	struct dg_host *cli = attach(1, 64);
	struct dg_flow *f = dg_host_flow(cli, 0);
	struct dg_completion c;
	pthread_t t;
	void *rv;

	(void)state;
	assert_int_equal(dg_poll(f, &c, 1), 0); /* this thread owns it */
	pthread_create(&t, NULL, other_thread, f);
	pthread_join(t, &rv);
	assert_int_equal((intptr_t)rv, -EPERM);
	dg_host_detach(cli);
}

static struct dg_nic_stats nic_stats(void)
{
	struct dg_nic_stats st;

	assert_int_equal(dg_nic_stats(E.nic, &st, 5000), 0);
	return st;
}

/*
 * Full rings, proven by the rings' and the engine's state, not by time.
 * A server flow that does not poll, S slots per ring: the engine hands it
 * S - 1 requests (its RX ring, less the slot of the REGISTER reply that
 * dg_serve read and has not released yet), answers the next S - 1 BUSY
 * into the client's RX ring (less the OPEN reply's slot), then cannot
 * answer the next one and stops taking from the client's TX ring, which
 * fills: S more. So exactly 3S - 2 calls go in; from then on every call is
 * -EAGAIN and the engine, iteration after iteration, moves nothing. After
 * draining, every call has had exactly one answer, OK or BUSY, and calls
 * succeed again.
 */
static void test_ring_full(void **state)
{
	enum { S = 64 };
	struct dg_host *srv = attach(1, S), *cli = attach(1, S);
	struct dg_flow *sf = dg_host_flow(srv, 0), *f = dg_host_flow(cli, 0);
	struct dg_nic_stats s0, s1 = {0}, s2;
	struct dg_flow_stats a, b;
	struct dg_completion c[64];
	static uint8_t answered[3 * S];
	uint32_t calls = 0, done = 0, busy = 0, ok = 0, id, first = 0, i;
	bool stalled;
	time_t until;
	int conn, rc, k;

	(void)state;
	assert_int_equal(dg_serve(sf, &echo_svc, 5000), 0);
	conn = dg_connect(f, NULL, 0, "echo", 5000);
	assert_true(conn >= 0);
	s0 = nic_stats();
	/*
	 * Call until the engine's counters show the stall, and once more
	 * after that (the -EAGAIN before may predate the engine's last
	 * tx_head).
	 */
	until = time(NULL) + 30;
	for (stalled = false;;) {
		rc = dg_call(f, conn, FN_ECHO, "abc", 3, &id);
		if (rc == 0) {
			if (!calls++)
				first = id;
			assert_true(calls <= 3 * S - 2);
			stalled = false;
			continue;
		}
		assert_int_equal(rc, -EAGAIN);
		if (stalled)
			break;
		s1 = nic_stats();
		stalled = s1.rpcs_rx - s0.rpcs_rx == 2 * S - 2 &&
			  s1.rpcs_tx - s0.rpcs_tx == 2 * S - 2;
		if (stalled)
			continue;
		if (time(NULL) > until)
			fail_msg("no stall after %u calls: %llu delivered, "
				 "%llu taken",
				 calls,
				 (unsigned long long)(s1.rpcs_rx - s0.rpcs_rx),
				 (unsigned long long)(s1.rpcs_tx - s0.rpcs_tx));
	}
	printf("# -EAGAIN after %u calls; the engine refused %llu times\n",
	       calls, (unsigned long long)(s1.busy - s0.busy));
	assert_int_equal(calls, 3 * S - 2);
	assert_true(s1.busy - s0.busy >= S - 1);
	/*
	 * Stalled: each dg_nic_stats() runs on the loop thread, so two more
	 * of them span loop iterations, in which the engine takes and
	 * delivers nothing, while every call is -EAGAIN.
	 */
	dg_flow_stats(f, &a);
	for (i = 0; i < 100; i++)
		assert_int_equal(dg_call(f, conn, FN_ECHO, "abc", 3, &id),
				 -EAGAIN);
	(void)nic_stats();
	s2 = nic_stats();
	dg_flow_stats(f, &b);
	assert_int_equal(b.eagain - a.eagain, 100);
	assert_int_equal(b.calls, a.calls);
	assert_int_equal(b.calls, calls);
	assert_int_equal(s2.rpcs_tx, s1.rpcs_tx);
	assert_int_equal(s2.rpcs_rx, s1.rpcs_rx);
	assert_int_equal(s2.frames_tx, s1.frames_tx);
	assert_int_equal(s2.drops[DG_NIC_DROP_NO_REQUEST],
			 s0.drops[DG_NIC_DROP_NO_REQUEST]);

	/* Drain: each call answered once, BUSY or echoed. */
	memset(answered, 0, sizeof(answered));
	until = time(NULL) + 30;
	while (done < calls && time(NULL) <= until) {
		dg_serve_poll(sf, 64);
		k = dg_poll(f, c, 64);
		for (i = 0; i < (uint32_t)k; i++) {
			uint32_t n = c[i].rpc_id - first;

			assert_true(n < calls);
			assert_int_equal(answered[n], 0);
			answered[n] = 1;
			if (c[i].status == DG_ST_BUSY) {
				busy++;
			} else {
				assert_int_equal(c[i].status, 0);
				assert_int_equal(c[i].len, 3);
				assert_memory_equal(c[i].data, "abc", 3);
				ok++;
			}
			done++;
		}
	}
	printf("# %u ok, %u busy\n", ok, busy);
	assert_int_equal(done, calls);
	assert_true(busy >= S - 1);
	/* And calls succeed again. */
	assert_int_equal(dg_call(f, conn, FN_ECHO, "abc", 3, &id), 0);
	for (until = time(NULL) + 30, k = 0; k == 0 && time(NULL) <= until;) {
		dg_serve_poll(sf, 64);
		k = dg_poll(f, c, 1);
	}
	assert_int_equal(k, 1);
	assert_int_equal(c[0].rpc_id, id);
	assert_int_equal(c[0].status, 0);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

/* Raw tenant: frames written by hand into its TX ring. */
struct raw {
	uint8_t *region;
	struct dg_region_layout lay;
	int tenant;
	uint32_t tx, rx;
};

static void raw_put(struct raw *r, const struct dg_frame *fr)
{
	struct dg_frame *s = (void *)(r->region + dg_tx_ring_off(&r->lay, 0) +
				      (r->tx & 63) * DG_SLOT_SIZE);

	memcpy((uint8_t *)s + 4, (const uint8_t *)fr + 4, DG_SLOT_SIZE - 4);
	dg_slot_publish(s, r->tx++, 0);
}

/* A whole well-formed message of len bytes, published as a host does. */
static void raw_put_msg(struct raw *r, uint32_t rpc_id, uint8_t flags,
			const void *data, uint32_t len)
{
	uint32_t cnt = dg_frames_for(len), i, n = DG_FRAME_PAYLOAD;
	uint8_t *ring = r->region + dg_tx_ring_off(&r->lay, 0);
	struct dg_frame *s = (void *)(ring + (r->tx & 63) * DG_SLOT_SIZE);

	for (i = 1; i < cnt; i++, n += DG_CONT_PAYLOAD) {
		struct dg_frame_cont *c =
			(void *)(ring + ((r->tx + i) & 63) * DG_SLOT_SIZE);

		memset(c->data, 0, DG_CONT_PAYLOAD);
		memcpy(c->data, (const uint8_t *)data + n,
		       len - n < DG_CONT_PAYLOAD ? len - n : DG_CONT_PAYLOAD);
		dg_cont_publish(c, r->tx + i, 0);
	}
	memset((uint8_t *)s + 4, 0, DG_SLOT_SIZE - 4);
	s->rpc_id = rpc_id;
	s->len = len;
	s->cnt = (uint16_t)cnt;
	s->flags = flags;
	memcpy(s->data, data, len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD);
	dg_slot_publish(s, r->tx, 0);
	r->tx += cnt;
}

static const struct dg_frame *raw_get(struct raw *r)
{
	const struct dg_frame *s =
		(const void *)(r->region + dg_rx_ring_off(&r->lay, 0) +
			       (r->rx & 63) * DG_SLOT_SIZE);
	time_t until = time(NULL) + 10;

	while (!dg_slot_ready(s, r->rx, 0))
		if (time(NULL) > until)
			return NULL;
	r->rx++;
	return s;
}

/*
 * Malformed frames written straight into a tenant's TX ring: each is
 * dropped and counted under its reason (dg_nic_stats), and nothing but
 * the two answers they call for (the bad control op's reply, NO_CONN for
 * the unknown connection) is delivered, to this tenant or any other. A
 * last well-formed control message (a CLOSE of nothing) fences the
 * sequence: its reply comes after everything before it was taken.
 */
static void test_malformed_frames(void **state)
{
	struct raw r = {0};
	struct dg_region_hdr *h;
	struct dg_frame f = {0};
	struct dg_ctrl_msg close_nothing = {.op = DG_CTRL_CLOSE, .conn = 4321};
	const struct dg_frame *got;
	struct dg_nic_stats s0, s1;
	struct dg_flow_ctrl *ctrl;
	const struct dg_frame *next;
	time_t until;
	uint32_t i;

	(void)state;
	assert_int_equal(dg_region_layout(1, 64, &r.lay), 0);
	r.region = aligned_alloc(4096, dg_region_bytes(&r.lay));
	memset(r.region, 0, dg_region_bytes(&r.lay));
	h = (void *)r.region;
	*h = (struct dg_region_hdr){.magic = DG_REGION_MAGIC,
				    .version = DG_REGION_VERSION,
				    .nflows = 1,
				    .slots = 64};
	r.tenant =
		dg_nic_attach_local(E.nic, r.region, dg_region_bytes(&r.lay));
	assert_true(r.tenant >= 0);
	s0 = nic_stats();

	/* len over the largest message */
	f = (struct dg_frame){.rpc_id = 1,
			      .cnt = (uint16_t)dg_frames_for(DG_MAX_INLINE),
			      .len = DG_MAX_INLINE + 1,
			      .flags = DG_FF_REQ};
	raw_put(&r, &f);
	/* a slot count that does not match the length */
	f = (struct dg_frame){
		.rpc_id = 2, .cnt = 2, .len = 1, .flags = DG_FF_REQ};
	raw_put(&r, &f);
	/* no kind, then two kinds at once, then an unknown flag */
	f = (struct dg_frame){.rpc_id = 3, .cnt = 1, .len = 1};
	raw_put(&r, &f);
	f.flags = DG_FF_REQ | DG_FF_RESP;
	raw_put(&r, &f);
	f.flags = DG_FF_REQ | 0x80;
	raw_put(&r, &f);
	/* more slots than the ring has */
	f = (struct dg_frame){.rpc_id = 4,
			      .cnt = (uint16_t)dg_frames_for(64 * 56),
			      .len = 64 * 56,
			      .flags = DG_FF_REQ};
	raw_put(&r, &f);
	/* a response nobody asked this flow for */
	f = (struct dg_frame){
		.rpc_id = 5, .cnt = 1, .len = 3, .flags = DG_FF_RESP};
	raw_put(&r, &f);
	/* a control message with an unknown op */
	f = (struct dg_frame){
		.rpc_id = 7, .cnt = 1, .len = 1, .flags = DG_FF_CTRL};
	f.data[0] = 99;
	raw_put(&r, &f);
	/* a well-formed request on a connection that does not exist */
	f = (struct dg_frame){.rpc_id = 8,
			      .conn = 1234,
			      .cnt = 1,
			      .len = 1,
			      .flags = DG_FF_REQ};
	raw_put(&r, &f);
	/* the fence: a CLOSE of a connection that does not exist (4 slots) */
	raw_put_msg(&r, 9, DG_FF_CTRL, &close_nothing, sizeof(close_nothing));

	/* The two answers, then the fence's reply, and nothing else. */
	got = raw_get(&r);
	assert_non_null(got);
	assert_int_equal(got->rpc_id, 7);
	assert_int_equal(got->flags, DG_FF_CTRL);
	assert_int_equal(got->status, DG_ST_BAD_FRAME);
	got = raw_get(&r);
	assert_non_null(got);
	assert_int_equal(got->rpc_id, 8);
	assert_int_equal(got->flags, DG_FF_RESP);
	assert_int_equal(got->status, DG_ST_NO_CONN);
	got = raw_get(&r);
	assert_non_null(got);
	assert_int_equal(got->rpc_id, 9);
	assert_int_equal(got->flags, DG_FF_CTRL);
	assert_int_equal(got->status, DG_ST_NO_CONN);
	next = (const void *)(r.region + dg_rx_ring_off(&r.lay, 0) +
			      (r.rx & 63) * DG_SLOT_SIZE);
	/* Every slot taken: tx_head reaches the end (stored after the reply).
	 */
	ctrl = (void *)(r.region + dg_ctrl_off(&r.lay, 0));
	until = time(NULL) + 10;
	while (__atomic_load_n(&ctrl->tx_head, __ATOMIC_ACQUIRE) != r.tx)
		assert_true(time(NULL) <= until);
	s1 = nic_stats();
	assert_false(dg_slot_ready(next, r.rx, 0));
	/* Each drop under its reason, exactly; nothing else anywhere. */
	assert_int_equal(s1.drops[DG_NIC_DROP_BAD_LEN] -
				 s0.drops[DG_NIC_DROP_BAD_LEN],
			 2);
	assert_int_equal(s1.drops[DG_NIC_DROP_BAD_FLAGS] -
				 s0.drops[DG_NIC_DROP_BAD_FLAGS],
			 3);
	assert_int_equal(s1.drops[DG_NIC_DROP_TOO_BIG] -
				 s0.drops[DG_NIC_DROP_TOO_BIG],
			 1);
	assert_int_equal(s1.drops[DG_NIC_DROP_NO_REQUEST] -
				 s0.drops[DG_NIC_DROP_NO_REQUEST],
			 1);
	assert_int_equal(s1.drops[DG_NIC_DROP_BAD_CTRL] -
				 s0.drops[DG_NIC_DROP_BAD_CTRL],
			 1);
	assert_int_equal(s1.drops[DG_NIC_DROP_BAD_CONN] -
				 s0.drops[DG_NIC_DROP_BAD_CONN],
			 1);
	for (i = 0; i < DG_NIC_DROP_N; i++)
		printf("# drops[%u]: %llu\n", i,
		       (unsigned long long)(s1.drops[i] - s0.drops[i]));
	/* Delivered: the three answers, to this tenant; to nobody else. */
	assert_int_equal(s1.rpcs_rx - s0.rpcs_rx, 3);
	assert_int_equal(s1.frames_rx - s0.frames_rx, 3);
	assert_int_equal(s1.busy, s0.busy);
	assert_int_equal(s1.conns, s0.conns);
	assert_int_equal(s1.services, s0.services);
	dg_nic_detach_local(E.nic, r.tenant);
	free(r.region);
}

/*
 * Callers may reach a service the moment the engine registers it, before
 * the server thread has read the engine's reply: requests landing right
 * behind that reply are served, not dropped. Many rounds of a client
 * that retries its connect and calls at once, against a server that
 * registers while the client is already trying.
 */
struct race_srv {
	struct dg_host *h;
	int rc;
	volatile int stop;
};

static void *race_server(void *arg)
{
	struct race_srv *r = arg;
	struct dg_flow *f = dg_host_flow(r->h, 0);

	r->rc = dg_serve(f, &echo_svc, 5000);
	while (!r->rc && !r->stop)
		dg_serve_poll(f, 16);
	return NULL;
}

static void test_register_race(void **state)
{
	uint32_t round, lost = 0;

	(void)state;
	for (round = 0; round < 100; round++) {
		struct dg_host *srv = attach(1, 64), *cli = attach(1, 64);
		struct dg_flow *f = dg_host_flow(cli, 0);
		struct race_srv r = {.h = srv};
		struct dg_completion c[16];
		uint32_t sent = 0, done = 0, id;
		uint64_t spins = 0;
		pthread_t thr;
		int conn;

		assert_int_equal(pthread_create(&thr, NULL, race_server, &r),
				 0);
		while ((conn = dg_connect(f, NULL, 0, "echo", 5000)) == -ENOENT)
			;
		assert_true(conn >= 0);
		while (sent < 16 && dg_call(f, conn, FN_ECHO, "x", 1, &id) == 0)
			sent++;
		while (done < sent && spins++ < 200000000ull) {
			int k = dg_poll(f, c, 16), i;

			for (i = 0; i < k; i++) {
				assert_int_equal(c[i].status, 0);
				done++;
			}
			if (!(spins & 1023))
				sched_yield();
		}
		lost += sent - done;
		r.stop = 1;
		pthread_join(thr, NULL);
		assert_int_equal(r.rc, 0);
		dg_host_detach(cli);
		dg_host_detach(srv);
		if (lost)
			break;
	}
	printf("# %u rounds, %u calls lost\n", round, lost);
	assert_int_equal(lost, 0);
	/* Its servers all gone, the name takes no new callers. */
	{
		struct dg_host *cli = attach(1, 64);

		assert_int_equal(
			dg_connect(dg_host_flow(cli, 0), NULL, 0, "echo", 5000),
			-ENOENT);
		dg_host_detach(cli);
	}
}

/*
 * The engine's own loopback service answers every request with its bytes,
 * 1 B to 64 KiB; no server can register that name.
 */
/*
 * Traced calls (DG_FF_TRACE): the engine times exactly those (the
 * server's hop, per call), plain calls not; the mark goes only on a
 * request or a response (on a control message it is a malformed frame,
 * dropped and counted).
 */
static void test_trace(void **state)
{
	struct dg_host *srv = attach(1, 256), *cli = attach(1, 256);
	struct dg_flow *f = dg_host_flow(cli, 0);
	struct dg_nic_stats before, after;
	struct dg_server *s;
	struct raw r = {0};
	struct dg_frame fr = {0};
	const struct dg_frame *got;
	uint32_t i, id;
	char out[8];
	size_t olen;
	int conn;

	(void)state;
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	conn = dg_connect(f, NULL, 0, "echo", 5000);
	assert_true(conn >= 0);
	assert_int_equal(dg_nic_stats(E.nic, &before, 5000), 0);
	for (i = 0; i < 100; i++) {
		struct dg_completion c;

		if (i % 2)
			assert_int_equal(dg_call_traced(f, conn, FN_ECHO, &i,
							sizeof(i), &id),
					 0);
		else
			assert_int_equal(
				dg_call(f, conn, FN_ECHO, &i, sizeof(i), &id),
				0);
		assert_int_equal(dg_wait(f, id, &c, 5000), 0);
		assert_int_equal(c.status, 0);
		assert_int_equal(c.len, sizeof(i));
		assert_memory_equal(c.data, &i, sizeof(i));
	}
	assert_int_equal(dg_nic_stats(E.nic, &after, 5000), 0);
	assert_int_equal(after.trace_server_n - before.trace_server_n, 50);
	assert_true(after.trace_server_p50_ns > 0);

	/* A control message with the mark: dropped, counted. */
	assert_int_equal(dg_region_layout(1, 64, &r.lay), 0);
	r.region = aligned_alloc(4096, dg_region_bytes(&r.lay));
	memset(r.region, 0, dg_region_bytes(&r.lay));
	*(struct dg_region_hdr *)r.region =
		(struct dg_region_hdr){.magic = DG_REGION_MAGIC,
				       .version = DG_REGION_VERSION,
				       .nflows = 1,
				       .slots = 64};
	r.tenant =
		dg_nic_attach_local(E.nic, r.region, dg_region_bytes(&r.lay));
	assert_true(r.tenant >= 0);
	fr = (struct dg_frame){
		.rpc_id = 1, .cnt = 1, .len = 1, .flags = DG_FF_CTRL | 16};
	raw_put(&r, &fr);
	/* A marked request on no connection: taken, answered NO_CONN. */
	fr = (struct dg_frame){.rpc_id = 2,
			       .conn = 1234,
			       .cnt = 1,
			       .len = 1,
			       .flags = DG_FF_REQ | DG_FF_TRACE};
	raw_put(&r, &fr);
	got = raw_get(&r);
	assert_non_null(got);
	assert_int_equal(got->rpc_id, 2);
	assert_int_equal(got->status, DG_ST_NO_CONN);
	assert_int_equal(dg_nic_stats(E.nic, &after, 5000), 0);
	assert_int_equal(after.drops[DG_NIC_DROP_BAD_FLAGS] -
				 before.drops[DG_NIC_DROP_BAD_FLAGS],
			 1);
	dg_nic_detach_local(E.nic, r.tenant);
	free(r.region);
	olen = sizeof(out);
	assert_int_equal(
		dg_call_sync(f, conn, FN_ECHO, "ok", 2, out, &olen, 5000), 0);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

/*
 * Plants a forged first frame (flags, stamped for position at) in the
 * continuation frame of a two-frame echo call on the loopback connection,
 * then makes 63 one-frame calls: a lap of the 64-slot rings later.
 */
static void plant_stale(struct dg_flow *f, int conn, uint32_t at, uint8_t flags)
{
	uint8_t req[DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD];
	char out[sizeof(req)];
	size_t olen = sizeof(out);
	struct dg_frame fake;
	uint32_t i;

	memset(&fake, 0, sizeof(fake));
	fake.stamp = dg_stamp(at);
	fake.rpc_id = 0xdead;
	fake.conn = (uint32_t)conn;
	fake.len = 1;
	fake.fn_id = 9;
	fake.cnt = 1;
	fake.flags = flags;
	memset(req, 0x11, sizeof(req));
	memcpy(req + DG_FRAME_PAYLOAD, &fake, DG_CONT_PAYLOAD);
	assert_int_equal(
		dg_call_sync(f, conn, 9, req, sizeof(req), out, &olen, 5000),
		0);
	assert_memory_equal(out, req, sizeof(req));
	for (i = 0; i < 63; i++) {
		olen = sizeof(out);
		assert_int_equal(
			dg_call_sync(f, conn, 9, "x", 1, out, &olen, 5000), 0);
	}
}

/*
 * A continuation frame's payload that equals the stamp its slot would
 * carry one lap later, laid out as a first frame (a request on our own
 * connection): the engine, polling that slot for the next message, must
 * not take it (shared memory: the engine scrubs what it consumed,
 * dagger/ring.h). Without that, the forged request is answered.
 */
static void test_stale_continuation(void **state)
{
	struct dg_host *h = attach(1, 64);
	struct dg_flow *f = dg_host_flow(h, 0);
	/* Position of the 2-frame call: after the OPEN's frames. */
	uint32_t p = dg_frames_for(sizeof(struct dg_ctrl_msg)), id, k;
	struct dg_completion c[4];
	struct dg_nic_stats s0, s1;
	int conn;

	(void)state;
	conn = dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000);
	assert_true(conn >= 0);
	/*
	 * The continuation frame (slot p + 1) holds the forged request; the
	 * one-frame calls go up to position p + 64: the engine looks at
	 * p + 65.
	 */
	plant_stale(f, conn, p + 1 + 64, DG_FF_REQ);
	/* Runs on the loop thread: the loop polled that slot since. */
	assert_int_equal(dg_nic_stats(E.nic, &s0, 5000), 0);
	assert_int_equal(dg_nic_stats(E.nic, &s1, 5000), 0);
	k = (uint32_t)dg_poll(f, c, 4);
	assert_int_equal(k, 0);
	assert_int_equal(s1.rpcs_tx, s0.rpcs_tx);
	/* The flow goes on: the next call is whole, its id ours. */
	assert_int_equal(dg_call(f, conn, 9, "y", 1, &id), 0);
	do
		k = (uint32_t)dg_poll(f, c, 4);
	while (k == 0);
	assert_int_equal(k, 1);
	assert_int_equal(c[0].rpc_id, id);
	assert_int_equal(dg_close(f, conn), 0);
	dg_host_detach(h);
}

/*
 * The same on the RX side, shared-memory ring: the loopback service
 * answers with the request's bytes, so a continuation frame of the
 * answer holds a fake first frame stamped for its slot one lap later. One
 * frame of the OPEN's reply comes first (RX position 0), the two-frame
 * answer at 1..2, then 63 one-frame answers (3..65): the host looks at
 * position 66, slot 2. Without the engine's guard (or a scrub) it hands
 * out the fake answer.
 */
static void test_stale_continuation_rx(void **state)
{
	struct dg_host *h = attach(1, 64);
	struct dg_flow *f = dg_host_flow(h, 0);
	struct dg_completion c[4];
	uint32_t id;
	int conn, k;

	(void)state;
	conn = dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000);
	assert_true(conn >= 0);
	plant_stale(f, conn, 2 + 64, DG_FF_RESP);
	/* Nothing is outstanding: nothing may come. */
	k = dg_poll(f, c, 4);
	assert_int_equal(k, 0);
	/* The flow goes on: the next answer is whole, its id ours. */
	assert_int_equal(dg_call(f, conn, 9, "y", 1, &id), 0);
	do
		k = dg_poll(f, c, 4);
	while (k == 0);
	assert_int_equal(k, 1);
	assert_int_equal(c[0].rpc_id, id);
	assert_int_equal(dg_close(f, conn), 0);
	dg_host_detach(h);
}

static void test_loopback(void **state)
{
	struct dg_host *h = attach(2, 4096);
	struct dg_flow *f = dg_host_flow(h, 0);
	static uint8_t buf[DG_MAX_INLINE], out[DG_MAX_INLINE];
	static const struct dg_service_def lo_svc = {
		.name = DG_LOOPBACK_SERVICE,
		.handlers = handlers,
		.nhandlers = 2};
	uint32_t sizes[] = {0, 1, 40, 41, 4096, DG_MAX_INLINE}, i, s = 7;
	int conn;

	(void)state;
	assert_int_equal(dg_serve(dg_host_flow(h, 1), &lo_svc, 5000), -EPROTO);
	conn = dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000);
	assert_true(conn >= 0);
	for (i = 0; i < 6 * 20; i++) {
		uint32_t len = i < 6 ? sizes[i] : pick_size(&s);
		size_t olen = sizeof(out);

		fill(buf, len, i);
		assert_int_equal(
			dg_call_sync(f, conn, 9, buf, len, out, &olen, 5000),
			0);
		assert_int_equal(olen, len);
		assert_memory_equal(out, buf, len);
	}
	assert_int_equal(dg_close(f, conn), 0);
	dg_host_detach(h);
}

/*
 * A client that stops reading must not stop its server's answers to
 * others (no head-of-line blocking). One server flow, a client B that
 * makes N calls and never reads, a client G that makes one call after
 * them: the server answers in order, B's ring fills, and B's next answer
 * waits at the head of the server's TX ring. Past the engine's hold bound
 * it is dropped and B owed DG_ST_DROPPED, B's other answers are dropped
 * at once, and G's answer arrives while B still has not read. Proven by
 * the answers and the engine's counters, with the time bound only there
 * to fail the test (without the bound G waits for B for ever). Then B
 * reads: every call of B answered exactly once (echoed or DROPPED, as
 * many DROPPED as the engine counted), a call B made while it owed was
 * held in its own ring, and B works again.
 */
static void test_slow_reader(void **state)
{
	enum { N = 160, SB = 64 };
	struct dg_nic_opts no = {.hold_us = 20000};
	struct dg_nic *nic;
	pthread_t thr;
	struct dg_host *srv, *bad, *good;
	struct dg_flow *sf, *bf, *gf;
	struct dg_completion c[64];
	struct dg_nic_stats s0, s1, s2;
	uint8_t seen[N + 1] = {0};
	uint32_t first = 0, id, gid, extra, i, ok = 0, dropped = 0, done = 0;
	uint8_t req[8];
	time_t until;
	int bc, gc, rc, k, served;

	(void)state;
	assert_int_equal(dg_nic_create(&no, &nic), 0);
	assert_int_equal(pthread_create(&thr, NULL, engine_main, nic), 0);
	srv = attach_to(nic, 1, 256);
	bad = attach_to(nic, 1, SB);
	good = attach_to(nic, 1, 64);
	sf = dg_host_flow(srv, 0);
	bf = dg_host_flow(bad, 0);
	gf = dg_host_flow(good, 0);
	assert_int_equal(dg_serve(sf, &echo_svc, 5000), 0);
	bc = dg_connect(bf, NULL, 0, "echo", 5000);
	gc = dg_connect(gf, NULL, 0, "echo", 5000);
	assert_true(bc >= 0 && gc >= 0);
	assert_int_equal(dg_nic_stats(nic, &s0, 5000), 0);

	/* B's N calls, all taken into the server's RX ring (it has room). */
	until = time(NULL) + 30;
	for (i = 0; i < N && time(NULL) <= until;) {
		memcpy(req, &i, 4);
		memcpy(req + 4, "bbbb", 4);
		rc = dg_call(bf, bc, FN_ECHO, req, 8, &id);
		if (rc == -EAGAIN)
			continue; /* B's own TX ring: the engine takes it */
		assert_int_equal(rc, 0);
		if (!i)
			first = id;
		assert_int_equal(id, first + i);
		i++;
	}
	assert_int_equal(i, N);
	assert_int_equal(dg_call(gf, gc, FN_ECHO, "good", 4, &gid), 0);

	/* Serve; only G reads. G's answer comes past B's N. */
	until = time(NULL) + 30;
	for (k = 0, served = 0; k == 0 && time(NULL) <= until;) {
		served += dg_serve_poll(sf, 64);
		k = dg_poll(gf, c, 64);
	}
	assert_int_equal(k, 1);
	assert_int_equal(served, N + 1);
	assert_int_equal(c[0].rpc_id, gid);
	assert_int_equal(c[0].status, 0);
	assert_int_equal(c[0].len, 4);
	assert_memory_equal(c[0].data, "good", 4);
	assert_int_equal(dg_nic_stats(nic, &s1, 5000), 0);
	/*
	 * B's ring took SB - 1 answers (one slot still holds the reply to
	 * its OPEN, which B has not released); the rest were dropped.
	 */
	assert_int_equal(s1.dropped - s0.dropped, N - (SB - 1));
	printf("# G answered; %llu of B's %u answers dropped\n",
	       (unsigned long long)(s1.dropped - s0.dropped), N);

	/* B, owing answers, calls again: held in B's own TX ring. */
	assert_int_equal(dg_call(bf, bc, FN_ECHO, "more", 4, &extra), 0);
	(void)dg_nic_stats(nic, &s2, 5000);
	assert_int_equal(dg_nic_stats(nic, &s2, 5000), 0);
	assert_int_equal(dg_serve_poll(sf, 64), 0);
	assert_int_equal(s2.rpcs_tx, s1.rpcs_tx);

	/* B reads: each call answered once; then its held call goes on. */
	until = time(NULL) + 30;
	while (done < N + 1 && time(NULL) <= until) {
		dg_serve_poll(sf, 64);
		k = dg_poll(bf, c, 64);
		assert_true(k >= 0);
		for (i = 0; i < (uint32_t)k; i++) {
			uint32_t n = c[i].rpc_id - first, v;

			assert_true(n <= N);
			assert_int_equal(seen[n], 0);
			seen[n] = 1;
			done++;
			if (n == N) { /* the call made while B owed */
				assert_int_equal(c[i].rpc_id, extra);
				assert_int_equal(c[i].status, 0);
				assert_memory_equal(c[i].data, "more", 4);
				continue;
			}
			if (c[i].status == DG_ST_DROPPED) {
				assert_int_equal(c[i].len, 0);
				dropped++;
				continue;
			}
			assert_int_equal(c[i].status, 0);
			assert_int_equal(c[i].len, 8);
			memcpy(&v, c[i].data, 4);
			assert_int_equal(v, n);
			ok++;
		}
	}
	printf("# B: %u echoed, %u dropped\n", ok, dropped);
	assert_int_equal(done, N + 1);
	assert_int_equal(ok + dropped, N);
	assert_int_equal(ok, SB - 1);
	assert_int_equal(dg_nic_stats(nic, &s2, 5000), 0);
	assert_int_equal(dropped, s2.dropped - s0.dropped);
	assert_int_equal(s2.dropped, s1.dropped);
	dg_host_detach(good);
	dg_host_detach(bad);
	dg_host_detach(srv);
	dg_nic_stop(nic);
	pthread_join(thr, NULL);
	dg_nic_destroy(nic);
}

/* Records the region of the host that attaches through it. */
static uint8_t *spied_region;

static int spy_attach(void *nic, void *region, uint64_t size)
{
	spied_region = region;
	return dg_nic_attach_cb(nic, region, size);
}

/*
 * The stale-continuation rule on RX rings (dagger/ring.h): a continuation
 * frame's payload must not pass for a first frame one lap later, so the
 * slot gets the stamp of a first frame one lap back, which no consumer
 * accepts. Checksummed rings: the host stores it into the continuation
 * frames it releases; shared-memory rings: the engine stores it into the
 * slot after each message it delivers, before the message is visible.
 * Read in the host's own RX ring (its region, seen through the attach),
 * around two-frame answers, past a wrap of the ring.
 */
static void rx_stale_rule(int csum)
{
	struct dg_host_opts o = {.attach_local = spy_attach,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = E.nic,
				 .nflows = 1,
				 .slots = 64,
				 .csum = csum};
	uint8_t req[DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD];
	struct dg_region_layout lay;
	const uint8_t *ring;
	struct dg_completion c[4];
	struct dg_host *h = NULL;
	struct dg_flow *f;
	uint32_t id, i, checked = 0, word0, pos;
	int conn, k;

	assert_int_equal(dg_host_attach(&o, &h), 0);
	assert_non_null(spied_region);
	assert_int_equal(dg_region_layout(1, 64, &lay), 0);
	ring = spied_region + dg_rx_ring_off(&lay, 0);
	f = dg_host_flow(h, 0);
	conn = dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000);
	assert_true(conn >= 0);
	memset(req, 0x5a, sizeof(req));
	for (i = 0; i < 70; i++) { /* past a wrap of the 64-slot ring */
		const uint8_t *first, *cont;

		assert_int_equal(dg_call(f, conn, 9, req, sizeof(req), &id), 0);
		do
			k = dg_poll(f, c, 4);
		while (k == 0);
		assert_int_equal(k, 1);
		assert_int_equal(c[0].rpc_id, id);
		assert_int_equal(c[0].len, sizeof(req));
		assert_memory_equal(c[0].data, req, sizeof(req));
		/* In place (not at the ring's end): the frames are in view. */
		first = (const uint8_t *)c[0].data - DG_FRAME_HDR;
		if (first < ring || first >= ring + 63 * DG_SLOT_SIZE) {
			assert_int_equal(dg_poll(f, c, 4), 0);
			continue;
		}
		cont = first + DG_SLOT_SIZE;
		pos = ((const struct dg_frame *)first)->stamp - 1;
		memcpy(&word0, cont, 4);
		assert_int_equal(word0, 0x5a5a5a5au); /* payload, for now */
		if (!csum) {
			/* The engine's guard, in the slot after the answer. */
			memcpy(&word0, ring + ((pos + 2) & 63) * DG_SLOT_SIZE,
			       4);
			assert_int_equal(word0, dg_stamp(pos + 2 - 64));
			assert_int_equal(dg_poll(f, c, 4), 0);
		} else {
			assert_int_equal(dg_poll(f, c, 4), 0); /* releases it */
			/* The host's scrub of the continuation frame. */
			memcpy(&word0, cont, 4);
			assert_int_equal(word0, dg_stamp(pos + 1 - 64));
		}
		checked++;
	}
	assert_true(checked >= 60);
	assert_int_equal(dg_close(f, conn), 0);
	dg_host_detach(h);
}

static void test_rx_scrub(void **state)
{
	(void)state;
	rx_stale_rule(1);
}

static void test_rx_guard(void **state)
{
	(void)state;
	rx_stale_rule(0);
}

static int fill8(void *arg, struct dg_writer *w)
{
	dg_writer_put(w, arg, 8);
	return 0;
}

/* The engine's sleep flag in a host's region header (dagger/frame.h). */
static bool engine_asleep(const uint8_t *region)
{
	const struct dg_region_hdr *hdr = (const void *)region;

	return __atomic_load_n(&hdr->engine_sleep, __ATOMIC_ACQUIRE) != 0;
}

/*
 * A call built in place (dg_call_fill, and dg_call_fill_key, which
 * dg_call_key and the IDL's keyed calls use) wakes an engine that
 * sleeps, as dg_call does: a
 * call made while the region's sleep flag is up kicks it (the flow's
 * kicks counter). The flag may drop on its own between the look and the
 * call (the engine's own timeout), so each kind gets five tries, each
 * after the flag was seen up; one kick is enough, none is the bug.
 */
static void test_fill_kicks(void **state)
{
	struct dg_host_opts o = {.attach_local = spy_attach,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = E.nic,
				 .nflows = 1,
				 .slots = 64};
	struct dg_flow_stats s0, s1;
	struct dg_completion c;
	struct dg_host *h = NULL;
	struct dg_flow *f;
	uint8_t req[8] = "filled!";
	uint32_t id, keyed, tries;
	uint64_t until;
	int conn;

	(void)state;
	assert_int_equal(dg_host_attach(&o, &h), 0);
	assert_non_null(spied_region);
	f = dg_host_flow(h, 0);
	conn = dg_connect(f, NULL, 0, DG_LOOPBACK_SERVICE, 5000);
	assert_true(conn >= 0);
	for (keyed = 0; keyed < 2; keyed++) {
		bool kicked = false;

		for (tries = 0; tries < 5 && !kicked; tries++) {
			until = (uint64_t)time(NULL) + 10;
			while (!engine_asleep(spied_region) &&
			       (uint64_t)time(NULL) < until)
				sched_yield();
			assert_true(engine_asleep(spied_region));
			dg_flow_stats(f, &s0);
			assert_int_equal(keyed ? dg_call_fill_key(f, conn, 9,
								  77, 8, fill8,
								  req, &id)
					       : dg_call_fill(f, conn, 9, 8,
							      fill8, req, &id),
					 0);
			dg_flow_stats(f, &s1);
			kicked = s1.kicks > s0.kicks;
			assert_int_equal(dg_wait(f, id, &c, 5000), 0);
			assert_int_equal(c.status, 0);
			assert_int_equal(c.len, 8);
			assert_memory_equal(c.data, req, 8);
		}
		printf("# dg_call_fill%s: a kick in %u tries\n",
		       keyed ? "_key" : "", tries);
		assert_true(kicked);
	}
	assert_int_equal(dg_close(f, conn), 0);
	dg_host_detach(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_mixed),
		cmocka_unit_test(test_echo_mixed_csum),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_abandoned_calls),
		cmocka_unit_test(test_tenant_quota),
		cmocka_unit_test(test_env_settings),
		cmocka_unit_test(test_wrong_thread),
		cmocka_unit_test(test_ring_full),
		cmocka_unit_test(test_malformed_frames),
		cmocka_unit_test(test_register_race),
		cmocka_unit_test(test_trace),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_stale_continuation),
		cmocka_unit_test(test_stale_continuation_rx),
		cmocka_unit_test(test_slow_reader),
		cmocka_unit_test(test_rx_scrub),
		cmocka_unit_test(test_rx_guard),
		cmocka_unit_test(test_fill_kicks),
	};

	/* DG_TEST_FILTER=test_ring_full runs one case (a glob). */
	if (getenv("DG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DG_TEST_FILTER"));
	return cmocka_run_group_tests_name("e2e_local", tests, group_setup,
					   group_teardown);
}
