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
		return lcg(s) % DG_MAX_MSG;
	return DG_MAX_MSG;
}

struct client_arg {
	struct dg_host *h;
	uint32_t flow;
	uint32_t n;
	uint32_t ok, bad, busy;
};

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 31u + (i >> 7));
}

/* Pipelined client: up to 8 calls in flight, every response checked. */
static void *client_main(void *arg)
{
	struct client_arg *a = arg;
	struct dg_flow *f = dg_host_flow(a->h, a->flow);
	static __thread uint8_t buf[DG_MAX_MSG], want[DG_MAX_MSG];
	uint32_t sizes[1024], seeds[1024];
	uint32_t sent = 0, done = 0, s = 12345u + a->flow;
	struct dg_completion c[8];
	uint64_t spins = 0;
	int conn = dg_connect(f, NULL, 0, "echo", 5000);

	if (conn < 0)
		return NULL;
	while (done < a->n && spins++ < 4000000000ull) {
		int k, i;

		if (sent < a->n && sent - done < 8) {
			uint32_t id, len = pick_size(&s);

			fill(buf, len, sent);
			if (dg_call(f, conn, FN_ECHO, buf, len, &id) == 0) {
				sizes[id % 1024] = len;
				seeds[id % 1024] = sent;
				sent++;
			}
		}
		k = dg_poll(f, c, 8);
		for (i = 0; i < k; i++) {
			uint32_t len = sizes[c[i].rpc_id % 1024];

			fill(want, len, seeds[c[i].rpc_id % 1024]);
			if (c[i].status == DG_ST_BUSY) {
				/* Server ring full: back-pressure, resend. */
				uint32_t id;

				a->busy++;
				fill(buf, len, seeds[c[i].rpc_id % 1024]);
				while (dg_call(f, conn, FN_ECHO, buf, len,
					       &id) == -EAGAIN)
					;
				sizes[id % 1024] = len;
				seeds[id % 1024] = seeds[c[i].rpc_id % 1024];
				continue;
			}
			if (c[i].status == 0 && c[i].len == len &&
			    !memcmp(c[i].data, want, len))
				a->ok++;
			else
				a->bad++;
			done++;
		}
	}
	dg_close(f, conn);
	return NULL;
}

/* 2 client threads x 2 server threads, 5,000 mixed-size RPCs each. */
static void test_echo_mixed(void **state)
{
	struct dg_host *srv = attach(2, 8192), *cli = attach(2, 2048);
	struct client_arg a[2] = {{.h = cli, .flow = 0, .n = 5000},
				  {.h = cli, .flow = 1, .n = 5000}};
	struct dg_server *s;
	pthread_t t[2];
	int i;

	(void)state;
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 2, &s), 0);
	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, client_main, &a[i]);
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].bad, 0);
		assert_int_equal(a[i].ok, 5000);
		printf("# client %d: %u ok, %u resent after BUSY\n", i, a[i].ok,
		       a[i].busy);
	}
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
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
	/* Too big for the protocol, and too big for this 256-slot ring. */
	assert_int_equal(dg_call(f, conn, FN_ECHO, big, sizeof(big), &id),
			 -EMSGSIZE);
	assert_int_equal(dg_call(f, conn, FN_ECHO, big, 300 * 56, &id),
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

/*
 * Full rings: a server flow that does not poll fills up; requests beyond
 * its ring come back BUSY; a client that does not poll sees -EAGAIN. After
 * draining, calls succeed again. Nothing is lost: every call completes.
 */
static void test_ring_full(void **state)
{
	struct dg_host *srv = attach(1, 64), *cli = attach(1, 64);
	struct dg_flow *sf = dg_host_flow(srv, 0), *f = dg_host_flow(cli, 0);
	struct dg_completion c[64];
	uint32_t calls = 0, done = 0, busy = 0, ok = 0, id, i;
	uint64_t spins = 0;
	int conn, rc = 0, k;

	(void)state;
	assert_int_equal(dg_serve(sf, &echo_svc, 5000), 0);
	conn = dg_connect(f, NULL, 0, "echo", 5000);
	assert_true(conn >= 0);
	/*
	 * Call without polling until the TX ring pushes back and keeps
	 * pushing back for 200 ms: by then the engine has filled the
	 * server's RX ring, answered BUSY into ours until it was full, and
	 * stopped consuming our TX ring.
	 */
	while (spins++ < 2000000000ull) {
		rc = dg_call(f, conn, FN_ECHO, "abc", 3, &id);
		if (rc == -EAGAIN) {
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			do {
				rc = dg_call(f, conn, FN_ECHO, "abc", 3, &id);
				clock_gettime(CLOCK_MONOTONIC, &t1);
			} while (rc == -EAGAIN &&
				 (t1.tv_sec - t0.tv_sec) * 1000000000L +
						 (t1.tv_nsec - t0.tv_nsec) <
					 200000000L);
			if (rc == -EAGAIN)
				break;
		}
		assert_int_equal(rc, 0);
		calls++;
	}
	assert_int_equal(rc, -EAGAIN);
	printf("# -EAGAIN after %u calls\n", calls);
	/* Drain: BUSY answers come back; then serve the rest. */
	for (spins = 0; done < calls && spins < 2000000000ull; spins++) {
		dg_serve_poll(sf, 64);
		k = dg_poll(f, c, 64);
		for (i = 0; i < (uint32_t)k; i++) {
			if (c[i].status == DG_ST_BUSY)
				busy++;
			else if (c[i].status == 0 && c[i].len == 3)
				ok++;
			done++;
		}
	}
	assert_int_equal(done, calls);
	assert_int_equal(ok + busy, calls);
	assert_true(busy > 0);
	printf("# %u ok, %u busy\n", ok, busy);
	/* And calls succeed again. */
	assert_int_equal(dg_call(f, conn, FN_ECHO, "abc", 3, &id), 0);
	for (spins = 0, k = 0; k == 0 && spins < 2000000000ull; spins++) {
		dg_serve_poll(sf, 64);
		k = dg_poll(f, c, 1);
	}
	assert_int_equal(k, 1);
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

static void test_malformed_frames(void **state)
{
	struct raw r = {0};
	struct dg_region_hdr *h;
	struct dg_frame f = {0};
	const struct dg_frame *got;

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

	/* len over the largest message */
	f = (struct dg_frame){.rpc_id = 1,
			      .cnt = (uint16_t)dg_frames_for(DG_MAX_MSG),
			      .len = DG_MAX_MSG + 1,
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

	/* Only the control reply and the NO_CONN answer come back. */
	got = raw_get(&r);
	assert_non_null(got);
	assert_int_equal(got->rpc_id, 7);
	assert_int_equal(got->status, DG_ST_BAD_FRAME);
	got = raw_get(&r);
	assert_non_null(got);
	assert_int_equal(got->rpc_id, 8);
	assert_int_equal(got->status, DG_ST_NO_CONN);
	assert_true(got->flags & DG_FF_RESP);
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

static void test_loopback(void **state)
{
	struct dg_host *h = attach(2, 4096);
	struct dg_flow *f = dg_host_flow(h, 0);
	static uint8_t buf[DG_MAX_MSG], out[DG_MAX_MSG];
	static const struct dg_service_def lo_svc = {
		.name = DG_LOOPBACK_SERVICE,
		.handlers = handlers,
		.nhandlers = 2};
	uint32_t sizes[] = {0, 1, 40, 41, 4096, DG_MAX_MSG}, i, s = 7;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_mixed),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_env_settings),
		cmocka_unit_test(test_wrong_thread),
		cmocka_unit_test(test_ring_full),
		cmocka_unit_test(test_malformed_frames),
		cmocka_unit_test(test_register_race),
		cmocka_unit_test(test_trace),
		cmocka_unit_test(test_loopback),
	};

	/* DG_TEST_FILTER=test_ring_full runs one case (a glob). */
	if (getenv("DG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DG_TEST_FILTER"));
	return cmocka_run_group_tests_name("e2e_local", tests, group_setup,
					   group_teardown);
}
