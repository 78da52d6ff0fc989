// SPDX-License-Identifier: MIT
/*
 * dagger-hostrpc: the baseline dagger is read against. An RPC that the
 * host CPU drives itself, FaSST/eRPC style, with no NIC engine: each client
 * thread owns one reliable-connected QP to the server; a request is one
 * SEND (8-byte header + payload) that lands in a pre-posted RECV buffer of
 * a server thread, whose handler echoes it back with one SEND. Both sides
 * post their work requests, ring the doorbell and poll their completion
 * queue themselves: the work the offload moves off the host.
 *
 *   dagger-hostrpc server --listen ADDR [--port P]
 *   dagger-hostrpc client --connect ADDR:PORT [--src ADDR] [options]
 *
 * The client's options, output (table or --json) and --callgrind mode are
 * those of dagger-bench (closed loop --window, open loop --rate, --size,
 * --threads, --duration/--warmup or --requests). Cycles per RPC count the
 * client thread's time in posting, flushing, and the polls that returned
 * completions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "dg_rdma.h"

enum { CALIB_POLLS = 10000, NBUF = 512, MAX_THREADS = 64 };
#define TS_MASK 0xffffu

struct hdr {
	uint32_t rpc_id;
	uint32_t len;
};

struct cfg {
	const char *mode, *listen, *src, *label, *cdf;
	char addr[64];
	uint16_t port;
	bool json, quiet, callgrind, yield;
	uint32_t threads, size, window;
	double rate, duration, warmup;
	uint64_t requests;
};

static struct cfg C = {
	.threads = 1, .size = 64, .window = 1, .duration = 5, .warmup = 1};
static volatile int phase; /* 0 warm-up, 1 measuring, 2 stop */
static volatile sig_atomic_t got_signal;
/* Client threads connected and about to call: the clock starts then. */
static int nready;

static const struct dg_rdma_ep_attr ep_attr = {
	.sq_depth = NBUF, .rq_depth = NBUF, .rd_depth = 1};

/*
 * One side's buffers: NBUF receive slots and NBUF send slots of slot bytes.
 * A send slot is reused NBUF sends later; the send queue holds at most
 * NBUF requests, so by then the SEND that used it has completed.
 */
struct bufs {
	struct dg_rdma_mr *mr;
	uint8_t *mem;
	uint32_t slot;
};

static uint8_t *rbuf(struct bufs *b, uint32_t i)
{
	return b->mem + (size_t)i * b->slot;
}

static uint8_t *sbuf(struct bufs *b, uint32_t i)
{
	return b->mem + (size_t)(NBUF + i % NBUF) * b->slot;
}

static int bufs_init(struct bufs *b, struct dg_rdma_ep *ep, uint32_t size)
{
	uint32_t i;
	int rc;

	b->slot = (uint32_t)((sizeof(struct hdr) + size + 63) & ~63ul);
	b->mem = aligned_alloc(4096,
			       ((size_t)2 * NBUF * b->slot + 4095) & ~4095ul);
	if (!b->mem)
		return -ENOMEM;
	memset(b->mem, 0, (size_t)2 * NBUF * b->slot);
	rc = dg_rdma_reg(ep, b->mem, (size_t)2 * NBUF * b->slot,
			 DG_RDMA_ACC_LOCAL_WRITE, &b->mr);
	for (i = 0; !rc && i < NBUF; i++)
		rc = dg_rdma_post_recv(ep, b->mr, rbuf(b, i), b->slot, i);
	return rc;
}

static void bufs_free(struct bufs *b)
{
	dg_rdma_dereg(b->mr);
	free(b->mem);
}

static void on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
}

/* ---- server ----------------------------------------------------------------
 */

struct srv_conn {
	struct dg_rdma_ep *ep;
	uint32_t size;
	uint64_t served, busy_cyc, empty;
	pthread_t thr;
};

static void *server_conn(void *arg)
{
	struct srv_conn *s = arg;
	struct dg_rdma_wc wc[32];
	/* Received, not answered yet: waits while the send queue is full. */
	uint32_t backlog[NBUF], bh = 0, bt = 0, idle = 0, i;
	uint32_t lens[NBUF];
	struct bufs b = {0};
	uint64_t nsend = 0;
	int k = 0, rc;

	rc = bufs_init(&b, s->ep, s->size);
	if (!rc)
		rc = dg_rdma_ep_accept(s->ep, NULL, 0, 20000);
	if (rc) {
		fprintf(stderr, "dagger-hostrpc: accept: %s\n", strerror(-rc));
		if (b.mem)
			bufs_free(&b);
		return NULL;
	}
	while (!got_signal && __atomic_load_n(&phase, __ATOMIC_RELAXED) < 2) {
		uint64_t t0 = bench_cycles();
		uint32_t sent = 0;

		if (C.callgrind)
			CALLGRIND_TOGGLE_COLLECT;
		k = dg_rdma_poll(s->ep, wc, 32);
		for (i = 0; k > 0 && i < (uint32_t)k; i++) {
			if (wc[i].status) {
				k = wc[i].status;
				break;
			}
			if (wc[i].opcode != DG_RDMA_OP_RECV)
				continue;
			lens[bt % NBUF] = wc[i].byte_len;
			backlog[bt++ % NBUF] = (uint32_t)wc[i].wr_id;
		}
		/* The handler (echo) for each request, while the SQ has room.
		 */
		while (k >= 0 && bh != bt && dg_rdma_sq_free(s->ep) > 0) {
			uint32_t slot = backlog[bh % NBUF],
				 len = lens[bh % NBUF];
			uint8_t *q = rbuf(&b, slot),
				*out = sbuf(&b, (uint32_t)nsend);

			memcpy(out, q, len);
			rc = dg_rdma_post_recv(s->ep, b.mr, q, b.slot, slot);
			if (!rc)
				rc = dg_rdma_post_send(s->ep, b.mr, out, len, 0,
						       DG_RDMA_MORE);
			if (rc) {
				k = rc;
				break;
			}
			bh++;
			nsend++;
			sent++;
		}
		if (sent)
			dg_rdma_flush(s->ep);
		if (C.callgrind)
			CALLGRIND_TOGGLE_COLLECT;
		if (k < 0)
			break; /* the client went away */
		if (sent) {
			s->busy_cyc += bench_cycles() - t0;
			s->served += sent;
			idle = 0;
		} else {
			s->empty++;
			/* Now and then: is the client still there? */
			if ((++idle & 4095) == 0 && dg_rdma_ep_check(s->ep))
				break;
			if (C.callgrind)
				usleep(200); /* few empty polls to subtract */
			else if (C.yield || (idle & 255) == 0)
				sched_yield();
		}
	}
	if (C.callgrind) {
		CALLGRIND_DUMP_STATS_AT("rpcs");
		for (i = 0; i < CALIB_POLLS; i++) {
			CALLGRIND_TOGGLE_COLLECT;
			dg_rdma_poll(s->ep, wc, 32);
			CALLGRIND_TOGGLE_COLLECT;
		}
		CALLGRIND_DUMP_STATS_AT("empty");
	}
	bufs_free(&b);
	return NULL;
}

static int run_server(void)
{
	static struct srv_conn conns[MAX_THREADS];
	struct dg_rdma_listener *l;
	uint64_t served = 0, cyc = 0, empty = 0;
	uint32_t n = 0, i;
	int rc = dg_rdma_listen(C.listen, C.port, 64, &l);

	if (rc) {
		fprintf(stderr, "dagger-hostrpc: listen on %s:%u: %s\n",
			C.listen, C.port, strerror(-rc));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "dagger-hostrpc: listening on %s:%u\n", C.listen,
		dg_rdma_listener_port(l));
	while (!got_signal) {
		uint32_t size = 0;
		size_t plen = sizeof(size);
		struct dg_rdma_ep *ep;

		rc = dg_rdma_listener_next(l, &ep_attr, 200, &size, &plen, &ep);
		if (rc == -ETIMEDOUT)
			continue;
		if (rc)
			break;
		if (n == MAX_THREADS || plen < sizeof(size) || !size ||
		    size > (1u << 20)) {
			dg_rdma_ep_destroy(ep);
			continue;
		}
		conns[n] = (struct srv_conn){.ep = ep, .size = size};
		if (pthread_create(&conns[n].thr, NULL, server_conn,
				   &conns[n])) {
			dg_rdma_ep_destroy(ep);
			continue;
		}
		n++;
	}
	phase = 2;
	for (i = 0; i < n; i++) {
		pthread_join(conns[i].thr, NULL);
		served += conns[i].served;
		cyc += conns[i].busy_cyc;
		empty += conns[i].empty;
		dg_rdma_ep_destroy(conns[i].ep);
	}
	dg_rdma_listener_destroy(l);
	printf("{\"bench\":\"hostrpc-server\",\"label\":\"%s\",\"threads\":%u,"
	       "\"served\":%llu,\"cyc_rpc\":%.0f,\"polls_empty\":%llu,"
	       "\"calib_polls\":%u}\n",
	       C.label ? C.label : "", n, (unsigned long long)served,
	       served ? (double)cyc / (double)served : 0,
	       (unsigned long long)empty, CALIB_POLLS);
	return 0;
}

/* ---- client ----------------------------------------------------------------
 */

struct cli_thread {
	struct bench_live live; /* first: the clock reads it */
	uint32_t idx;
	struct bench_hist hist;
	uint64_t rpcs, errors, busy_cyc, empty;
	pthread_t thr;
};

static void *client_main(void *arg)
{
	struct cli_thread *t = arg;
	uint64_t *ts = calloc(TS_MASK + 1, sizeof(*ts));
	uint64_t seed = 0x9e3779b97f4a7c15ull * (t->idx + 1), next, sent = 0;
	double mean = C.rate > 0 ? 1e9 * C.threads / C.rate : 0;
	struct dg_rdma_ep *ep = NULL;
	struct dg_rdma_wc wc[32];
	uint32_t out = 0, id = 0, i;
	struct bufs b = {0};
	int k, rc;

	uint8_t *payload = malloc(C.size ? C.size : 1);

	if (!ts || !payload) {
		t->live.rc = -ENOMEM;
		free(ts);
		free(payload);
		return NULL;
	}
	memset(payload, 0x5a, C.size);
	rc = dg_rdma_ep_create(C.src, C.addr, C.port, &ep_attr, 20000, &ep);
	if (!rc)
		rc = bufs_init(&b, ep, C.size);
	if (!rc)
		rc = dg_rdma_ep_connect(ep, &C.size, sizeof(C.size), NULL, NULL,
					20000);
	if (rc) {
		t->live.rc = rc;
		goto out;
	}
	__atomic_fetch_add(&nready, 1, __ATOMIC_RELEASE);
	next = bench_now_ns();
	for (;;) {
		int ph = __atomic_load_n(&phase, __ATOMIC_ACQUIRE);
		uint64_t now, t0;
		uint32_t posted = 0;

		if (ph == 2 || (C.requests && sent >= C.requests && !out))
			break;
		t0 = bench_cycles();
		if (C.callgrind && ph == 1)
			CALLGRIND_TOGGLE_COLLECT;
		while (out < C.window && out < NBUF / 2 &&
		       (!C.requests || sent < C.requests)) {
			uint8_t *m = sbuf(&b, (uint32_t)sent);
			struct hdr h = {.rpc_id = id, .len = C.size};
			uint64_t when = bench_now_ns();

			if (mean > 0) {
				if (next > when)
					break;
				when = next;
			}
			/* Build the message, as dg_call copies the caller's. */
			memcpy(m, &h, sizeof(h));
			memcpy(m + sizeof(h), payload, C.size);
			rc = dg_rdma_post_send(ep, b.mr, m,
					       (uint32_t)sizeof(h) + C.size, 0,
					       DG_RDMA_MORE);
			if (rc == -EAGAIN)
				break;
			if (rc) {
				t->live.rc = rc;
				goto out;
			}
			ts[id & TS_MASK] = when;
			if (mean > 0)
				next += bench_exp_ns(&seed, mean);
			id++;
			out++;
			sent++;
			posted++;
		}
		if (posted)
			dg_rdma_flush(ep);
		k = dg_rdma_poll(ep, wc, 32);
		for (i = 0; k > 0 && i < (uint32_t)k; i++) {
			const struct hdr *r;

			if (wc[i].opcode != DG_RDMA_OP_RECV)
				continue;
			if (wc[i].status) {
				k = wc[i].status;
				break;
			}
			r = (const struct hdr *)rbuf(&b, (uint32_t)wc[i].wr_id);
			now = bench_now_ns();
			out--;
			if (ph == 1) {
				hist_add(&t->hist,
					 now - ts[r->rpc_id & TS_MASK]);
				t->rpcs++;
				if (wc[i].byte_len != sizeof(*r) + C.size ||
				    r->len != C.size)
					t->errors++;
			}
			rc = dg_rdma_post_recv(ep, b.mr, (void *)r, b.slot,
					       wc[i].wr_id);
			if (rc) {
				k = rc;
				break;
			}
		}
		if (C.callgrind && ph == 1)
			CALLGRIND_TOGGLE_COLLECT;
		if (k < 0) {
			t->live.rc = k;
			break;
		}
		if (ph == 1) {
			if (k > 0 || posted)
				t->busy_cyc += bench_cycles() - t0;
			else
				t->empty++;
		}
		if (k > 0)
			__atomic_store_n(&t->live.done,
					 t->live.done + (uint64_t)k,
					 __ATOMIC_RELAXED);
		else if (C.callgrind && ph == 1)
			usleep(200); /* few empty polls to subtract */
		else if (C.yield)
			sched_yield();
	}
	if (C.callgrind) {
		CALLGRIND_DUMP_STATS_AT("rpcs");
		for (i = 0; i < CALIB_POLLS; i++) {
			CALLGRIND_TOGGLE_COLLECT;
			dg_rdma_poll(ep, wc, 32);
			CALLGRIND_TOGGLE_COLLECT;
		}
		CALLGRIND_DUMP_STATS_AT("empty");
	}
out:
	/* The memory region before its endpoint (which owns the PD). */
	if (b.mem)
		bufs_free(&b);
	dg_rdma_ep_destroy(ep);
	free(ts);
	free(payload);
	return NULL;
}

static int run_client(void)
{
	struct cli_thread *t = calloc(C.threads, sizeof(*t));
	struct bench_hist *all = malloc(sizeof(*all));
	struct bench_result r = {.bench = "hostrpc",
				 .mode = C.rate > 0 ? "open" : "closed",
				 .label = C.label,
				 .size = C.size,
				 .threads = C.threads,
				 .conns = 1,
				 .window = C.window,
				 .rate = C.rate};
	uint64_t t0, t_end = 0, busy = 0;
	uint32_t i;
	int rc = 0;

	if (!t || !all)
		return 1;
	signal(SIGINT, on_signal);
	hist_init(all);
	phase = C.warmup > 0 && !C.requests ? 0 : 1;
	for (i = 0; i < C.threads; i++) {
		t[i].idx = i;
		hist_init(&t[i].hist);
		pthread_create(&t[i].thr, NULL, client_main, &t[i]);
	}
	bench_clock("dagger-hostrpc", &phase, &nready, &got_signal, t,
		    sizeof(*t), C.threads, !C.requests, C.warmup, C.duration,
		    C.quiet, &t0, &t_end);
	for (i = 0; i < C.threads; i++) {
		pthread_join(t[i].thr, NULL);
		if (t[i].live.rc) {
			fprintf(stderr, "dagger-hostrpc: client %u: %s\n", i,
				strerror(-t[i].live.rc));
			rc = 1;
		}
		hist_merge(all, &t[i].hist);
		r.rpcs += t[i].rpcs;
		r.errors += t[i].errors;
		r.polls_empty += t[i].empty;
		busy += t[i].busy_cyc;
	}
	if (C.requests)
		t_end = bench_now_ns();
	r.seconds = (double)(t_end - t0) / 1e9;
	r.h = all;
	r.cyc_rpc = r.rpcs ? (double)busy / (double)r.rpcs : 0;
	if (!r.rpcs && !rc)
		fprintf(stderr,
			"%s: no call completed in the measured "
			"interval\n",
			r.bench);
	bench_print(&r, C.json, true);
	if (C.cdf) {
		FILE *f = fopen(C.cdf, "w");

		if (f) {
			hist_cdf(all, f);
			fclose(f);
		}
	}
	free(t);
	free(all);
	return rc || !r.rpcs;
}

/* ---- options ----------------------------------------------------------------
 */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dagger-hostrpc server --listen ADDR [--port P]\n"
		"       dagger-hostrpc client --connect ADDR:PORT [--src ADDR] "
		"[--threads N]\n"
		"              [--size B] [--window N | --rate R] [--duration "
		"S] [--warmup S]\n"
		"              [--requests N] [--yield] [--json] [--label T] "
		"[--cdf FILE]\n"
		"              [--quiet] [--callgrind]\n"
		"Host-driven SEND/RECV RPCs (no NIC engine): the baseline of "
		"dagger-bench.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"listen", 1, 0, 'L'},
					   {"port", 1, 0, 'p'},
					   {"connect", 1, 0, 'c'},
					   {"src", 1, 0, 'S'},
					   {"threads", 1, 0, 't'},
					   {"size", 1, 0, 's'},
					   {"window", 1, 0, 'w'},
					   {"rate", 1, 0, 'R'},
					   {"duration", 1, 0, 'd'},
					   {"warmup", 1, 0, 'u'},
					   {"requests", 1, 0, 'n'},
					   {"yield", 0, 0, 'y'},
					   {"json", 0, 0, 'j'},
					   {"label", 1, 0, 'b'},
					   {"cdf", 1, 0, 'C'},
					   {"quiet", 0, 0, 'q'},
					   {"callgrind", 0, 0, 'g'},
					   {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	char *end;
	int o;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	C.mode = argv[1];
	optind = 2;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'L':
			C.listen = optarg;
			break;
		case 'p':
			C.port = (uint16_t)strtoul(optarg, &end, 10);
			break;
		case 'c': {
			const char *c = strrchr(optarg, ':');

			if (!c || (size_t)(c - optarg) >= sizeof(C.addr)) {
				fprintf(stderr, "dagger-hostrpc: --connect "
						"ADDR:PORT\n");
				return 2;
			}
			memcpy(C.addr, optarg, (size_t)(c - optarg));
			C.port = (uint16_t)strtoul(c + 1, &end, 10);
			break;
		}
		case 'S':
			C.src = optarg;
			break;
		case 't':
			C.threads = (uint32_t)strtoul(optarg, &end, 0);
			break;
		case 's':
			C.size = (uint32_t)strtoul(optarg, &end, 0);
			break;
		case 'w':
			C.window = (uint32_t)strtoul(optarg, &end, 0);
			break;
		case 'R':
			C.rate = strtod(optarg, &end);
			break;
		case 'd':
			C.duration = strtod(optarg, &end);
			break;
		case 'u':
			C.warmup = strtod(optarg, &end);
			break;
		case 'n':
			C.requests = strtoull(optarg, &end, 0);
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
	}
	if (!C.threads || C.threads > MAX_THREADS || !C.window ||
	    C.window > NBUF / 2 || C.size > (1u << 20) || C.duration <= 0) {
		fprintf(stderr,
			"dagger-hostrpc: threads 1..%u, window 1..%u, "
			"size <= 1 MiB, duration > 0\n",
			MAX_THREADS, NBUF / 2);
		return 2;
	}
	if (!strcmp(C.mode, "server") && C.listen)
		return run_server();
	if (!strcmp(C.mode, "client") && C.addr[0] && C.port)
		return run_client();
	usage(stderr);
	return 2;
}
