// SPDX-License-Identifier: MIT
/*
 * Large messages on the shared-memory backend (docs/ARCHITECTURE.md,
 * "Large messages"): an in-process engine, hosts attached as tenants.
 *
 *  - every size across the threshold and the limits (threshold - 1,
 *    threshold, threshold + 1, the inline limit around 64 KiB, the payload
 *    area's size, one byte over it, DG_MAX_MSG + 1), both ring formats:
 *    each echo compared byte for byte, and the flow counters say which
 *    travelled outside the ring;
 *  - a host without payload areas: inline up to 64 KiB, -EMSGSIZE over,
 *    and a large request to it answered DG_ST_TOO_BIG;
 *  - zero copy: a request built in place (dg_call_buf) and a response
 *    built in place (dg_response_buf) are never copied by the library; a
 *    stale dg_call_buf pointer is refused;
 *  - back-pressure: payload areas that hold one message at a time, many
 *    calls in flight: -EAGAIN at the caller, BUSY from the engine while
 *    the server's area is full (sent again), every call answered once
 *    and intact;
 *  - a server that goes away holding large requests: each caller is
 *    answered once, UNREACHABLE (or BUSY, refused while the server's area
 *    was full), and nothing stays held (the engine's payload transfers,
 *    the caller's payload area).
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

enum { FN_ECHO = 1, FN_INPLACE = 2, FN_SIZED = 3 };

static struct dg_nic *nic;
static pthread_t nic_thr;

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static int echo(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	(void)arg;
	if (req->len > resp->cap)
		return DG_ST_APP_BASE + 1;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

/* The echo, its response built in the payload area in place. */
static int echo_inplace(void *arg, const struct dg_request *req,
			struct dg_response *resp)
{
	int rc;

	(void)arg;
	rc = dg_response_buf(req, resp, req->len);
	if (rc)
		return DG_ST_APP_BASE + 2;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

/* A response of the size the request names, in the pattern of seed 7. */
static int sized(void *arg, const struct dg_request *req,
		 struct dg_response *resp)
{
	uint32_t len;

	(void)arg;
	if (req->len != 4)
		return DG_ST_APP_BASE + 3;
	memcpy(&len, req->data, 4);
	if (len > resp->cap)
		return DG_ST_APP_BASE + 4;
	dg_large_fill(resp->data, len, 7);
	resp->len = len;
	return 0;
}

static const struct dg_handler handlers[] = {
	{FN_ECHO, echo}, {FN_INPLACE, echo_inplace}, {FN_SIZED, sized}};
static const struct dg_service_def svc = {
	.name = "big", .handlers = handlers, .nhandlers = 3};

static struct dg_host *attach(uint64_t payload, int csum, uint32_t slots)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = nic,
				 .nflows = 1,
				 .slots = slots,
				 .csum = csum,
				 .payload = payload};
	struct dg_host *h = NULL;

	assert_int_equal(dg_host_attach(&o, &h), 0);
	return h;
}

static struct dg_nic_stats nic_stats(void)
{
	struct dg_nic_stats s;

	assert_int_equal(dg_nic_stats(nic, &s, 5000), 0);
	return s;
}

static struct dg_flow_stats flow_stats(struct dg_flow *f)
{
	struct dg_flow_stats s;

	dg_flow_stats(f, &s);
	return s;
}

/* Waits for every held payload to be released (bounded: fails after). */
static void assert_nothing_held(struct dg_flow *cf)
{
	time_t until = time(NULL) + 20;
	struct dg_nic_stats s;
	struct dg_completion c;

	for (;;) {
		s = nic_stats();
		if ((!s.xfers && !s.stage_used &&
		     (!cf || !flow_stats(cf).pay_pending)) ||
		    time(NULL) > until)
			break;
		if (cf)
			(void)dg_poll(cf, &c, 1);
	}
	assert_int_equal(s.xfers, 0);
	assert_int_equal(s.stage_used, 0);
	if (cf)
		assert_int_equal(flow_stats(cf).pay_pending, 0);
}

static int group_setup(void **state)
{
	(void)state;
	assert_int_equal(dg_nic_create(NULL, &nic), 0);
	assert_int_equal(pthread_create(&nic_thr, NULL, engine_main, nic), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dg_nic_stop(nic);
	pthread_join(nic_thr, NULL);
	dg_nic_destroy(nic);
	return 0;
}

/* One echo of len bytes (seed s); its status, the answer checked. */
static int echo_once(struct dg_flow *f, int conn, uint16_t fn, uint8_t *buf,
		     uint8_t *out, uint32_t len, uint32_t s)
{
	size_t olen = DG_MAX_MSG;
	int rc;

	dg_large_fill(buf, len, s);
	rc = dg_call_sync(f, conn, fn, buf, len, out, &olen, 5000);
	if (rc) {
		struct dg_nic_stats ns = nic_stats();
		struct dg_flow_stats fs = flow_stats(f);
		printf("DBG rc %d nic pay_tx %lu pay_rx %lu xfers %lu drops "
		       "bad_pay? stalled; flow sent %lu recv %lu pend %lu "
		       "eagain %lu bad %lu\n",
		       rc, ns.pay_tx, ns.pay_rx, ns.xfers, fs.pay_sent,
		       fs.pay_recv, fs.pay_pending, fs.eagain, fs.bad_frames);
		return rc;
	}
	assert_int_equal(olen, len);
	assert_int_equal(dg_large_check(out, len, s), len);
	return 0;
}

/* Every size across the threshold and the limits, one ring format. */
static void sizes(int csum)
{
	const uint32_t area = 1u << 20, t = DG_LARGE_DEFAULT;
	const uint32_t ok[] = {0,      1,	 32,	33,    t - 1,
			       t,      t + 1,	 65535, 65536, 65537,
			       200000, area - 1, area};
	struct dg_host *sh = attach(area, csum, 2048);
	struct dg_host *ch = attach(area, csum, 2048);
	struct dg_flow *f = dg_host_flow(ch, 0);
	uint8_t *buf = malloc(DG_MAX_MSG + 1), *out = malloc(DG_MAX_MSG);
	uint64_t sent0, recv0;
	struct dg_server *s;
	uint32_t i, id;
	int conn;

	assert_non_null(buf);
	assert_non_null(out);
	assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
	conn = dg_connect(f, NULL, 0, "big", 5000);
	assert_true(conn >= 0);
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		sent0 = flow_stats(f).pay_sent;
		recv0 = flow_stats(f).pay_recv;
		assert_int_equal(
			echo_once(f, conn, FN_ECHO, buf, out, ok[i], i + 1), 0);
		/* Outside the ring exactly above the threshold, both ways. */
		assert_int_equal(flow_stats(f).pay_sent - sent0, ok[i] > t);
		assert_int_equal(flow_stats(f).pay_recv - recv0, ok[i] > t);
	}
	/* One byte over the payload area, and over the protocol. */
	assert_int_equal(dg_call(f, conn, FN_ECHO, buf, area + 1, &id),
			 -EMSGSIZE);
	assert_int_equal(dg_call(f, conn, FN_ECHO, buf, DG_MAX_MSG + 1, &id),
			 -EMSGSIZE);
	/* Still fine after. */
	assert_int_equal(echo_once(f, conn, FN_ECHO, buf, out, t + 1, 99), 0);
	dg_close(f, conn);
	dg_server_stop(s);
	assert_nothing_held(f);
	dg_host_detach(ch);
	dg_host_detach(sh);
	free(buf);
	free(out);
}

static void test_sizes(void **state)
{
	(void)state;
	sizes(0);
}

static void test_sizes_csum(void **state)
{
	(void)state;
	sizes(1);
}

/* The maximum: 8 MiB both ways, on areas of 8 MiB. */
static void test_max_size(void **state)
{
	struct dg_host *sh = attach(DG_MAX_MSG, 0, 2048);
	struct dg_host *ch = attach(DG_MAX_MSG, 0, 2048);
	struct dg_flow *f = dg_host_flow(ch, 0);
	uint8_t *buf = malloc(DG_MAX_MSG + 1), *out = malloc(DG_MAX_MSG);
	struct dg_server *s;
	uint32_t id;
	int conn;

	(void)state;
	assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
	conn = dg_connect(f, NULL, 0, "big", 5000);
	assert_true(conn >= 0);
	assert_int_equal(echo_once(f, conn, FN_ECHO, buf, out, DG_MAX_MSG, 5),
			 0);
	assert_int_equal(
		echo_once(f, conn, FN_INPLACE, buf, out, DG_MAX_MSG, 6), 0);
	assert_int_equal(dg_call(f, conn, FN_ECHO, buf, DG_MAX_MSG + 1, &id),
			 -EMSGSIZE);
	dg_close(f, conn);
	dg_server_stop(s);
	assert_nothing_held(f);
	dg_host_detach(ch);
	dg_host_detach(sh);
	free(buf);
	free(out);
}

/* Hosts without payload areas: inline up to 64 KiB, clear errors over. */
static void test_no_payload_area(void **state)
{
	struct dg_host *sh = attach(DG_PAYLOAD_NONE, 0, 2048);
	struct dg_host *bh = attach(1u << 20, 0, 2048);
	struct dg_host *ch = attach(DG_PAYLOAD_NONE, 0, 2048);
	struct dg_flow *f = dg_host_flow(ch, 0), *bf = dg_host_flow(bh, 0);
	uint8_t *buf = malloc(DG_MAX_MSG), *out = malloc(DG_MAX_MSG);
	size_t olen = DG_MAX_MSG;
	struct dg_server *s;
	uint32_t id, len;
	int conn, bconn;

	(void)state;
	assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
	conn = dg_connect(f, NULL, 0, "big", 5000);
	assert_true(conn >= 0);
	assert_int_equal(echo_once(f, conn, FN_ECHO, buf, out, 65536, 3), 0);
	assert_int_equal(flow_stats(f).pay_sent, 0);
	assert_int_equal(dg_call(f, conn, FN_ECHO, buf, 65537, &id), -EMSGSIZE);
	assert_int_equal(dg_call_buf(f, 100, (void **)&out), -EMSGSIZE);
	/* A large request from a host that has areas: TOO_BIG, not lost. */
	bconn = dg_connect(bf, NULL, 0, "big", 5000);
	assert_true(bconn >= 0);
	dg_large_fill(buf, 100000, 4);
	assert_int_equal(dg_call_sync(bf, bconn, FN_ECHO, buf, 100000, out,
				      &olen, 20000),
			 DG_ST_TOO_BIG);
	/* A small request whose large answer cannot reach it: TOO_BIG. */
	len = 100000;
	olen = DG_MAX_MSG;
	assert_int_equal(
		dg_call_sync(f, conn, FN_SIZED, &len, 4, out, &olen, 20000),
		DG_ST_TOO_BIG);
	dg_close(f, conn);
	dg_close(bf, bconn);
	dg_server_stop(s);
	assert_nothing_held(bf);
	dg_host_detach(ch);
	dg_host_detach(bh);
	dg_host_detach(sh);
	free(buf);
	free(out);
}

/* Requests and responses built in place are never copied. */
static void test_zero_copy(void **state)
{
	struct dg_host *sh = attach(1u << 20, 1, 2048);
	struct dg_host *ch = attach(1u << 20, 1, 2048);
	struct dg_flow *f = dg_host_flow(ch, 0), *sf = NULL;
	uint8_t *req, *stale;
	struct dg_completion c;
	struct dg_server *s;
	uint32_t id, i;
	int conn;

	(void)state;
	assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
	sf = dg_host_flow(sh, 0);
	conn = dg_connect(f, NULL, 0, "big", 5000);
	assert_true(conn >= 0);
	for (i = 0; i < 20; i++) {
		uint32_t len = 50000 + i * 1000;

		assert_int_equal(dg_call_buf(f, len, (void **)&req), 0);
		dg_large_fill(req, len, 10 + i);
		assert_int_equal(dg_call(f, conn, FN_INPLACE, req, len, &id),
				 0);
		assert_int_equal(dg_wait(f, id, &c, 20000), 0);
		assert_int_equal(c.status, 0);
		assert_int_equal(c.len, len);
		/* Read in place: valid until the next poll. */
		assert_int_equal(dg_large_check(c.data, len, 10 + i), len);
	}
	assert_int_equal(flow_stats(f).pay_sent, 20);
	assert_int_equal(flow_stats(f).pay_copies, 0);
	assert_int_equal(flow_stats(sf).pay_copies, 0);
	assert_int_equal(flow_stats(sf).pay_sent, 20);
	/* A reservation another large call replaced: refused, not sent. */
	assert_int_equal(dg_call_buf(f, 10000, (void **)&stale), 0);
	dg_large_fill(stale, 10000, 1);
	assert_int_equal(dg_call_buf(f, 20000, (void **)&req), 0);
	dg_large_fill(req, 20000, 2);
	assert_int_equal(dg_call(f, conn, FN_ECHO, req, 20000, &id), 0);
	assert_int_equal(dg_wait(f, id, &c, 20000), 0);
	assert_int_equal(dg_large_check(c.data, 20000, 2), 20000);
	assert_int_equal(dg_call(f, conn, FN_ECHO, stale, 10000, &id), -EINVAL);
	dg_close(f, conn);
	dg_server_stop(s);
	assert_nothing_held(f);
	dg_host_detach(ch);
	dg_host_detach(sh);
}

/*
 * Payload areas of 64 KiB, 40 KiB messages: one at a time fits each area.
 * The caller keeps 8 calls out; its area refuses (-EAGAIN) until the
 * engine took the last one; the server's area holds one request, and the
 * engine answers the others BUSY (as for a full RX ring), which the
 * caller sends again. Every message answered once and intact in the end.
 */
static void test_backpressure(void **state)
{
	struct dg_host *sh = attach(65536, 1, 256);
	struct dg_host *ch = attach(65536, 1, 256);
	struct dg_flow *f = dg_host_flow(ch, 0);
	struct dg_large_run r;
	struct dg_server *s;
	int conn;

	(void)state;
	assert_int_equal(dg_server_start(sh, &svc, 0, 1, &s), 0);
	conn = dg_connect(f, NULL, 0, "big", 5000);
	assert_true(conn >= 0);
	r = dg_large_pressure(f, conn, FN_ECHO, 300, 40000, 8, 60);
	printf("# back-pressure: %u calls, %u -EAGAIN, %u BUSY (sent again)\n",
	       r.done, r.eagain, r.busy);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.done, 300);
	assert_true(r.eagain > 0);
	dg_close(f, conn);
	dg_server_stop(s);
	assert_nothing_held(f);
	dg_host_detach(ch);
	dg_host_detach(sh);
}

/*
 * A server that takes no requests (a flow registered, never polled) and
 * then goes away holding large ones: its RX area full, more held at the
 * engine. Every call is answered UNREACHABLE, and nothing stays held.
 */
static void test_server_gone(void **state)
{
	enum { N = 6, LEN = 30000 };
	struct dg_host *sh = attach(65536, 0, 256);
	struct dg_host *ch = attach(1u << 20, 0, 256);
	struct dg_flow *f = dg_host_flow(ch, 0);
	uint8_t *buf = malloc(LEN);
	uint32_t ids[N], got = 0, unreach = 0, i;
	uint64_t rx0 = nic_stats().pay_rx;
	bool answered[N] = {false};
	time_t until = time(NULL) + 30;
	struct dg_completion c;
	int conn;

	(void)state;
	assert_int_equal(dg_serve(dg_host_flow(sh, 0), &svc, 5000), 0);
	conn = dg_connect(f, NULL, 0, "big", 5000);
	assert_true(conn >= 0);
	for (i = 0; i < N; i++) {
		dg_large_fill(buf, LEN, i);
		assert_int_equal(dg_call(f, conn, FN_ECHO, buf, LEN, &ids[i]),
				 0);
	}
	/* Two fit the server's area; the engine holds the rest. */
	while (nic_stats().pay_rx - rx0 < 2 && time(NULL) < until)
		;
	assert_int_equal(nic_stats().pay_rx - rx0, 2);
	dg_host_detach(sh);
	while (got < N && time(NULL) < until) {
		int k = dg_poll(f, &c, 1);

		assert_true(k >= 0);
		if (!k)
			continue;
		i = c.rpc_id - ids[0];
		assert_true(i < N);
		assert_false(answered[i]);
		answered[i] = true;
		/* Refused while the server's area was full, or UNREACHABLE. */
		if (c.status == DG_ST_UNREACHABLE)
			unreach++;
		else
			assert_int_equal(c.status, DG_ST_BUSY);
		got++;
	}
	/* At least the two the server held when it went. */
	assert_true(unreach >= 2);
	assert_int_equal(got, N);
	dg_close(f, conn);
	assert_nothing_held(f);
	dg_host_detach(ch);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_sizes_csum),
		cmocka_unit_test(test_max_size),
		cmocka_unit_test(test_no_payload_area),
		cmocka_unit_test(test_zero_copy),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_server_gone),
	};

	return cmocka_run_group_tests_name("large", tests, group_setup,
					   group_teardown);
}
