// SPDX-License-Identifier: MIT
/*
 * peer_link: the engine-to-engine frame transport (nic/peer.c) over the two
 * rxe devices that deploy/rxe-run sets up. Side B accepts on DG_RXE_ADDR0
 * (in a thread, per link), side A connects bound to DG_RXE_ADDR1. One
 * thread then drives both sides' poll loops alternately.
 *
 * Every frame carries a per-direction sequence number in rpc_id and bytes
 * derived from (direction, sequence) everywhere else, so the receiver checks
 * exactly-once, in-order delivery and intact content for every frame.
 *
 * All waits are polling loops bounded by a deadline; nothing sleeps.
 */
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

#include "peer.h"
#include "rxe_env.h"

#define STREAM_FRAMES 200000u
#define TIMEOUT_MS    20000
/*
 * Connecting: dg_peer_connect applies CONNECT_MS to address resolution,
 * route resolution and the connection each, so the accepting thread waits
 * longer than all three together. (Under deploy/rxe-vm the first address
 * resolution after boot has been seen to take its whole timeout.)
 */
#define CONNECT_MS    10000
#define ACCEPT_MS     (4 * CONNECT_MS)

/* ---- helpers ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t deadline_ms(uint64_t ms)
{
	return now_ns() + ms * 1000000ull;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The frame number seq of stream dir: random bytes, seq in rpc_id. */
static void make_frame(uint32_t dir, uint32_t seq, struct dg_frame *f)
{
	uint64_t st = ((uint64_t)dir << 32 | seq) * 0x2545f4914f6cdd1dull;
	uint64_t w[8];
	int i;

	for (i = 0; i < 8; i++)
		w[i] = splitmix64(&st);
	memcpy(f, w, sizeof(*f));
	f->rpc_id = seq;
}

/* One direction of traffic: what was sent, what arrived, what was wrong. */
struct stream {
	uint32_t dir;
	uint32_t total; /* frames to send */
	uint32_t sent;	/* accepted by dg_peer_put */
	uint32_t got;	/* delivered, == next expected sequence number */
	uint32_t bad;	/* out of order, duplicated or corrupted */
	uint32_t first_bad;
};

static void rx_cb(void *arg, const struct dg_frame *f)
{
	struct stream *s = arg;
	struct dg_frame want;

	make_frame(s->dir, s->got, &want);
	if (memcmp(f, &want, sizeof(want)) != 0) {
		if (!s->bad)
			s->first_bad = s->got;
		s->bad++;
	}
	s->got++;
}

/* Frames nobody should receive. */
static void no_cb(void *arg, const struct dg_frame *f)
{
	(void)f;
	(*(uint32_t *)arg)++;
}

/* Puts up to max frames of s; stops at -EAGAIN. */
static void tx_some(struct dg_peer *p, struct stream *s, uint32_t max)
{
	while (max-- && s->sent < s->total) {
		struct dg_frame f;
		int rc;

		make_frame(s->dir, s->sent, &f);
		rc = dg_peer_put(p, &f);
		if (rc == -EAGAIN)
			return;
		assert_int_equal(rc, 0);
		s->sent++;
	}
}

/* One poll-loop iteration of an engine: receive, send, flush. */
static void engine_step(struct dg_peer *p, struct stream *rx, struct stream *tx,
			uint32_t tx_max)
{
	int rc = dg_peer_poll(p, rx_cb, rx, 0);

	assert_true(rc >= 0);
	if (tx)
		tx_some(p, tx, tx_max);
	rc = dg_peer_flush(p);
	assert_true(rc == 0 || rc == -EAGAIN);
}

static int stream_done(const struct stream *s)
{
	return s->got >= s->total;
}

/* ---- links ------------------------------------------------------------ */

struct acceptor {
	struct dg_rdma_listener *l;
	struct dg_peer_opts opts;
	struct dg_peer *peer;
	int rc;
};

static void *accept_main(void *arg)
{
	struct acceptor *a = arg;
	struct dg_rdma_ep_attr attr;
	struct dg_rdma_ep *ep;
	char pd[DG_RDMA_CONNECT_PDATA_MAX];
	size_t plen = sizeof(pd);

	dg_peer_ep_attr(&a->opts, &attr);
	a->rc = dg_rdma_listener_next(a->l, &attr, ACCEPT_MS, pd, &plen, &ep);
	if (a->rc)
		return NULL;
	/* An engine's listener dispatches on the private data like this. */
	if (!dg_peer_is_hello(pd, plen)) {
		a->rc = dg_peer_accept(ep, pd, plen, &a->opts, CONNECT_MS,
				       &a->peer);
		if (!a->rc)
			a->rc = -EINVAL; /* must have been refused */
		else
			a->rc = a->rc == -EPROTO ? 1 : a->rc;
		return NULL;
	}
	a->rc = dg_peer_accept(ep, pd, plen, &a->opts, CONNECT_MS, &a->peer);
	return NULL;
}

static struct dg_rdma_listener *listener;

/* A connects to B; both sides are left connected. */
static void make_pair(const struct dg_peer_opts *oa,
		      const struct dg_peer_opts *ob, struct dg_peer **a,
		      struct dg_peer **b)
{
	struct acceptor acc = {.l = listener, .opts = *ob};
	pthread_t thr;
	int rc;

	assert_int_equal(pthread_create(&thr, NULL, accept_main, &acc), 0);
	rc = dg_peer_connect(dg_rxe_addr(1), dg_rxe_addr(0),
			     dg_rdma_listener_port(listener), oa, CONNECT_MS,
			     a);
	pthread_join(thr, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(acc.rc, 0);
	*b = acc.peer;
	assert_int_equal(dg_peer_remote_engine(*a), ob->engine_id);
	assert_int_equal(dg_peer_remote_engine(*b), oa->engine_id);
}

static int group_setup(void **state)
{
	(void)state;
	assert_int_equal(dg_rdma_listen(dg_rxe_addr(0), 0, 4, &listener), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dg_rdma_listener_destroy(listener);
	return 0;
}

static void print_stats(const char *name, const struct dg_peer *p)
{
	struct dg_peer_stats s;

	dg_peer_stats(p, &s);
	printf("# %s: msgs tx %llu rx %llu, frames tx %llu rx %llu, "
	       "credit stalls %llu, credit-only msgs %llu\n",
	       name, (unsigned long long)s.msgs_tx,
	       (unsigned long long)s.msgs_rx, (unsigned long long)s.frames_tx,
	       (unsigned long long)s.frames_rx,
	       (unsigned long long)s.credit_stalls,
	       (unsigned long long)s.credit_msgs);
}

/* Pumps both sides until both streams are delivered or the deadline. */
static void pump(struct dg_peer *a, struct dg_peer *b, struct stream *ab,
		 struct stream *ba, uint64_t until)
{
	while ((!stream_done(ab) || !stream_done(ba)) && now_ns() < until) {
		engine_step(a, ba, ab, 512);
		engine_step(b, ab, ba, 512);
	}
}

static void check_stream(const struct stream *s)
{
	if (s->bad)
		fail_msg("dir %u: %u bad frames, first at %u", s->dir, s->bad,
			 s->first_bad);
	assert_int_equal(s->sent, s->total);
	assert_int_equal(s->got, s->total);
}

/* ---- cases -------------------------------------------------------------- */

static void run_stream(uint32_t ab_frames, uint32_t ba_frames, const char *name)
{
	struct dg_peer_opts oa = {.engine_id = 1}, ob = {.engine_id = 2};
	struct stream ab = {.dir = 1, .total = ab_frames};
	struct stream ba = {.dir = 2, .total = ba_frames};
	struct dg_peer *a, *b;
	uint64_t t0, t1;

	make_pair(&oa, &ob, &a, &b);
	t0 = now_ns();
	pump(a, b, &ab, &ba, t0 + 120ull * 1000000000ull);
	t1 = now_ns();
	check_stream(&ab);
	check_stream(&ba);
	printf("# %s: %u + %u frames in %.3f s, %.0f frames/s\n", name,
	       ab_frames, ba_frames, (double)(t1 - t0) / 1e9,
	       (double)(ab_frames + ba_frames) * 1e9 / (double)(t1 - t0));
	print_stats("A", a);
	print_stats("B", b);
	assert_int_equal(dg_peer_check(a), 0);
	assert_int_equal(dg_peer_check(b), 0);
	dg_peer_destroy(a);
	dg_peer_destroy(b);
}

/* (1a) One direction, default batches. */
static void test_stream_one_way(void **state)
{
	(void)state;
	run_stream(STREAM_FRAMES, 0, "A->B");
}

/* (1b) Both directions at once. */
static void test_stream_both_ways(void **state)
{
	(void)state;
	run_stream(STREAM_FRAMES, STREAM_FRAMES, "A<->B");
}

/*
 * (2) B does not poll: A's puts are refused with -EAGAIN once its credits
 * are spent, with exactly recv_bufs(B) batches accepted (recv_bufs - 1 sent
 * plus one full batch waiting, the last credit being reserved for credit
 * messages). Nothing is lost: once B polls, everything arrives, in order.
 */
static void test_backpressure(void **state)
{
	struct dg_peer_opts oa = {.batch_frames = 16, .engine_id = 3};
	struct dg_peer_opts ob = {
		.batch_frames = 16, .recv_bufs = 8, .engine_id = 4};
	struct stream ab = {.dir = 3, .total = 100000};
	struct stream none = {.dir = 99};
	const uint32_t cap = 8 * 16;
	struct dg_peer_stats st;
	struct dg_peer *a, *b;
	uint64_t until;
	uint32_t refused = 0;

	(void)state;
	make_pair(&oa, &ob, &a, &b);
	/*
	 * A alone: put, polling its own completions (send buffers come back
	 * without B polling: B's device acknowledges into posted buffers).
	 * No flush: only full batches go, so the count is exact.
	 */
	until = deadline_ms(TIMEOUT_MS);
	while (ab.sent < cap && now_ns() < until) {
		tx_some(a, &ab, 64);
		assert_true(dg_peer_poll(a, rx_cb, &none, 0) >= 0);
	}
	assert_int_equal(ab.sent, cap);
	/* Credits spent: refused however long A polls (1000 tries, 200 ms). */
	until = deadline_ms(200);
	while (refused < 1000 || now_ns() < until) {
		struct dg_frame f;

		make_frame(ab.dir, ab.sent, &f);
		assert_int_equal(dg_peer_put(a, &f), -EAGAIN);
		assert_true(dg_peer_poll(a, rx_cb, &none, 0) >= 0);
		refused++;
	}
	assert_int_equal(ab.got, 0);
	dg_peer_stats(a, &st);
	assert_int_equal(st.msgs_tx, 8 - 1);
	assert_int_equal(st.credit_stalls, 1);
	printf("# back-pressure: %u frames accepted, then -EAGAIN x%u\n",
	       ab.sent, refused);

	/* B polls: the held frames arrive; then the rest of the stream. */
	pump(a, b, &ab, &none, deadline_ms(60000));
	check_stream(&ab);
	assert_int_equal(none.got, 0);
	print_stats("A", a);
	print_stats("B", b);
	dg_peer_stats(b, &st);
	assert_true(st.credit_msgs > 0);
	dg_peer_destroy(a);
	dg_peer_destroy(b);
}

/* Polls B (and A) until B has n frames of s or the deadline passes. */
static void wait_frames(struct dg_peer *a, struct dg_peer *b, struct stream *s,
			uint32_t n, uint64_t until)
{
	uint32_t stray = 0;

	while (s->got < n && now_ns() < until) {
		assert_true(dg_peer_poll(b, rx_cb, s, 0) >= 0);
		assert_true(dg_peer_poll(a, no_cb, &stray, 0) >= 0);
	}
	assert_int_equal(stray, 0);
}

/*
 * (3) batch_frames = 1: every put is a SEND of its own, no flush needed.
 * Default batches: a partial batch moves only on flush; a full one at once.
 * Also: batches shrink to the receiver's buffers, and reserve/commit.
 */
static void test_batches_and_flush(void **state)
{
	struct dg_peer_opts o1 = {.batch_frames = 1, .recv_bufs = 4};
	struct dg_peer_opts oa = {.engine_id = 5};
	struct dg_peer_opts ob = {.batch_frames = 16, .engine_id = 6};
	struct stream s = {.dir = 5, .total = 200};
	struct dg_frame *slots;
	struct dg_peer *a, *b;
	uint32_t stray = 0;
	uint64_t until;
	uint32_t i;

	(void)state;
	/* batch_frames = 1 on both sides. */
	o1.engine_id = 7;
	make_pair(&o1, &o1, &a, &b);
	assert_int_equal(dg_peer_batch_frames(a), 1);
	for (i = 0; i < s.total; i++) {
		struct dg_frame f;
		int rc;

		make_frame(s.dir, i, &f);
		until = deadline_ms(TIMEOUT_MS);
		while ((rc = dg_peer_put(a, &f)) == -EAGAIN &&
		       now_ns() < until) {
			assert_true(dg_peer_poll(a, no_cb, &stray, 0) >= 0);
			assert_true(dg_peer_poll(b, rx_cb, &s, 0) >= 0);
		}
		assert_int_equal(rc, 0);
		s.sent++;
		/* No flush: the frame arrives by itself. */
		wait_frames(a, b, &s, i + 1, deadline_ms(TIMEOUT_MS));
		assert_int_equal(s.got, i + 1);
	}
	check_stream(&s);
	assert_int_equal(stray, 0);
	print_stats("batch=1 A", a);
	dg_peer_destroy(a);
	dg_peer_destroy(b);

	/* A batches 64, B's buffers hold 16: A's SENDs carry 16. */
	make_pair(&oa, &ob, &a, &b);
	assert_int_equal(dg_peer_batch_frames(a), 16);
	assert_int_equal(dg_peer_batch_frames(b), 16);
	memset(&s, 0, sizeof(s));
	s.dir = 6;
	s.total = 10;
	tx_some(a, &s, 10);
	assert_int_equal(s.sent, 10);
	/* Not flushed: nothing may arrive (poll a while to be sure). */
	wait_frames(a, b, &s, 1, deadline_ms(300));
	assert_int_equal(s.got, 0);
	assert_int_equal(dg_peer_flush(a), 0);
	wait_frames(a, b, &s, 10, deadline_ms(TIMEOUT_MS));
	assert_int_equal(s.got, 10);

	/* A full batch (16 frames) leaves without flush. */
	s.total = 26;
	tx_some(a, &s, 16);
	assert_int_equal(s.sent, 26);
	wait_frames(a, b, &s, 26, deadline_ms(TIMEOUT_MS));
	assert_int_equal(s.got, 26);

	/* Zero-copy: reserve 5, write 3, commit 3, flush. */
	assert_int_equal(dg_peer_reserve(a, 17, &slots), -EINVAL);
	assert_int_equal(dg_peer_reserve(a, 5, &slots), 0);
	for (i = 0; i < 3; i++)
		make_frame(s.dir, s.sent + i, &slots[i]);
	assert_int_equal(dg_peer_commit(a, 3), 0);
	s.sent += 3;
	s.total = s.sent;
	assert_int_equal(dg_peer_flush(a), 0);
	wait_frames(a, b, &s, s.total, deadline_ms(TIMEOUT_MS));
	check_stream(&s);
	dg_peer_destroy(a);
	dg_peer_destroy(b);
}

/*
 * (4) B's link is destroyed: A notices within a few seconds, either through
 * dg_peer_check or through dg_peer_poll alone (completions, and the
 * connection check poll makes every DG_PEER_CHECK_EVERY calls). B also
 * goes down in the middle of a stream in the second round.
 */
static void peer_death(int use_check, int streaming)
{
	struct dg_peer_opts oa = {.engine_id = 8}, ob = {.engine_id = 9};
	struct stream ab = {.dir = 8, .total = streaming ? 1000000 : 0};
	struct stream none = {.dir = 98};
	struct dg_frame f;
	struct dg_peer *a, *b;
	uint64_t t0, until;
	int rc = 0;

	make_pair(&oa, &ob, &a, &b);
	assert_int_equal(dg_peer_check(a), 0);
	if (streaming) { /* some traffic in flight when B dies */
		until = deadline_ms(TIMEOUT_MS);
		while (ab.got < 5000 && now_ns() < until) {
			engine_step(a, &none, &ab, 512);
			engine_step(b, &ab, NULL, 0);
		}
		assert_true(ab.got >= 5000);
		tx_some(a, &ab, 512);
	}
	dg_peer_destroy(b);
	t0 = now_ns();
	until = t0 + 5000000000ull;
	make_frame(98, 0, &f);
	while (!rc && now_ns() < until) {
		if (use_check)
			rc = dg_peer_check(a);
		if (!rc)
			rc = dg_peer_poll(a, rx_cb, &none, 0);
		if (!rc && streaming) {
			rc = dg_peer_put(a, &f);
			if (!rc || rc == -EAGAIN)
				rc = dg_peer_flush(a);
			if (rc == -EAGAIN)
				rc = 0;
		}
		if (rc > 0)
			rc = 0;
	}
	printf("# peer death (%s%s) seen after %.3f s: %s\n",
	       use_check ? "check+poll" : "poll only",
	       streaming ? ", streaming" : "", (double)(now_ns() - t0) / 1e9,
	       strerror(-rc));
	assert_true(rc < 0);
	/* Sticky: every call reports the dead link. */
	assert_int_equal(dg_peer_put(a, &f), rc);
	assert_int_equal(dg_peer_flush(a), rc);
	assert_int_equal(dg_peer_poll(a, rx_cb, &none, 0), rc);
	assert_int_equal(dg_peer_check(a), rc);
	assert_int_equal(none.got, 0);
	assert_int_equal(ab.bad, 0);
	dg_peer_destroy(a);
}

static void test_peer_death(void **state)
{
	(void)state;
	peer_death(1, 0);
	peer_death(0, 0);
	peer_death(0, 1);
}

/* Drives p (poll, flush, tick) for ms; returns the first error, or 0. */
static int drive(struct dg_peer *p, struct stream *none, uint64_t ms)
{
	uint64_t until = deadline_ms(ms);
	int rc = 0;

	while (!rc && now_ns() < until) {
		rc = dg_peer_poll(p, rx_cb, none, 0);
		if (rc >= 0)
			rc = dg_peer_flush(p);
		if (rc == -EAGAIN || rc > 0)
			rc = 0;
		if (!rc)
			rc = dg_peer_tick(p, now_ns() / 1000000u);
	}
	return rc;
}

/*
 * (5) Liveness. An idle link whose sides both tick stays up well past its
 * timeout on keepalives alone (carrying no frame); a side that goes silent
 * (B: its process alive, its device still acknowledging A's SENDs, like a
 * hung or stopped engine) is declared dead by A with -ETIMEDOUT, not
 * before the timeout. A side with a longer timeout announces its slower
 * keepalives, and the other side waits for 3 of them.
 */
static void test_keepalive(void **state)
{
	struct dg_peer_opts oa = {.engine_id = 11, .timeout_ms = 600};
	struct dg_peer_opts ob = {.engine_id = 12, .timeout_ms = 600};
	struct stream none = {.dir = 99};
	struct dg_peer_stats sa, sb;
	struct dg_peer *a, *b;
	uint64_t t0, t1, until;
	int rc = 0;

	(void)state;
	make_pair(&oa, &ob, &a, &b);
	until = deadline_ms(2500); /* > 4 timeouts */
	while (!rc && now_ns() < until) {
		rc = drive(a, &none, 5);
		if (!rc)
			rc = drive(b, &none, 5);
	}
	assert_int_equal(rc, 0);
	dg_peer_stats(a, &sa);
	dg_peer_stats(b, &sb);
	printf("# idle 2.5 s: keepalives A %llu B %llu\n",
	       (unsigned long long)sa.keepalives,
	       (unsigned long long)sb.keepalives);
	assert_true(sa.keepalives >= 3 && sb.keepalives >= 3);
	assert_int_equal(sa.frames_rx + sb.frames_rx, 0);
	assert_int_equal(none.got, 0);

	/* B goes silent; A alone is driven. */
	t0 = now_ns();
	rc = drive(a, &none, 10000);
	t1 = now_ns();
	printf("# silent peer declared dead after %.3f s: %s\n",
	       (double)(t1 - t0) / 1e9, strerror(-rc));
	assert_int_equal(rc, -ETIMEDOUT);
	/* 600 ms after B's last keepalive, <= 100 ms before t0. */
	assert_true(t1 - t0 >= 450000000ull);
	assert_int_equal(dg_peer_tick(a, now_ns() / 1000000u), -ETIMEDOUT);
	assert_int_equal(dg_peer_poll(a, rx_cb, &none, 0), -ETIMEDOUT);
	dg_peer_destroy(a);
	dg_peer_destroy(b);

	/* A: 600 ms; B: 6 s, so keepalives every 1 s: A waits 3 s. */
	ob.timeout_ms = 6000;
	make_pair(&oa, &ob, &a, &b);
	until = deadline_ms(4000);
	rc = 0;
	while (!rc && now_ns() < until) {
		rc = drive(a, &none, 5);
		if (!rc)
			rc = drive(b, &none, 5);
	}
	assert_int_equal(rc, 0);
	dg_peer_destroy(a);
	dg_peer_destroy(b);
}

/* A connection request that is not a peer hello is refused. */
static void test_not_a_peer(void **state)
{
	struct dg_peer_opts ob = {.engine_id = 10};
	struct acceptor acc = {.l = listener, .opts = ob};
	struct dg_rdma_ep_attr attr;
	struct dg_rdma_ep *ep = NULL;
	char reply[DG_RDMA_ACCEPT_PDATA_MAX];
	size_t rlen = sizeof(reply);
	pthread_t thr;
	int rc;

	(void)state;
	dg_peer_ep_attr(NULL, &attr);
	assert_int_equal(pthread_create(&thr, NULL, accept_main, &acc), 0);
	rc = dg_rdma_ep_create(dg_rxe_addr(1), dg_rxe_addr(0),
			       dg_rdma_listener_port(listener), &attr,
			       CONNECT_MS, &ep);
	if (!rc)
		rc = dg_rdma_ep_connect(ep, "hello", 5, reply, &rlen,
					CONNECT_MS);
	pthread_join(thr, NULL);
	assert_int_equal(acc.rc, 1); /* dg_peer_accept said -EPROTO */
	assert_int_not_equal(rc, 0);
	printf("# non-peer connect: %s\n", strerror(-rc));
	dg_rdma_ep_destroy(ep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_one_way),
		cmocka_unit_test(test_stream_both_ways),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_batches_and_flush),
		cmocka_unit_test(test_peer_death),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_not_a_peer),
	};

	dg_rxe_require();
	return cmocka_run_group_tests_name("peer_link", tests, group_setup,
					   group_teardown);
}
