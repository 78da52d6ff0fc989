// SPDX-License-Identifier: MIT
/*
 * End to end over real RDMA devices: NIC engines that reach their hosts'
 * rings only by RDMA READ/WRITE, hosts attached over rdma_cm, engines
 * linked by peer links.
 *
 *  - mixed sizes (1 B .. 64 KiB) with content checks, 2 client threads x
 *    2 server threads, both hosts on one engine;
 *  - client -> engine A -> engine B -> server, and the error cases there
 *    (unknown remote service, unknown function);
 *  - a client host whose engine is on another device (when routable);
 *  - full rings over RDMA: BUSY and -EAGAIN, then success;
 *  - a server process killed mid-load: callers get errors within a bound;
 *  - an engine process killed: calls fail with an error, no hang;
 *  - adaptive polling: idle flows are READ no more often than poll_max_us
 *    allows, and a call on a flow that has been idle still completes;
 *  - a peer engine that stops (SIGSTOP: its device still acknowledges,
 *    nothing answers): calls in flight through it and later ones complete
 *    UNREACHABLE once its link times out, without any caller deadline.
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
#include "engine.h"
#include "rxe_env.h"

extern char **environ;

enum { FN_ECHO = 1 };

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* ---- in-process engines ------------------------------------------------- */

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

static void engine_start(struct engine *e, const char *addr, uint32_t id)
{
	struct dg_nic_opts o = {.listen_addr = addr, .engine_id = id};

	assert_int_equal(dg_nic_create(&o, &e->nic), 0);
	e->port = dg_nic_port(e->nic);
	e->addr = addr;
	assert_int_equal(pthread_create(&e->thr, NULL, engine_main, e->nic), 0);
}

static void engine_stop(struct engine *e)
{
	dg_nic_stop(e->nic);
	pthread_join(e->thr, NULL);
	dg_nic_stats_print(e->nic, stdout);
	dg_nic_destroy(e->nic);
}

static struct dg_host *attach_to(const struct engine *e, const char *src,
				 uint32_t nflows, uint32_t slots)
{
	struct dg_host_opts o = {.engine_addr = e->addr,
				 .engine_port = e->port,
				 .src_addr = src,
				 .nflows = nflows,
				 .slots = slots,
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
static const struct dg_service_def echo_svc = {
	.name = "echo", .handlers = handlers, .nhandlers = 1};

/* Retries while the service is not registered yet. */
static int connect_wait(struct dg_flow *f, const struct engine *peer)
{
	uint64_t until = now_ms() + 30000;
	int c;

	do {
		c = dg_connect(f, peer ? peer->addr : NULL,
			       peer ? peer->port : 0, "echo", 30000);
	} while (c == -ENOENT && now_ms() < until);
	return c;
}

/* ---- a pipelined client with content checks ----------------------------- */

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
	if (r < 950)
		return 1 + lcg(s) % 4096;
	if (r < 995)
		return 1 + lcg(s) % DG_MAX_MSG;
	return DG_MAX_MSG;
}

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 7u + i * 31u + (i >> 7));
}

struct client_arg {
	struct dg_host *h;
	const struct engine *peer; /* NULL: service behind our engine */
	uint32_t flow, n, window;
	uint32_t ok, bad, busy, err;
	uint64_t bytes;
};

static void *client_main(void *arg)
{
	struct client_arg *a = arg;
	struct dg_flow *f = dg_host_flow(a->h, a->flow);
	uint8_t *buf = malloc(DG_MAX_MSG), *want = malloc(DG_MAX_MSG);
	uint32_t sizes[256], seeds[256];
	uint32_t sent = 0, done = 0, s = 99u + a->flow;
	struct dg_completion c[16];
	uint64_t deadline = now_ms() + 600000;
	int conn = connect_wait(f, a->peer);

	if (conn < 0 || !buf || !want) {
		a->err = 1;
		goto out;
	}
	while (done < a->n && now_ms() < deadline) {
		int k, i;

		if (sent < a->n && sent - done < a->window) {
			uint32_t id, len = pick_size(&s);

			fill(buf, len, sent);
			if (dg_call(f, conn, FN_ECHO, buf, len, &id) == 0) {
				sizes[id % 256] = len;
				seeds[id % 256] = sent;
				sent++;
			}
		}
		k = dg_poll(f, c, 16);
		for (i = 0; i < k; i++) {
			uint32_t slot = c[i].rpc_id % 256, len = sizes[slot];

			if (c[i].status == DG_ST_BUSY) {
				uint32_t id;

				/* Server ring full: back-pressure, resend. */
				a->busy++;
				fill(buf, len, seeds[slot]);
				while (dg_call(f, conn, FN_ECHO, buf, len,
					       &id) == -EAGAIN)
					dg_poll(f, c + i, 0);
				sizes[id % 256] = len;
				seeds[id % 256] = seeds[slot];
				continue;
			}
			fill(want, len, seeds[slot]);
			if (c[i].status == 0 && c[i].len == len &&
			    !memcmp(c[i].data, want, len))
				a->ok++;
			else
				a->bad++;
			a->bytes += len;
			done++;
		}
	}
	dg_close(f, conn);
out:
	free(buf);
	free(want);
	return NULL;
}

/* ---- tests --------------------------------------------------------------- */

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
		printf("# client %d: %u ok, %u bad, %u resent after BUSY, "
		       "%.1f MB in %.1f s\n",
		       i, a[i].ok, a[i].bad, a[i].busy, a[i].bytes / 1e6,
		       (now_ms() - t0) / 1e3);
		assert_int_equal(a[i].err, 0);
		assert_int_equal(a[i].bad, 0);
		assert_int_equal(a[i].ok, a[i].n);
	}
}

/* 2 client threads x 2 server threads, one engine, 10,000 mixed RPCs. */
static void test_mixed_2x2(void **state)
{
	struct engine e;
	struct dg_host *srv, *cli;
	struct dg_server *s;
	struct client_arg a[2] = {{.flow = 0, .n = 5000, .window = 8},
				  {.flow = 1, .n = 5000, .window = 8}};

	(void)state;
	engine_start(&e, dg_rxe_addr(0), 1);
	srv = attach_to(&e, dg_rxe_src(), 2, 8192);
	cli = attach_to(&e, dg_rxe_src(), 2, 4096);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 2, &s), 0);
	a[0].h = a[1].h = cli;
	run_clients(a, 2);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&e);
}

/* Client -> engine A -> peer link -> engine B -> server, and errors. */
static void test_two_engines(void **state)
{
	struct engine ea, eb;
	struct dg_host *srv, *cli;
	struct dg_server *s;
	struct client_arg a = {.flow = 0, .n = 1500, .window = 8};
	struct dg_flow *f;
	char out[8];
	size_t olen = sizeof(out);
	int conn;

	(void)state;
	engine_start(&ea, dg_rxe_addr(0), 1);
	engine_start(&eb, dg_rxe_addr(1), 2);
	srv = attach_to(&eb, NULL, 1, 8192);
	cli = attach_to(&ea, NULL, 2, 4096);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	a.h = cli;
	a.peer = &eb;
	run_clients(&a, 1);

	/* Unknown service behind the peer: a clear error at connect. */
	f = dg_host_flow(cli, 1);
	assert_int_equal(dg_connect(f, eb.addr, eb.port, "nosuch", 20000),
			 -ENOENT);
	/* Unknown function: the status travels back through both engines. */
	conn = dg_connect(f, eb.addr, eb.port, "echo", 20000);
	assert_true(conn >= 0);
	assert_int_equal(dg_call_sync(f, conn, 77, "x", 1, out, &olen, 20000),
			 DG_ST_NO_FUNCTION);
	/* Nothing listens there: UNREACHABLE at connect, no hang. */
	assert_int_equal(dg_connect(f, eb.addr, 9, "echo", 20000),
			 -EHOSTUNREACH);
	dg_close(f, conn);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&ea);
	engine_stop(&eb);
}

/* A client host bound to the other device than its engine's. */
static void test_client_other_device(void **state)
{
	struct engine e;
	struct dg_host *srv, *cli = NULL;
	struct dg_host_opts o;
	struct dg_server *s;
	struct client_arg a = {.flow = 0, .n = 300, .window = 4};
	int rc;

	(void)state;
	engine_start(&e, dg_rxe_addr(0), 1);
	o = (struct dg_host_opts){.engine_addr = e.addr,
				  .engine_port = e.port,
				  .src_addr = dg_rxe_addr(1),
				  .nflows = 1,
				  .timeout_ms = 20000};
	rc = dg_host_attach(&o, &cli);
	if (rc == -EHOSTUNREACH) {
		/*
		 * Both addresses are local to one kernel: rdma_cm cannot
		 * route between them on some kernels. Two machines (or
		 * VMs) exercise this; report it rather than hide it.
		 */
		printf("# SKIP-CASE: %s -> %s not routable by rdma_cm here\n",
		       dg_rxe_addr(1), e.addr);
		engine_stop(&e);
		return;
	}
	assert_int_equal(rc, 0);
	srv = attach_to(&e, NULL, 1, 2048);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	a.h = cli;
	run_clients(&a, 1);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&e);
}

/* Full rings over RDMA: BUSY from the engine, -EAGAIN at the host. */
static void test_ring_full(void **state)
{
	struct engine e;
	struct dg_host *srv, *cli;
	struct dg_flow *sf, *f;
	struct dg_completion c[64];
	uint32_t calls = 0, done = 0, busy = 0, ok = 0, id, i;
	uint64_t until;
	int conn, rc = 0, k;

	(void)state;
	engine_start(&e, dg_rxe_addr(0), 1);
	srv = attach_to(&e, NULL, 1, 64);
	cli = attach_to(&e, NULL, 1, 64);
	sf = dg_host_flow(srv, 0);
	f = dg_host_flow(cli, 0);
	assert_int_equal(dg_serve(sf, &echo_svc, 20000), 0);
	conn = connect_wait(f, NULL);
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
			else if (c[i].status == 0 && c[i].len == 3)
				ok++;
			done++;
		}
	}
	printf("# -EAGAIN after %u calls: %u ok, %u busy\n", calls, ok, busy);
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

/*
 * Processes a test started. Each test's teardown kills what is left, also
 * when an assertion ended the test early: a leftover child would keep the
 * test runner's output pipe open and the runner waiting.
 */
static pid_t children[4];
static int nchildren;

static pid_t spawn(const char *path, char *const argv[])
{
	pid_t pid;

	assert_int_equal(posix_spawn(&pid, path, NULL, NULL, argv, environ), 0);
	children[nchildren++] = pid;
	return pid;
}

static int reap_children(void **state)
{
	(void)state;
	while (nchildren > 0) {
		pid_t pid = children[--nchildren];

		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return 0;
}

/*
 * A server process killed (SIGKILL) while calls are in flight: every
 * outstanding call completes with an error within a bound, and later
 * calls fail at once; the engine keeps serving.
 */
static void test_server_killed(void **state)
{
	struct engine e;
	struct dg_host *cli;
	struct dg_flow *f;
	struct dg_completion c[16];
	char ep[64];
	uint32_t inflight = 0, ok = 0, errs = 0, id;
	uint64_t t_kill, until;
	int conn, k, i, st;

	(void)state;
	engine_start(&e, dg_rxe_addr(0), 1);
	snprintf(ep, sizeof(ep), "%s:%u", e.addr, e.port);
	{
		char *argv[] = {"dagger-echo", "server", "--engine", ep,
				"--delay-us",  "2000",	 NULL};

		spawn(DG_ECHO_BIN, argv);
	}
	cli = attach_to(&e, NULL, 1, 2048);
	f = dg_host_flow(cli, 0);
	conn = connect_wait(f, NULL);
	assert_true(conn >= 0);
	/* Keep 16 calls in flight (each takes the server 2 ms) for 200. */
	until = now_ms() + 60000;
	while (ok + errs < 200 && now_ms() < until) {
		while (inflight < 16 &&
		       dg_call(f, conn, FN_ECHO, "ping", 4, &id) == 0)
			inflight++;
		k = dg_poll(f, c, 16);
		for (i = 0; i < k; i++, inflight--) {
			if (c[i].status == 0)
				ok++;
			else
				errs++;
		}
	}
	printf("# before the kill: %u ok, %u errors\n", ok, errs);
	if (ok < 200)
		dg_nic_stats_print(e.nic, stdout);
	assert_true(ok >= 200);
	assert_int_equal(errs, 0);
	while (inflight < 16 && dg_call(f, conn, FN_ECHO, "ping", 4, &id) == 0)
		inflight++;
	reap_children(NULL); /* SIGKILL, then wait */
	t_kill = now_ms();
	/* Every outstanding call ends, with an error, within 30 s. */
	until = t_kill + 30000;
	while (inflight && now_ms() < until) {
		k = dg_poll(f, c, 16);
		for (i = 0; i < k; i++, inflight--) {
			if (c[i].status == 0)
				ok++;
			else
				errs++;
		}
	}
	printf("# server killed: %u ok before, %u errors after, all in "
	       "%.2f s\n",
	       ok, errs, (now_ms() - t_kill) / 1e3);
	assert_int_equal(inflight, 0);
	assert_true(errs > 0);
	/* A new call fails with a status, not silence. */
	{
		char out[8];
		size_t olen = sizeof(out);

		st = dg_call_sync(f, conn, FN_ECHO, "x", 1, out, &olen, 20000);
		assert_int_equal(st, DG_ST_UNREACHABLE);
	}
	dg_host_detach(cli);
	engine_stop(&e);
}

/* The engine process killed: the host's calls fail, nothing hangs. */
static void test_engine_killed(void **state)
{
	struct dg_host_opts o = {.engine_addr = dg_rxe_addr(0),
				 .engine_port = 0,
				 .nflows = 1,
				 .timeout_ms = 20000};
	struct dg_host *h = NULL;
	struct dg_flow *f;
	struct dg_server *s;
	char port[8], out[8];
	size_t olen = sizeof(out);
	uint64_t t0, until;
	int conn, rc;

	(void)state;
	o.engine_port = (uint16_t)(30000 + getpid() % 20000);
	snprintf(port, sizeof(port), "%u", o.engine_port);
	{
		char *argv[] = {
			"dagger-nic", "--listen", (char *)dg_rxe_addr(0),
			"--port",     port,	  NULL};

		spawn(DG_NIC_BIN, argv);
	}
	/* The engine needs a moment to listen: retry the attach. */
	until = now_ms() + 30000;
	while ((rc = dg_host_attach(&o, &h)) != 0 && now_ms() < until)
		usleep(200000);
	assert_int_equal(rc, 0);
	assert_int_equal(dg_server_start(h, &echo_svc, 0, 1, &s), 0);
	dg_server_stop(s); /* registered; the flow is free again */
	{
		struct dg_host *c2 = NULL;

		assert_int_equal(dg_host_attach(&o, &c2), 0);
		f = dg_host_flow(c2, 0);
		conn = connect_wait(f, NULL);
		assert_true(conn >= 0);
		reap_children(NULL);
		t0 = now_ms();
		rc = dg_call_sync(f, conn, FN_ECHO, "x", 1, out, &olen, 20000);
		printf("# engine killed: call returned %d (%s) after %.2f s\n",
		       rc, strerror(rc < 0 ? -rc : 0), (now_ms() - t0) / 1e3);
		assert_true(rc < 0);
		assert_true(now_ms() - t0 < 25000);
		assert_int_equal(dg_host_check(c2), -ENOTCONN);
		dg_host_detach(c2);
	}
	dg_host_detach(h);
}

/* Sums the "reads" counters of the engine's statistics, per flow. */
static void flow_reads(struct dg_nic *nic, uint64_t *reads, uint32_t nflows)
{
	char *buf = NULL, *line;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	unsigned t, fl;
	unsigned long long r;

	assert_non_null(m);
	dg_nic_stats_print(nic, m);
	fclose(m);
	memset(reads, 0, nflows * sizeof(*reads));
	for (line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		const char *p = strstr(line, " reads ");

		if (sscanf(line, "tenant %u flow %u:", &t, &fl) == 2 && p &&
		    sscanf(p, " reads %llu", &r) == 1 && fl < nflows)
			reads[fl] += r;
	}
	free(buf);
}

/*
 * A tenant with 4 flows, one of them used, then everything idle for 1.5 s:
 * with poll_max_us = 10 ms an idle flow is READ at most ~150 times in
 * that span (plus its first doubling steps), where READs back to back
 * would number thousands. Then a call on a flow that was idle all along
 * completes: backing off costs latency, never a lost request.
 */
static void test_idle_flows_backoff(void **state)
{
	struct dg_nic_opts o = {.listen_addr = dg_rxe_addr(0),
				.engine_id = 1,
				.poll_max_us = 10000};
	struct engine e = {.addr = dg_rxe_addr(0)};
	struct dg_host *srv, *cli;
	struct dg_server *s;
	uint64_t reads[4], t0, bound;
	char out[8];
	size_t olen;
	int conn, i;

	(void)state;
	assert_int_equal(dg_nic_create(&o, &e.nic), 0);
	e.port = dg_nic_port(e.nic);
	assert_int_equal(pthread_create(&e.thr, NULL, engine_main, e.nic), 0);
	srv = attach_to(&e, NULL, 1, 256);
	t0 = now_ms();
	cli = attach_to(&e, NULL, 4, 256);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	conn = connect_wait(dg_host_flow(cli, 0), NULL);
	assert_true(conn >= 0);
	for (i = 0; i < 50; i++) {
		olen = sizeof(out);
		assert_int_equal(dg_call_sync(dg_host_flow(cli, 0), conn,
					      FN_ECHO, "ab", 2, out, &olen,
					      20000),
				 0);
	}
	usleep(1500000);
	dg_nic_stop(e.nic);
	pthread_join(e.thr, NULL);
	flow_reads(e.nic, reads, 4);
	/* Twice the READs one per 10 ms would make, and the ramp up. */
	bound = (now_ms() - t0) / 10 * 2 + 50;
	printf("# READs per flow (client's, flow 0 with the server's) in "
	       "%.2f s: %llu %llu %llu %llu; bound for idle flows %llu\n",
	       (now_ms() - t0) / 1e3, (unsigned long long)reads[0],
	       (unsigned long long)reads[1], (unsigned long long)reads[2],
	       (unsigned long long)reads[3], (unsigned long long)bound);
	/* Flows 1..3 of the client did nothing at all. */
	for (i = 1; i < 4; i++)
		assert_true(reads[i] <= bound);
	dg_nic_resume(e.nic);
	assert_int_equal(pthread_create(&e.thr, NULL, engine_main, e.nic), 0);
	/* Flow 3, idle since the attach, calls. */
	i = connect_wait(dg_host_flow(cli, 3), NULL);
	assert_true(i >= 0);
	olen = sizeof(out);
	assert_int_equal(dg_call_sync(dg_host_flow(cli, 3), i, FN_ECHO, "cd", 2,
				      out, &olen, 20000),
			 0);
	assert_memory_equal(out, "cd", 2);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	engine_stop(&e);
}

/*
 * Polls f until the completions of rpc ids ids[0..n-1] arrived (their
 * statuses in st[]) or ms passed. Returns how many arrived.
 */
static int poll_for(struct dg_flow *f, const uint32_t *ids, int *st, int n,
		    uint64_t ms)
{
	uint64_t until = now_ms() + ms;
	int got = 0;

	while (got < n && now_ms() < until) {
		struct dg_completion c[4];
		int k = dg_poll(f, c, 4), i, j;

		for (i = 0; i < k; i++)
			for (j = 0; j < n; j++)
				if (c[i].rpc_id == ids[j]) {
					st[j] = c[i].status;
					got++;
				}
		if (!k)
			usleep(100);
	}
	return got;
}

static void test_peer_engine_stopped(void **state)
{
	struct dg_nic_opts oa = {.listen_addr = dg_rxe_addr(0),
				 .engine_id = 1,
				 .peer_timeout_ms = 1000};
	struct engine ea = {.addr = dg_rxe_addr(0)};
	struct engine eb = {.addr = dg_rxe_addr(1)};
	struct dg_host_opts ho = {.engine_addr = dg_rxe_addr(1),
				  .nflows = 1,
				  .timeout_ms = 20000};
	struct dg_host *srv = NULL, *cli;
	struct dg_server *s;
	struct dg_flow *f;
	char port[8], out[8];
	size_t olen;
	uint32_t id[2];
	int st[2] = {-1, -1};
	uint64_t t0, until;
	pid_t pb;
	int conn, rc, i;

	(void)state;
	eb.port = (uint16_t)(30000 + (getpid() + 7) % 20000);
	snprintf(port, sizeof(port), "%u", eb.port);
	{
		char *argv[] = {"dagger-nic",
				"--listen",
				(char *)eb.addr,
				"--port",
				port,
				"--id",
				"2",
				"--peer-timeout",
				"1000",
				NULL};

		pb = spawn(DG_NIC_BIN, argv);
	}
	ho.engine_port = eb.port;
	until = now_ms() + 30000;
	while ((rc = dg_host_attach(&ho, &srv)) != 0 && now_ms() < until)
		usleep(200000);
	assert_int_equal(rc, 0);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	assert_int_equal(dg_nic_create(&oa, &ea.nic), 0);
	ea.port = dg_nic_port(ea.nic);
	assert_int_equal(pthread_create(&ea.thr, NULL, engine_main, ea.nic), 0);
	cli = attach_to(&ea, NULL, 1, 256);
	f = dg_host_flow(cli, 0);
	conn = connect_wait(f, &eb);
	assert_true(conn >= 0);
	for (i = 0; i < 20; i++) {
		olen = sizeof(out);
		assert_int_equal(dg_call_sync(f, conn, FN_ECHO, "ab", 2, out,
					      &olen, 20000),
				 0);
	}

	/* B stops: its QP still acknowledges; no frame or keepalive comes. */
	assert_int_equal(kill(pb, SIGSTOP), 0);
	t0 = now_ms();
	assert_int_equal(dg_call(f, conn, FN_ECHO, "cd", 2, &id[0]), 0);
	assert_int_equal(dg_call(f, conn, FN_ECHO, "ef", 2, &id[1]), 0);
	rc = poll_for(f, id, st, 2, 30000);
	printf("# peer engine stopped: %d of 2 calls in flight completed, "
	       "statuses %d %d, after %.2f s\n",
	       rc, st[0], st[1], (now_ms() - t0) / 1e3);
	assert_int_equal(rc, 2);
	assert_int_equal(st[0], DG_ST_UNREACHABLE);
	assert_int_equal(st[1], DG_ST_UNREACHABLE);
	assert_true(now_ms() - t0 >= 900); /* not before the link timeout */
	/* Later calls on the connection fail at once. */
	olen = sizeof(out);
	assert_int_equal(
		dg_call_sync(f, conn, FN_ECHO, "gh", 2, out, &olen, 20000),
		DG_ST_UNREACHABLE);

	dg_close(f, conn);
	dg_host_detach(cli);
	engine_stop(&ea);
	reap_children(NULL); /* SIGKILL ends a stopped process too */
	dg_server_stop(s);
	dg_host_detach(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mixed_2x2),
		cmocka_unit_test(test_two_engines),
		cmocka_unit_test(test_client_other_device),
		cmocka_unit_test(test_ring_full),
		cmocka_unit_test_teardown(test_server_killed, reap_children),
		cmocka_unit_test_teardown(test_engine_killed, reap_children),
		cmocka_unit_test(test_idle_flows_backoff),
		cmocka_unit_test_teardown(test_peer_engine_stopped,
					  reap_children),
	};

	dg_rxe_require();
	signal(SIGPIPE, SIG_IGN);
	/* DG_TEST_FILTER=test_server_killed runs one case (a glob). */
	if (getenv("DG_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DG_TEST_FILTER"));
	return cmocka_run_group_tests_name("e2e_rdma", tests, NULL, NULL);
}
