// SPDX-License-Identifier: MIT
/*
 * Large messages over real RDMA devices (docs/ARCHITECTURE.md, "Large
 * messages"): payloads outside the rings, moved by the engine with one
 * READ into its staging pool and one WRITE out of it, and between engines
 * by the receiving engine's READ of the sender's send area.
 *
 *  - one engine, each interface mode: every size across the threshold
 *    (threshold - 1, threshold, threshold + 1), 64 KiB, 1 MiB and the
 *    maximum (8 MiB), each echo compared byte for byte; one byte over the
 *    maximum is -EMSGSIZE;
 *  - back-pressure: payload areas that hold one message at a time, many
 *    calls in flight: BUSY while the server's area is full (sent again),
 *    every call answered once and intact;
 *  - a server tenant that goes away holding large requests: each caller
 *    answered once, UNREACHABLE (BUSY if refused while it was full);
 *  - two engines: the same sizes through the peer link; then the server's
 *    engine dies while large calls are in flight: each answered
 *    UNREACHABLE;
 *  - after each: the engines hold no payload (their transfers and staging
 *    bytes back to 0) and the caller's payload area is released.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
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
#include "dg_large.h"
#include "engine.h"
#include "rxe_env.h"

enum { FN_ECHO = 1 };

struct engine {
	struct dg_nic *nic;
	pthread_t thr;
	uint16_t port;
	const char *addr;
};

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static void engine_start(struct engine *e, int dev, uint32_t id)
{
	struct dg_nic_opts o = {.listen_addr = dg_rxe_addr(dev),
				.engine_id = id};

	assert_int_equal(dg_nic_create(&o, &e->nic), 0);
	e->port = dg_nic_port(e->nic);
	e->addr = dg_rxe_addr(dev);
	assert_int_equal(pthread_create(&e->thr, NULL, engine_main, e->nic), 0);
}

static void engine_stop(struct engine *e)
{
	dg_nic_stop(e->nic);
	pthread_join(e->thr, NULL);
	dg_nic_destroy(e->nic);
	e->nic = NULL;
}

static struct dg_nic_stats nic_stats(const struct engine *e)
{
	struct dg_nic_stats s;

	assert_int_equal(dg_nic_stats(e->nic, &s, 20000), 0);
	return s;
}

static struct dg_host *attach(const struct engine *e, int mode,
			      uint64_t payload, uint32_t slots)
{
	struct dg_host_opts o = {.engine_addr = e->addr,
				 .engine_port = e->port,
				 .src_addr = dg_rxe_src(),
				 .nflows = 1,
				 .slots = slots,
				 .mode = mode,
				 .payload = payload,
				 .timeout_ms = 30000};
	struct dg_host *h = NULL;
	int rc = dg_host_attach(&o, &h);

	/* The first resolution after boot can take its whole timeout. */
	if (rc == -ETIMEDOUT)
		rc = dg_host_attach(&o, &h);
	if (rc)
		fail_msg("attach to %s:%u: %s", e->addr, e->port,
			 strerror(-rc));
	return h;
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
static const struct dg_service_def svc = {
	.name = "big", .handlers = handlers, .nhandlers = 1};

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static int connect_wait(struct dg_flow *f, const struct engine *peer)
{
	uint64_t until = now_ms() + 30000;
	int c;

	do {
		c = dg_connect(f, peer ? peer->addr : NULL,
			       peer ? peer->port : 0, "big", 30000);
	} while (c == -ENOENT && now_ms() < until);
	return c;
}

/* Every engine given holds no payload, and f's area is released. */
static void assert_nothing_held(struct engine *const *e, int ne,
				struct dg_flow *f)
{
	uint64_t until = now_ms() + 30000;
	struct dg_completion c;
	struct dg_flow_stats fs;
	bool held;
	int i;

	do {
		held = false;
		for (i = 0; i < ne; i++) {
			struct dg_nic_stats s = nic_stats(e[i]);

			held |= s.xfers || s.stage_used;
		}
		dg_flow_stats(f, &fs);
		held |= fs.pay_pending != 0;
		if (held)
			(void)dg_poll(f, &c, 1);
	} while (held && now_ms() < until);
	for (i = 0; i < ne; i++) {
		struct dg_nic_stats s = nic_stats(e[i]);

		assert_int_equal(s.xfers, 0);
		assert_int_equal(s.stage_used, 0);
	}
	dg_flow_stats(f, &fs);
	assert_int_equal(fs.pay_pending, 0);
}

static const uint32_t sizes[] = {DG_LARGE_DEFAULT - 1,
				 DG_LARGE_DEFAULT,
				 DG_LARGE_DEFAULT + 1,
				 65536,
				 1u << 20,
				 DG_MAX_MSG};

/* The sizes, each echoed and checked, through conn of f. */
static void echo_sizes(struct dg_flow *f, int conn, uint8_t *buf, uint8_t *out)
{
	uint32_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t olen = DG_MAX_MSG;

		dg_large_fill(buf, sizes[i], i + 1);
		assert_int_equal(dg_call_sync(f, conn, FN_ECHO, buf, sizes[i],
					      out, &olen, 60000),
				 0);
		assert_int_equal(olen, sizes[i]);
		assert_int_equal(dg_large_check(out, sizes[i], i + 1),
				 sizes[i]);
	}
}

static void test_sizes_each_mode(void **state)
{
	static const int modes[] = {DG_MODE_POLL, DG_MODE_DOORBELL,
				    DG_MODE_PUSH};
	uint8_t *buf = malloc(DG_MAX_MSG + 1), *out = malloc(DG_MAX_MSG);
	struct engine e, *ep = &e;
	uint32_t m, id;

	(void)state;
	engine_start(&e, 0, 1);
	for (m = 0; m < 3; m++) {
		struct dg_host *sh = attach(&e, modes[m], DG_MAX_MSG, 256);
		struct dg_host *ch = attach(&e, modes[m], DG_MAX_MSG, 256);
		struct dg_flow *f = dg_host_flow(ch, 0);
		struct dg_flow_stats fs;
		struct dg_server *s;
		int conn;

		assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
		conn = connect_wait(f, NULL);
		assert_true(conn >= 0);
		echo_sizes(f, conn, buf, out);
		dg_flow_stats(f, &fs);
		/* Outside the ring: the sizes over the threshold. */
		assert_int_equal(fs.pay_sent, 4);
		assert_int_equal(fs.pay_recv, 4);
		assert_int_equal(
			dg_call(f, conn, FN_ECHO, buf, DG_MAX_MSG + 1, &id),
			-EMSGSIZE);
		dg_close(f, conn);
		dg_server_stop(s);
		assert_nothing_held(&ep, 1, f);
		dg_host_detach(ch);
		dg_host_detach(sh);
	}
	engine_stop(&e);
	free(buf);
	free(out);
}

/*
 * Areas of 64 KiB, 40 KiB messages, 8 in flight: -EAGAIN at the caller,
 * BUSY from the engine while the server's area is full (sent again);
 * every message answered once and intact in the end.
 */
static void test_backpressure(void **state)
{
	struct engine e, *ep = &e;
	struct dg_host *sh, *ch;
	struct dg_large_run r;
	struct dg_server *s;
	struct dg_flow *f;
	int conn;

	(void)state;
	engine_start(&e, 0, 1);
	sh = attach(&e, DG_MODE_DOORBELL, 65536, 256);
	ch = attach(&e, DG_MODE_DOORBELL, 65536, 256);
	f = dg_host_flow(ch, 0);
	assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
	conn = connect_wait(f, NULL);
	assert_true(conn >= 0);
	r = dg_large_pressure(f, conn, FN_ECHO, 200, 40000, 8, 120);
	printf("# back-pressure: %u calls, %u -EAGAIN, %u BUSY (sent again)\n",
	       r.done, r.eagain, r.busy);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.done, 200);
	assert_true(r.eagain > 0);
	dg_close(f, conn);
	dg_server_stop(s);
	assert_nothing_held(&ep, 1, f);
	dg_host_detach(ch);
	dg_host_detach(sh);
	engine_stop(&e);
}

/*
 * Calls until n answers came, each once: UNREACHABLE (what a caller
 * holding large calls gets when the server goes away), or BUSY (refused
 * while the server's area was full); at least min_unreach UNREACHABLE.
 */
static void expect_unreachable(struct dg_flow *f, const uint32_t *ids,
			       uint32_t n, uint32_t min_unreach)
{
	bool answered[16] = {false};
	uint64_t until = now_ms() + 60000;
	struct dg_completion c;
	uint32_t got = 0, unreach = 0, i;

	while (got < n && now_ms() < until) {
		int k = dg_poll(f, &c, 1);

		assert_true(k >= 0);
		if (!k)
			continue;
		i = c.rpc_id - ids[0];
		assert_true(i < n);
		assert_false(answered[i]);
		answered[i] = true;
		if (c.status == DG_ST_UNREACHABLE)
			unreach++;
		else
			assert_int_equal(c.status, DG_ST_BUSY);
		got++;
	}
	assert_int_equal(got, n);
	assert_true(unreach >= min_unreach);
}

/* A server tenant that never serves, then detaches holding large calls. */
static void test_server_gone(void **state)
{
	enum { N = 6, LEN = 30000 };
	uint8_t *buf = malloc(LEN);
	struct engine e, *ep = &e;
	struct dg_host *sh, *ch;
	struct dg_flow *f;
	uint64_t rx0, until;
	uint32_t ids[N], i;
	int conn;

	(void)state;
	engine_start(&e, 0, 1);
	sh = attach(&e, DG_MODE_DOORBELL, 65536, 256);
	ch = attach(&e, DG_MODE_DOORBELL, 1u << 20, 256);
	f = dg_host_flow(ch, 0);
	assert_int_equal(dg_serve(dg_host_flow(sh, 0), &svc, 20000), 0);
	conn = connect_wait(f, NULL);
	assert_true(conn >= 0);
	rx0 = nic_stats(&e).pay_rx;
	for (i = 0; i < N; i++) {
		dg_large_fill(buf, LEN, i);
		assert_int_equal(dg_call(f, conn, FN_ECHO, buf, LEN, &ids[i]),
				 0);
	}
	/* Two fit the server's area; the engine holds the others. */
	until = now_ms() + 30000;
	while (nic_stats(&e).pay_rx - rx0 < 2 && now_ms() < until)
		;
	assert_int_equal(nic_stats(&e).pay_rx - rx0, 2);
	dg_host_detach(sh);
	expect_unreachable(f, ids, N, 2);
	dg_close(f, conn);
	assert_nothing_held(&ep, 1, f);
	dg_host_detach(ch);
	engine_stop(&e);
	free(buf);
}

/* Through a peer link: the sizes, then the server's engine dies. */
static void test_two_engines(void **state)
{
	enum { N = 8, LEN = 1u << 20 };
	uint8_t *buf = malloc(DG_MAX_MSG), *out = malloc(DG_MAX_MSG);
	struct engine a, b, *ep = &a;
	struct dg_host *sh, *ch;
	struct dg_server *s;
	struct dg_flow *f;
	uint32_t ids[N], i;
	int conn;

	(void)state;
	engine_start(&a, 1, 1);
	engine_start(&b, 0, 2);
	sh = attach(&b, DG_MODE_DOORBELL, DG_MAX_MSG, 256);
	ch = attach(&a, DG_MODE_DOORBELL, DG_MAX_MSG, 256);
	f = dg_host_flow(ch, 0);
	assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
	conn = connect_wait(f, &b);
	assert_true(conn >= 0);
	echo_sizes(f, conn, buf, out);
	{
		struct engine *both[2] = {&a, &b};

		assert_nothing_held(both, 2, f);
	}
	/* The server's engine dies with 1 MiB calls on their way. */
	for (i = 0; i < N; i++) {
		dg_large_fill(buf, LEN, i);
		while (dg_call(f, conn, FN_ECHO, buf, LEN, &ids[i]) == -EAGAIN)
			;
	}
	dg_server_stop(s);
	engine_stop(&b);
	/*
	 * Each call: answered before the engine went (OK, intact), or
	 * UNREACHABLE; every one once.
	 */
	{
		bool answered[N] = {false};
		uint64_t until = now_ms() + 60000;
		uint32_t got = 0, unreach = 0;
		struct dg_completion c;

		while (got < N && now_ms() < until) {
			int k = dg_poll(f, &c, 1);

			assert_true(k >= 0);
			if (!k)
				continue;
			i = c.rpc_id - ids[0];
			assert_true(i < N);
			assert_false(answered[i]);
			answered[i] = true;
			if (c.status == DG_ST_UNREACHABLE) {
				unreach++;
			} else {
				assert_int_equal(c.status, 0);
				assert_int_equal(dg_large_check(c.data, LEN, i),
						 LEN);
			}
			got++;
		}
		printf("# engine B gone: %u answered, %u UNREACHABLE\n", got,
		       unreach);
		assert_int_equal(got, N);
		assert_true(unreach > 0);
	}
	dg_close(f, conn);
	assert_nothing_held(&ep, 1, f);
	dg_host_detach(ch);
	dg_host_detach(sh);
	engine_stop(&a);
	free(buf);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes_each_mode),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_server_gone),
		cmocka_unit_test(test_two_engines),
	};

	dg_rxe_require();
	return cmocka_run_group_tests_name("large_rdma", tests, NULL, NULL);
}
