// SPDX-License-Identifier: MIT
/*
 * The host->NIC interface modes over real RDMA devices (docs/ARCHITECTURE.md,
 * "Interface modes" and "Sleeping and waking").
 *
 * For each of poll, doorbell and push:
 *  - echo with mixed sizes up to 64 KiB and content checks, 2 client
 *    threads x 2 server threads; then idle: in doorbell and push modes the
 *    engine READs nothing from idle flows (poll mode keeps READing), and
 *    calls after the pause, which find the server asleep, complete;
 *  - full rings: BUSY from the engine, -EAGAIN at the host, then success;
 *  - the engine process killed: the call fails with -ENOTCONN, no hang.
 * And:
 *  - a live switch poll -> doorbell -> push -> poll ..., by the server
 *    flow while requests keep coming and by each client flow between its
 *    bursts, with every call answered exactly once and intact;
 *  - push mode against torn writes: a frame whose bytes land in pieces
 *    (stamp and checksum first, announced, the body later) is not taken
 *    until it is whole, then taken intact; announcements behind the
 *    engine or beyond the ring are ignored;
 *  - sleep and wake-up under load over RDMA: hosts that sleep after 1 us
 *    idle, calls spaced to race their decisions to sleep; every call
 *    answered, no missed wake-up (counted by each flow).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dagger/dagger.h"
#include "dg_rdma.h"
#include "engine.h"
#include "host_impl.h"
#include "rxe_env.h"

extern char **environ;

enum { FN_ECHO = 1 };

static const int modes[] = {DG_MODE_POLL, DG_MODE_DOORBELL, DG_MODE_PUSH};

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static int next_mode(int m)
{
	return m == DG_MODE_POLL       ? DG_MODE_DOORBELL
	       : m == DG_MODE_DOORBELL ? DG_MODE_PUSH
				       : DG_MODE_POLL;
}

/* ---- engines and hosts ----------------------------------------------------
 */

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

static void engine_start(struct engine *e)
{
	struct dg_nic_opts o = {.listen_addr = dg_rxe_addr(0), .engine_id = 1};

	assert_int_equal(dg_nic_create(&o, &e->nic), 0);
	e->port = dg_nic_port(e->nic);
	e->addr = dg_rxe_addr(0);
	assert_int_equal(pthread_create(&e->thr, NULL, engine_main, e->nic), 0);
}

static void engine_stop(struct engine *e)
{
	dg_nic_stop(e->nic);
	pthread_join(e->thr, NULL);
	dg_nic_stats_print(e->nic, stdout);
	dg_nic_destroy(e->nic);
}

static struct dg_nic_stats nic_stats(const struct engine *e)
{
	struct dg_nic_stats s;

	assert_int_equal(dg_nic_stats(e->nic, &s, 20000), 0);
	return s;
}

/* Sleeps of flows [0, n) of h that ran to their timeout over a frame. */
static uint64_t wakes_missed(struct dg_host *h, uint32_t n)
{
	struct dg_flow_stats fs;
	uint64_t missed = 0;
	uint32_t i;

	for (i = 0; i < n; i++) {
		dg_flow_stats(dg_host_flow(h, i), &fs);
		missed += fs.missed_wakes;
	}
	return missed;
}

static struct dg_host *attach_mode(const char *addr, uint16_t port, int mode,
				   uint32_t nflows, uint32_t slots,
				   uint32_t spin_us)
{
	struct dg_host_opts o = {.engine_addr = addr,
				 .engine_port = port,
				 .src_addr = dg_rxe_src(),
				 .nflows = nflows,
				 .slots = slots,
				 .mode = mode,
				 .spin_us = spin_us,
				 /* Asked to spin briefly: to sleep soon too. */
				 .yield_us = spin_us ? DG_YIELD_OFF : 0,
				 .timeout_ms = 30000};
	struct dg_host *h = NULL;
	int rc = dg_host_attach(&o, &h);

	/* The first resolution after boot can take its whole timeout. */
	if (rc == -ETIMEDOUT)
		rc = dg_host_attach(&o, &h);
	if (rc)
		fail_msg("attach to %s:%u: %s", addr, port, strerror(-rc));
	return h;
}

static struct dg_host *attach_to(const struct engine *e, int mode,
				 uint32_t nflows, uint32_t slots)
{
	return attach_mode(e->addr, e->port, mode, nflows, slots, 0);
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

static int connect_wait(struct dg_flow *f)
{
	uint64_t until = now_ms() + 30000;
	int c;

	do {
		c = dg_connect(f, NULL, 0, "echo", 30000);
	} while (c == -ENOENT && now_ms() < until);
	return c;
}

/* ---- a pipelined client: content checks, each call answered once ------- */

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static uint32_t pick_size(uint32_t *s)
{
	uint32_t r = lcg(s) % 1000;

	if (r < 700)
		return 1 + lcg(s) % 120;
	if (r < 960)
		return 1 + lcg(s) % 4096;
	if (r < 995)
		return 1 + lcg(s) % DG_MAX_INLINE;
	return DG_MAX_INLINE;
}

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 7u + i * 31u + (i >> 7));
}

#define TRACK 1024u /* calls in flight per thread, far above any window */

struct client_arg {
	struct dg_host *h;
	uint32_t flow, n, window;
	uint32_t switch_every; /* 0: never switch modes */
	int mode;	       /* the flow's mode at the start */
	uint32_t ok, bad, dup, busy, switches, err;
};

struct track {
	uint32_t id, len, seed;
	bool used;
};

static void *client_main(void *arg)
{
	struct client_arg *a = arg;
	struct dg_flow *f = dg_host_flow(a->h, a->flow);
	uint8_t *buf = malloc(DG_MAX_INLINE), *want = malloc(DG_MAX_INLINE);
	struct track *tr = calloc(TRACK, sizeof(*tr));
	/* Calls the server's full ring turned away (BUSY), to send again. */
	struct track *again = calloc(TRACK, sizeof(*again));
	uint32_t sent = 0, done = 0, inflight = 0, nagain = 0;
	uint32_t s = 99u + a->flow, next_switch = a->switch_every;
	struct dg_completion c[16];
	uint64_t deadline = now_ms() + 600000;
	int conn = connect_wait(f), mode = a->mode;

	if (conn < 0 || !buf || !want || !tr || !again) {
		a->err = 1;
		goto out;
	}
	while (done < a->n && now_ms() < deadline) {
		int k, i;

		/* Between bursts: drained, switch the flow's mode. */
		if (a->switch_every && done >= next_switch && !inflight) {
			mode = next_mode(mode);
			if (dg_flow_set_mode(f, mode, 30000) ||
			    dg_flow_mode(f) != mode) {
				a->err = 2;
				break;
			}
			a->switches++;
			next_switch += a->switch_every;
		}
		if (inflight < a->window &&
		    (nagain ||
		     (sent < a->n &&
		      !(a->switch_every && done + inflight >= next_switch)))) {
			struct track t = {.len = 0};
			uint32_t id;

			if (nagain)
				t = again[nagain - 1];
			else
				t = (struct track){.len = pick_size(&s),
						   .seed = sent};
			fill(buf, t.len, t.seed);
			if (dg_call(f, conn, FN_ECHO, buf, t.len, &id) == 0) {
				t.id = id;
				t.used = true;
				tr[id % TRACK] = t;
				if (nagain)
					nagain--;
				else
					sent++;
				inflight++;
			}
		}
		k = dg_poll(f, c, 16);
		for (i = 0; i < k; i++) {
			struct track *t = &tr[c[i].rpc_id % TRACK];

			if (!t->used || t->id != c[i].rpc_id) {
				a->dup++; /* an answer to no call in flight */
				continue;
			}
			t->used = false;
			inflight--;
			if (c[i].status == DG_ST_BUSY) {
				/* Back-pressure: the same call goes again. */
				a->busy++;
				again[nagain++] = *t;
				continue;
			}
			fill(want, t->len, t->seed);
			if (c[i].status == 0 && c[i].len == t->len &&
			    !memcmp(c[i].data, want, t->len))
				a->ok++;
			else
				a->bad++;
			done++;
		}
	}
	dg_close(f, conn);
out:
	free(buf);
	free(want);
	free(tr);
	free(again);
	return NULL;
}

static void run_clients(struct client_arg *a, int n)
{
	pthread_t t[4];
	uint64_t t0 = now_ms();
	int i;

	for (i = 0; i < n; i++)
		pthread_create(&t[i], NULL, client_main, &a[i]);
	for (i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < n; i++) {
		printf("# client %d: %u ok, %u bad, %u duplicate, %u resent "
		       "after BUSY, %u mode switches, in %.1f s\n",
		       i, a[i].ok, a[i].bad, a[i].dup, a[i].busy, a[i].switches,
		       (now_ms() - t0) / 1e3);
		assert_int_equal(a[i].err, 0);
		assert_int_equal(a[i].bad, 0);
		assert_int_equal(a[i].dup, 0);
		assert_int_equal(a[i].ok, a[i].n);
	}
}

/* ---- each mode ------------------------------------------------------------
 */

static void test_echo(void **state)
{
	int mode = *(const int *)*state;
	struct engine e;
	struct dg_host *srv, *cli;
	struct dg_server *s;
	struct client_arg a[2] = {{.flow = 0, .n = 1000, .window = 8},
				  {.flow = 1, .n = 1000, .window = 8}};
	struct dg_flow_stats fs;
	struct dg_nic_stats before, after;
	uint64_t doorbells = 0, sleeps = 0, missed;
	char out[8];
	size_t olen;
	int i, conn;

	engine_start(&e);
	srv = attach_to(&e, mode, 2, 8192);
	cli = attach_to(&e, mode, 3, 4096);
	for (i = 0; i < 3; i++)
		assert_int_equal(dg_flow_mode(dg_host_flow(cli, i)), mode);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 2, &s), 0);
	a[0].h = a[1].h = cli;
	a[0].mode = a[1].mode = mode;
	run_clients(a, 2);
	for (i = 0; i < 2; i++) {
		dg_flow_stats(dg_host_flow(cli, i), &fs);
		doorbells += fs.doorbells;
	}
	printf("# %s: %llu doorbells for %u calls\n", dg_mode_name(mode),
	       (unsigned long long)doorbells, a[0].n + a[1].n);
	/* Poll mode posts no verb; the others announce every batch. */
	if (mode == DG_MODE_POLL)
		assert_int_equal(doorbells, 0);
	else
		assert_true(doorbells > 0 &&
			    doorbells <= a[0].n + a[1].n + 100);

	/*
	 * Idle for a while: doorbell and push flows cost no READ at all;
	 * poll flows are still READ (backing off). The engine's counters are
	 * a snapshot taken by its own thread: no race with its loop.
	 */
	before = nic_stats(&e);
	usleep(500000);
	after = nic_stats(&e);
	printf("# %s: %llu READs, %llu engine sleeps in 0.5 s idle\n",
	       dg_mode_name(mode),
	       (unsigned long long)(after.reads - before.reads),
	       (unsigned long long)(after.sleeps - before.sleeps));
	if (mode == DG_MODE_POLL)
		assert_true(after.reads > before.reads);
	else
		assert_int_equal(after.reads, before.reads);

	/* After the pause the server threads sleep; calls wake them. */
	conn = connect_wait(dg_host_flow(cli, 2));
	assert_true(conn >= 0);
	for (i = 0; i < 20; i++) {
		olen = sizeof(out);
		assert_int_equal(dg_call_sync(dg_host_flow(cli, 2), conn,
					      FN_ECHO, "wake", 4, out, &olen,
					      20000),
				 0);
		assert_int_equal(olen, 4);
		assert_memory_equal(out, "wake", 4);
		usleep(20000); /* long enough for the servers to sleep */
	}
	dg_server_stop(s);
	for (i = 0; i < 2; i++) {
		dg_flow_stats(dg_host_flow(srv, i), &fs);
		sleeps += fs.sleeps;
	}
	missed = wakes_missed(srv, 2) + wakes_missed(cli, 3);
	after = nic_stats(&e);
	printf("# %s: server threads slept %llu times, missed %llu "
	       "wake-ups; the engine sent %llu\n",
	       dg_mode_name(mode), (unsigned long long)sleeps,
	       (unsigned long long)missed, (unsigned long long)after.wakes);
	assert_true(sleeps >= 20);
	assert_true(after.wakes >= 20);
	assert_int_equal(missed, 0);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&e);
}

/* Full rings: BUSY from the engine, -EAGAIN at the host, then success. */
static void test_ring_full(void **state)
{
	int mode = *(const int *)*state;
	struct engine e;
	struct dg_host *srv, *cli;
	struct dg_flow *sf, *f;
	struct dg_completion c[64];
	uint32_t calls = 0, done = 0, busy = 0, ok = 0, id, i;
	uint64_t until;
	int conn, rc = 0, k;

	engine_start(&e);
	srv = attach_to(&e, mode, 1, 64);
	cli = attach_to(&e, mode, 1, 64);
	sf = dg_host_flow(srv, 0);
	f = dg_host_flow(cli, 0);
	assert_int_equal(dg_serve(sf, &echo_svc, 20000), 0);
	conn = connect_wait(f);
	assert_true(conn >= 0);
	/* Call without polling until -EAGAIN persists for 2 s. */
	until = now_ms() + 120000;
	while (now_ms() < until) {
		rc = dg_call(f, conn, FN_ECHO, "abc", 3, &id);
		if (rc == -EAGAIN) {
			uint64_t t = now_ms() + 2000;

			while ((rc = dg_call(f, conn, FN_ECHO, "abc", 3,
					     &id)) == -EAGAIN &&
			       now_ms() < t)
				;
			if (rc == -EAGAIN)
				break;
		}
		assert_int_equal(rc, 0);
		calls++;
	}
	assert_int_equal(rc, -EAGAIN);
	until = now_ms() + 120000;
	while (done < calls && now_ms() < until) {
		dg_serve_poll(sf, 64);
		k = dg_poll(f, c, 64);
		for (i = 0; i < (uint32_t)k; i++) {
			if (c[i].status == DG_ST_BUSY)
				busy++;
			else if (c[i].status == 0 && c[i].len == 3 &&
				 !memcmp(c[i].data, "abc", 3))
				ok++;
			done++;
		}
	}
	printf("# %s: -EAGAIN after %u calls: %u ok, %u busy\n",
	       dg_mode_name(mode), calls, ok, busy);
	assert_int_equal(done, calls);
	assert_int_equal(ok + busy, calls);
	assert_true(busy > 0);
	assert_int_equal(dg_call(f, conn, FN_ECHO, "abc", 3, &id), 0);
	until = now_ms() + 60000;
	for (k = 0; k == 0 && now_ms() < until;) {
		dg_serve_poll(sf, 64);
		k = dg_poll(f, c, 1);
	}
	assert_int_equal(k, 1);
	assert_int_equal(c[0].status, 0);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&e);
}

static pid_t child = -1;

static int reap_child(void **state)
{
	(void)state;
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	child = -1;
	return 0;
}

/* The engine process killed: the call fails with -ENOTCONN, no hang. */
static void test_engine_killed(void **state)
{
	int mode = *(const int *)*state;
	uint16_t port = (uint16_t)(30000 + (getpid() + mode) % 20000);
	struct dg_host_opts o = {.engine_addr = dg_rxe_addr(0),
				 .engine_port = port,
				 .nflows = 1,
				 .mode = mode,
				 .timeout_ms = 20000};
	struct dg_host *srv = NULL, *cli = NULL;
	struct dg_server *s;
	struct dg_flow *f;
	char ports[8], out[8];
	size_t olen = sizeof(out);
	uint64_t t0, until;
	int conn, rc;

	snprintf(ports, sizeof(ports), "%u", port);
	{
		char *argv[] = {"dagger-nic", "--listen", (char *)o.engine_addr,
				"--port",     ports,	  NULL};

		assert_int_equal(posix_spawn(&child, DG_NIC_BIN, NULL, NULL,
					     argv, environ),
				 0);
	}
	/* The engine needs a moment to listen: retry the attach. */
	until = now_ms() + 30000;
	while ((rc = dg_host_attach(&o, &srv)) != 0 && now_ms() < until)
		usleep(200000);
	assert_int_equal(rc, 0);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	assert_int_equal(dg_host_attach(&o, &cli), 0);
	f = dg_host_flow(cli, 0);
	conn = connect_wait(f);
	assert_true(conn >= 0);
	assert_int_equal(
		dg_call_sync(f, conn, FN_ECHO, "x", 1, out, &olen, 20000), 0);
	reap_child(NULL);
	t0 = now_ms();
	olen = sizeof(out);
	rc = dg_call_sync(f, conn, FN_ECHO, "y", 1, out, &olen, 20000);
	printf("# %s: engine killed: the call returned %d (%s) after %.2f "
	       "s\n",
	       dg_mode_name(mode), rc, strerror(rc < 0 ? -rc : 0),
	       (now_ms() - t0) / 1e3);
	assert_int_equal(rc, -ENOTCONN);
	assert_int_equal(dg_host_check(cli), -ENOTCONN);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

/* ---- switching modes under load -------------------------------------------
 */

struct switcher {
	struct dg_host *h;
	volatile int stop;
	uint64_t served;
	uint32_t switches;
	int rc;
};

/*
 * The server flow serves, and every 700 requests switches its own mode
 * (the switch waits for the engine's answer while it goes on serving).
 */
static void *switching_server(void *arg)
{
	struct switcher *w = arg;
	struct dg_flow *f = dg_host_flow(w->h, 0);
	uint64_t next = 700;
	int mode = DG_MODE_POLL;

	w->rc = dg_serve(f, &echo_svc, 20000);
	while (!w->rc && !w->stop) {
		int k = dg_serve_poll(f, 32);

		if (k > 0)
			w->served += (uint64_t)k;
		if (w->served >= next) {
			mode = next_mode(mode);
			w->rc = dg_flow_set_mode(f, mode, 30000);
			if (!w->rc && dg_flow_mode(f) != mode)
				w->rc = -EPROTO;
			w->switches++;
			next += 700;
		}
	}
	return NULL;
}

static void test_live_switch(void **state)
{
	struct engine e;
	struct dg_host *srv, *cli;
	struct switcher w = {0};
	pthread_t st;
	struct client_arg a[2] = {{.flow = 0,
				   .n = 3000,
				   .window = 16,
				   .switch_every = 400,
				   .mode = DG_MODE_POLL},
				  {.flow = 1,
				   .n = 3000,
				   .window = 16,
				   .switch_every = 550,
				   .mode = DG_MODE_POLL}};

	(void)state;
	engine_start(&e);
	srv = attach_to(&e, DG_MODE_POLL, 1, 16384);
	cli = attach_to(&e, DG_MODE_POLL, 2, 4096);
	w.h = srv;
	assert_int_equal(pthread_create(&st, NULL, switching_server, &w), 0);
	a[0].h = a[1].h = cli;
	run_clients(a, 2);
	w.stop = 1;
	pthread_join(st, NULL);
	printf("# the server switched %u times while serving %llu "
	       "requests\n",
	       w.switches, (unsigned long long)w.served);
	assert_int_equal(w.rc, 0);
	/* poll -> doorbell -> push -> poll, at least once round, each. */
	assert_true(w.switches >= 3);
	assert_true(a[0].switches >= 3);
	assert_true(a[1].switches >= 3);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&e);
}

/* ---- push mode and torn writes ---------------------------------------------
 */

/*
 * Writes bytes [off, off + len) of f's TX slot at position pos into the
 * engine's copy, then (announce) its doorbell for tx_db = db. Unsignaled
 * WRITEs; the doorbell is signaled (the host's reaper skips kind 0).
 */
static void raw_push(struct dg_flow *f, uint32_t pos, uint32_t off,
		     uint32_t len, bool announce, uint32_t db)
{
	struct dg_host *h = f->h;
	uint64_t ring = (uint64_t)((uint8_t *)f->tx - h->region);
	uint64_t ctrl = (uint64_t)((uint8_t *)f->ctrl - h->region);
	uint8_t *slot = (uint8_t *)&f->tx[pos & f->mask];

	pthread_mutex_lock(&h->vlock);
	if (len)
		assert_int_equal(
			dg_rdma_post_write(h->ep, h->mr, slot + off, len,
					   h->shadow_addr + ring +
						   (uint64_t)(pos & f->mask) *
							   DG_SLOT_SIZE +
						   off,
					   h->shadow_rkey, 0, 0),
			0);
	if (announce) {
		__atomic_store_n(&f->ctrl->tx_db, db, __ATOMIC_RELAXED);
		assert_int_equal(
			dg_rdma_post_write_imm(
				h->ep, h->mr, &f->ctrl->tx_db,
				sizeof(f->ctrl->tx_db),
				h->shadow_addr + ctrl +
					offsetof(struct dg_flow_ctrl, tx_db),
				h->shadow_rkey, DG_IMM(DG_IMM_DOORBELL, f->idx),
				0, DG_RDMA_SIGNALED),
			0);
	}
	pthread_mutex_unlock(&h->vlock);
}

/* Waits until the engine has taken `want` doorbells in all. */
static struct dg_nic_stats wait_doorbells(const struct engine *e, uint64_t want)
{
	uint64_t until = now_ms() + 20000;
	struct dg_nic_stats s = nic_stats(e);

	while (s.doorbells < want && now_ms() < until)
		s = nic_stats(e);
	assert_true(s.doorbells >= want);
	return s;
}

static void expect_answer(struct dg_flow *f, uint32_t id, const void *data,
			  uint32_t len)
{
	struct dg_completion c;
	uint64_t until = now_ms() + 20000;
	int k = 0;

	while (k == 0 && now_ms() < until)
		k = dg_poll(f, &c, 1);
	assert_int_equal(k, 1);
	assert_int_equal(c.rpc_id, id);
	assert_int_equal(c.status, 0);
	assert_int_equal(c.len, len);
	assert_memory_equal(c.data, data, len);
}

static void test_push_torn(void **state)
{
	struct engine e;
	struct dg_host *srv, *cli;
	struct dg_server *s;
	struct dg_flow *f;
	struct dg_nic_stats ns;
	struct dg_completion c;
	uint8_t msg[100];
	uint32_t id, pos, cnt, i, db0;
	int conn;

	(void)state;
	engine_start(&e);
	srv = attach_to(&e, DG_MODE_DOORBELL, 1, 1024);
	cli = attach_to(&e, DG_MODE_PUSH, 1, 256);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	f = dg_host_flow(cli, 0);
	conn = connect_wait(f);
	assert_true(conn >= 0);
	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7 + 3);

	/* From here this test pushes f's frames itself. */
	f->kick = DG_KICK_NONE;

	/* 1. One frame: its stamp and checksum land first, announced. */
	pos = f->tx_tail;
	assert_int_equal(dg_call(f, conn, FN_ECHO, msg, 20, &id), 0);
	assert_int_equal(f->tx_tail, pos + 1);
	ns = nic_stats(&e);
	db0 = (uint32_t)ns.doorbells;
	raw_push(f, pos, 0, 8, true, pos + 1);
	ns = wait_doorbells(&e, db0 + 1);
	/* It went through the engine's loop after the doorbell: not taken. */
	ns = nic_stats(&e);
	assert_int_equal(dg_poll(f, &c, 1), 0);
	{
		struct dg_nic_stats again = nic_stats(&e);

		assert_int_equal(again.rpcs_tx, ns.rpcs_tx);
	}
	/* The body lands; announced again: taken, intact. */
	raw_push(f, pos, 8, DG_SLOT_SIZE - 8, true, pos + 1);
	expect_answer(f, id, msg, 20);
	printf("# one frame in two pieces: taken once whole\n");

	/* 2. Three frames: the last two land first, then the first. */
	pos = f->tx_tail;
	assert_int_equal(dg_call(f, conn, FN_ECHO, msg, sizeof(msg), &id), 0);
	cnt = f->tx_tail - pos;
	assert_int_equal(cnt, dg_frames_for(sizeof(msg)));
	assert_true(cnt >= 3);
	ns = nic_stats(&e);
	db0 = (uint32_t)ns.doorbells;
	for (i = 1; i < cnt; i++)
		raw_push(f, pos + i, 0, DG_SLOT_SIZE, false, 0);
	raw_push(f, pos, 8, DG_SLOT_SIZE - 8, true, pos + cnt);
	wait_doorbells(&e, db0 + 1);
	assert_int_equal(dg_poll(f, &c, 1), 0);
	raw_push(f, pos, 0, 8, true, pos + cnt);
	expect_answer(f, id, msg, sizeof(msg));
	printf("# three frames, out of order: taken once whole\n");

	/*
	 * 3. Announcements the engine must ignore: behind what it took, and
	 * more than a ring ahead (nothing there). Then a proper push.
	 */
	ns = nic_stats(&e);
	db0 = (uint32_t)ns.doorbells;
	raw_push(f, 0, 0, 0, true, f->tx_tail - 5);
	raw_push(f, 0, 0, 0, true, f->tx_tail + 10 * f->slots);
	wait_doorbells(&e, db0 + 2);
	assert_int_equal(dg_poll(f, &c, 1), 0);
	pos = f->tx_tail;
	assert_int_equal(dg_call(f, conn, FN_ECHO, msg, 50, &id), 0);
	for (i = 0; i < f->tx_tail - pos; i++)
		raw_push(f, pos + i, 0, DG_SLOT_SIZE, false, 0);
	raw_push(f, 0, 0, 0, true, f->tx_tail);
	expect_answer(f, id, msg, 50);

	/* The library pushes again, from where this test left off. */
	f->db_sent = f->tx_tail;
	f->kick = DG_KICK_RDMA;
	for (i = 0; i < 50; i++) {
		char out[128];
		size_t olen = sizeof(out);

		assert_int_equal(dg_call_sync(f, conn, FN_ECHO, msg, 1 + i * 2,
					      out, &olen, 20000),
				 0);
		assert_int_equal(olen, 1 + i * 2);
		assert_memory_equal(out, msg, olen);
	}
	ns = nic_stats(&e);
	for (i = 0; i < DG_NIC_DROP_N; i++)
		assert_int_equal(ns.drops[i], 0);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&e);
}

/* ---- sleep and wake-up under load ------------------------------------------
 */

struct sync_client {
	struct dg_host *h;
	const char *service;
	uint32_t n, ok;
	int rc;
};

static void *sync_client(void *arg)
{
	struct sync_client *c = arg;
	struct dg_flow *f = dg_host_flow(c->h, 0);
	uint32_t seed = (uint32_t)(uintptr_t)c, i;
	uint8_t req[200], resp[200];
	uint64_t until = now_ms() + 30000;
	int conn;

	do {
		conn = dg_connect(f, NULL, 0, c->service, 30000);
	} while (conn == -ENOENT && now_ms() < until);
	if (conn < 0) {
		c->rc = conn;
		return NULL;
	}
	for (i = 0; i < c->n; i++) {
		size_t len = 1 + lcg(&seed) % sizeof(req), olen = sizeof(resp);
		uint32_t r = lcg(&seed) % 4;

		fill(req, (uint32_t)len, i);
		c->rc = dg_call_sync(f, conn, FN_ECHO, req, len, resp, &olen,
				     20000);
		if (c->rc)
			break;
		if (olen == len && !memcmp(req, resp, len))
			c->ok++;
		/* A wake-up lost on our side: stop at the first. */
		{
			struct dg_flow_stats fs;

			dg_flow_stats(f, &fs);
			if (fs.missed_wakes) {
				c->rc = -EPROTO;
				break;
			}
		}
		/* Spaced so the servers' sleeps race the next call. */
		if (r)
			usleep(r * 40 + lcg(&seed) % 100);
	}
	dg_close(f, conn);
	return NULL;
}

/*
 * Each client has a server thread of its own (a service each): that
 * thread's only deliveries are its client's calls, so a lost wake-up is
 * not rescued by another caller's request. Dispatch threads sleep with no
 * timeout and callers until their deadline (20 s): a lost wake-up fails a
 * call (-ETIMEDOUT) or shows as a sleep that ran out over a frame
 * (missed_wakes); a late one (a retransmission) is only latency.
 */
static void test_sleep_wake(void **state)
{
	static const struct dg_service_def pair[2] = {
		{.name = "echo0", .handlers = handlers, .nhandlers = 1},
		{.name = "echo1", .handlers = handlers, .nhandlers = 1}};
	struct engine e;
	struct dg_host *srv, *cli[2];
	struct dg_server *s[2];
	struct sync_client c[2];
	struct dg_flow_stats fs;
	struct dg_nic_stats ns;
	uint64_t sleeps = 0, missed;
	pthread_t t[2];
	int i;

	(void)state;
	engine_start(&e);
	srv = attach_mode(e.addr, e.port, DG_MODE_DOORBELL, 2, 1024, 1);
	for (i = 0; i < 2; i++)
		assert_int_equal(
			dg_server_start(srv, &pair[i], (uint32_t)i, 1, &s[i]),
			0);
	for (i = 0; i < 2; i++) {
		cli[i] = attach_mode(e.addr, e.port, DG_MODE_DOORBELL, 1, 256,
				     1);
		c[i] = (struct sync_client){
			.h = cli[i], .service = pair[i].name, .n = 1500};
		assert_int_equal(
			pthread_create(&t[i], NULL, sync_client, &c[i]), 0);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(c[i].rc, 0);
		assert_int_equal(c[i].ok, c[i].n);
		dg_flow_stats(dg_host_flow(cli[i], 0), &fs);
		assert_int_equal(fs.completions, fs.calls);
	}
	for (i = 0; i < 2; i++) {
		dg_server_stop(s[i]);
		dg_flow_stats(dg_host_flow(srv, (uint32_t)i), &fs);
		sleeps += fs.sleeps;
	}
	missed = wakes_missed(srv, 2);
	for (i = 0; i < 2; i++)
		missed += wakes_missed(cli[i], 1);
	ns = nic_stats(&e);
	printf("# sleep/wake over RDMA: servers slept %llu times, the "
	       "engine sent %llu wake-ups, %llu missed\n",
	       (unsigned long long)sleeps, (unsigned long long)ns.wakes,
	       (unsigned long long)missed);
	assert_int_equal(missed, 0);
	assert_true(sleeps >= 100);
	assert_true(ns.wakes >= 100);
	for (i = 0; i < 2; i++)
		dg_host_detach(cli[i]);
	dg_host_detach(srv);
	engine_stop(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_echo, (void *)&modes[0]),
		cmocka_unit_test_prestate(test_echo, (void *)&modes[1]),
		cmocka_unit_test_prestate(test_echo, (void *)&modes[2]),
		cmocka_unit_test_prestate(test_ring_full, (void *)&modes[0]),
		cmocka_unit_test_prestate(test_ring_full, (void *)&modes[1]),
		cmocka_unit_test_prestate(test_ring_full, (void *)&modes[2]),
		cmocka_unit_test_prestate_setup_teardown(test_engine_killed,
							 NULL, reap_child,
							 (void *)&modes[0]),
		cmocka_unit_test_prestate_setup_teardown(test_engine_killed,
							 NULL, reap_child,
							 (void *)&modes[1]),
		cmocka_unit_test_prestate_setup_teardown(test_engine_killed,
							 NULL, reap_child,
							 (void *)&modes[2]),
		cmocka_unit_test(test_live_switch),
		cmocka_unit_test(test_push_torn),
		cmocka_unit_test(test_sleep_wake),
	};

	dg_rxe_require();
	signal(SIGPIPE, SIG_IGN);
	/* DG_TEST_FILTER=test_push_torn runs one case (a glob). */
	if (getenv("DG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DG_TEST_FILTER"));
	return cmocka_run_group_tests_name("modes_rdma", tests, NULL, NULL);
}
