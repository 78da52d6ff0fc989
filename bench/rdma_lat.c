// SPDX-License-Identifier: MIT
/*
 * dagger-rdma-lat: latency of the RDMA primitives the offloaded RPC path is
 * built from, between two RDMA devices (by default the two rxe devices that
 * deploy/rxe-run provides). A responder thread listens on ADDR0, the
 * requester binds to ADDR1:
 *
 *   write: requester WRITEs a ping into the responder's buffer, the
 *          responder polls the buffer's last byte and WRITEs a pong back.
 *          Round trip = two WRITEs + two polls.
 *   read:  one READ of SIZE bytes, round trip from post to completion.
 *   send:  SEND/RECV ping-pong, round trip = two SENDs.
 *
 * As in perftest, the polled word is the last one of the buffer; each
 * figure is one round trip in microseconds (perftest's *_lat tools print
 * half of it for write and send).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dg_rdma.h"

#define MAX_SIZE (1u << 20)

struct opts {
	const char *addr0, *addr1;
	uint32_t size;
	uint32_t iters;
	uint32_t warmup;
	bool json;
	bool bind; /* -B: bind the requester to ADDR1 */
	const char *modes;
};

struct side {
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	uint8_t *buf; /* [0, MAX_SIZE): receive area, [MAX_SIZE, 2x): send */
	struct dg_rdma_remote peer;
};

struct responder {
	struct dg_rdma_listener *l;
	struct side s;
	const struct opts *o;
	char mode;
	int rc;
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "dagger-rdma-lat: %s: %s\n", what, strerror(-rc));
	return 1;
}

/* Busy-polls one completion within 10 s of work; the error otherwise. */
static int wait_wc(struct dg_rdma_ep *ep, struct dg_rdma_wc *wc)
{
	uint64_t until = now_ns() + 10000000000ull;
	int n;

	while ((n = dg_rdma_poll(ep, wc, 1)) == 0)
		if (now_ns() > until)
			return -ETIMEDOUT;
	if (n < 0)
		return n;
	return wc->status;
}

/* Polls the last byte of a buffer until it equals v (written remotely). */
static int wait_byte(volatile uint8_t *p, uint8_t v)
{
	uint64_t until = 0;
	uint32_t spins = 0;

	while (*p != v) {
		if (++spins == 1u << 20) {
			spins = 0;
			if (!until)
				until = now_ns() + 10000000000ull;
			else if (now_ns() > until)
				return -ETIMEDOUT;
		}
	}
	/* The byte was the last stored; no later loads of the buffer. */
	return 0;
}

static int post_recvs(struct side *s, uint32_t n, uint32_t size)
{
	uint32_t i;
	int rc = 0;

	for (i = 0; i < n && !rc; i++)
		rc = dg_rdma_post_recv(s->ep, s->mr, s->buf, size, i);
	return rc;
}

static int setup_side(struct side *s, const struct dg_rdma_ep_attr *a)
{
	(void)a;
	s->buf = aligned_alloc(4096, 2 * MAX_SIZE);
	if (!s->buf)
		return -ENOMEM;
	memset(s->buf, 0, 2 * MAX_SIZE);
	return dg_rdma_reg(s->ep, s->buf, 2 * MAX_SIZE,
			   DG_RDMA_ACC_LOCAL_WRITE | DG_RDMA_ACC_REMOTE_READ |
				   DG_RDMA_ACC_REMOTE_WRITE,
			   &s->mr);
}

static const struct dg_rdma_ep_attr ep_attr = {
	.sq_depth = 64, .rq_depth = 64, .rd_depth = 16};

static void *responder_main(void *arg)
{
	struct responder *r = arg;
	struct side *s = &r->s;
	struct dg_rdma_remote mine;
	size_t plen = sizeof(s->peer);
	uint32_t total = r->o->iters + r->o->warmup, i;
	uint32_t sz = r->o->size;
	struct dg_rdma_wc wc;
	int rc;

	rc = dg_rdma_listener_next(r->l, &ep_attr, 20000, &s->peer, &plen,
				   &s->ep);
	if (!rc)
		rc = setup_side(s, &ep_attr);
	if (!rc && r->mode == 's')
		rc = post_recvs(s, 32, sz);
	if (!rc) {
		mine = dg_rdma_mr_remote(s->mr);
		rc = dg_rdma_ep_accept(s->ep, &mine, sizeof(mine), 20000);
	}
	for (i = 0; !rc && i < total && r->mode != 'r'; i++) {
		uint8_t seq = (uint8_t)(i + 1);

		if (r->mode == 'w') {
			rc = wait_byte(s->buf + sz - 1, seq);
			if (rc)
				break;
			s->buf[MAX_SIZE + sz - 1] = seq;
			rc = dg_rdma_post_write(s->ep, s->mr, s->buf + MAX_SIZE,
						sz, s->peer.addr, s->peer.rkey,
						i, 0);
		} else {
			rc = wait_wc(s->ep, &wc);
			if (!rc)
				rc = dg_rdma_post_recv(s->ep, s->mr, s->buf, sz,
						       i);
			if (!rc)
				rc = dg_rdma_post_send(s->ep, s->mr,
						       s->buf + MAX_SIZE, sz, i,
						       0);
		}
		/* Reap our own internal signals so the queue never fills. */
		while (!rc && dg_rdma_sq_free(s->ep) < 8)
			rc = dg_rdma_poll(s->ep, &wc, 1) < 0 ? -EIO : 0;
	}
	r->rc = rc;
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, uint32_t n, double p)
{
	uint32_t i = (uint32_t)(p / 100.0 * (n - 1) + 0.5);

	return v[i] / 1000.0;
}

static int run_mode(const struct opts *o, char mode)
{
	static const char *const names[] = {
		['w'] = "write", ['r'] = "read", ['s'] = "send"};
	struct responder r = {.o = o, .mode = mode};
	struct side c = {0};
	struct dg_rdma_remote mine;
	size_t rlen = sizeof(c.peer);
	uint32_t total = o->iters + o->warmup, i;
	uint32_t sz = o->size;
	struct dg_rdma_wc wc;
	uint64_t *lat, t0;
	pthread_t thr;
	int rc;

	lat = calloc(o->iters, sizeof(*lat));
	if (!lat)
		return die("memory", -ENOMEM);
	rc = dg_rdma_listen(o->addr0, 0, 4, &r.l);
	if (rc)
		return die("listen", rc);
	pthread_create(&thr, NULL, responder_main, &r);
	rc = dg_rdma_ep_create(o->bind ? o->addr1 : NULL, o->addr0,
			       dg_rdma_listener_port(r.l), &ep_attr, 5000,
			       &c.ep);
	if (!rc)
		rc = setup_side(&c, &ep_attr);
	if (!rc && mode == 's')
		rc = post_recvs(&c, 32, sz);
	if (!rc) {
		mine = dg_rdma_mr_remote(c.mr);
		rc = dg_rdma_ep_connect(c.ep, &mine, sizeof(mine), &c.peer,
					&rlen, 10000);
	}
	for (i = 0; !rc && i < total; i++) {
		uint8_t seq = (uint8_t)(i + 1);

		t0 = now_ns();
		if (mode == 'w') {
			c.buf[MAX_SIZE + sz - 1] = seq;
			rc = dg_rdma_post_write(c.ep, c.mr, c.buf + MAX_SIZE,
						sz, c.peer.addr, c.peer.rkey, i,
						0);
			if (!rc)
				rc = wait_byte(c.buf + sz - 1, seq);
		} else if (mode == 'r') {
			rc = dg_rdma_post_read(c.ep, c.mr, c.buf, sz,
					       c.peer.addr, c.peer.rkey, i,
					       DG_RDMA_SIGNALED);
			if (!rc)
				rc = wait_wc(c.ep, &wc);
		} else {
			rc = dg_rdma_post_send(c.ep, c.mr, c.buf + MAX_SIZE, sz,
					       i, 0);
			if (!rc)
				rc = wait_wc(c.ep, &wc);
			if (!rc)
				rc = dg_rdma_post_recv(c.ep, c.mr, c.buf, sz,
						       i);
		}
		if (i >= o->warmup)
			lat[i - o->warmup] = now_ns() - t0;
		while (!rc && dg_rdma_sq_free(c.ep) < 8)
			rc = dg_rdma_poll(c.ep, &wc, 1) < 0 ? -EIO : 0;
	}
	pthread_join(thr, NULL);
	if (!rc)
		rc = r.rc;
	if (!rc) {
		qsort(lat, o->iters, sizeof(*lat), cmp_u64);
		if (o->json)
			printf("{\"bench\":\"rdma-lat\",\"op\":\"%s\","
			       "\"size\":%u,\"iters\":%u,\"p50_us\":%.2f,"
			       "\"p99_us\":%.2f,\"p999_us\":%.2f,"
			       "\"min_us\":%.2f,\"max_us\":%.2f}\n",
			       names[(int)mode], sz, o->iters,
			       pct(lat, o->iters, 50), pct(lat, o->iters, 99),
			       pct(lat, o->iters, 99.9), lat[0] / 1000.0,
			       lat[o->iters - 1] / 1000.0);
		else
			printf("%-6s %7u %7u %9.2f %9.2f %9.2f %9.2f %9.2f\n",
			       names[(int)mode], sz, o->iters, lat[0] / 1000.0,
			       pct(lat, o->iters, 50), pct(lat, o->iters, 99),
			       pct(lat, o->iters, 99.9),
			       lat[o->iters - 1] / 1000.0);
	}
	dg_rdma_dereg(c.mr);
	dg_rdma_ep_destroy(c.ep);
	dg_rdma_dereg(r.s.mr);
	dg_rdma_ep_destroy(r.s.ep);
	dg_rdma_listener_destroy(r.l);
	free(c.buf);
	free(r.s.buf);
	free(lat);
	if (rc)
		return die(names[(int)mode], rc);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: dagger-rdma-lat [options] [ADDR0 ADDR1]\n"
		   "Round-trip latency of RDMA WRITE ping-pong, READ and SEND\n"
		   "ping-pong between two RDMA devices (responder on ADDR0,\n"
		   "requester bound to ADDR1; default $DG_RXE_ADDR0/1).\n"
		   "  -s SIZE   message size in bytes (default 64, max 1 MiB)\n"
		   "  -n N      measured iterations (default 1000)\n"
		   "  -w N      warm-up iterations (default 100)\n"
		   "  -m MODES  any of w,r,s (default wrs)\n"
		   "  -j        one JSON line per mode instead of the table\n");
}

int main(int argc, char **argv)
{
	struct opts o = {
		.size = 64, .iters = 1000, .warmup = 100, .modes = "wrs"};
	const char *m;
	int c, rc = 0;

	while ((c = getopt(argc, argv, "s:n:w:m:jBh")) != -1) {
		switch (c) {
		case 's':
			o.size = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'n':
			o.iters = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'w':
			o.warmup = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'm':
			o.modes = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 'B':
			o.bind = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind == 2) {
		o.addr0 = argv[optind];
		o.addr1 = argv[optind + 1];
	} else {
		o.addr0 = getenv("DG_RXE_ADDR0");
		o.addr1 = getenv("DG_RXE_ADDR1");
	}
	if (!o.addr0 || !o.addr1 || !o.size || o.size > MAX_SIZE || !o.iters) {
		usage(stderr);
		return 2;
	}
	if (!o.json)
		printf("# round trip in microseconds, %s <- %s\n"
		       "%-6s %7s %7s %9s %9s %9s %9s %9s\n",
		       o.addr0, o.addr1, "op", "bytes", "iters", "min", "p50",
		       "p99", "p99.9", "max");
	for (m = o.modes; *m && !rc; m++) {
		if (*m != 'w' && *m != 'r' && *m != 's') {
			usage(stderr);
			return 2;
		}
		rc = run_mode(&o, *m);
	}
	return rc;
}
