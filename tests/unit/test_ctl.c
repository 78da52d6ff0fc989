// SPDX-License-Identifier: MIT
/*
 * test_ctl: the engine's control socket and what it controls, on an
 * in-process engine with shared-memory hosts (no devices).
 *
 *  - the JSON reader: exact 64-bit integers, escapes, nesting bound, and
 *    every kind of malformed text refused with a reason;
 *  - the protocol: each malformed request answered with its error on the
 *    same connection, which goes on working; an oversized line refused
 *    and skipped; a partial line waits for its end; 16 silent
 *    connections and one that never reads its answers stall nothing
 *    (RPCs and other connections go on); the 17th connection is told
 *    there are too many;
 *  - key-based load balancing: the slot table spreads keys evenly, and
 *    when a server flow leaves only its keys move (and when one joins,
 *    only keys that go to it); keyed calls reach one server flow per
 *    key, counted through the stats JSON;
 *  - statistics: per-flow and per-service counters and the engine's
 *    latency histogram match what the test sent;
 *  - live changes under load: every setting and the policy switched back
 *    and forth while clients run; every RPC completes exactly once with
 *    its own bytes; drain moves new requests off a tenant's flows; evict
 *    refuses an in-process tenant.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dagger/ctrl.h"
#include "dagger/dagger.h"
#include "dg_json.h"
#include "engine.h"
#include "engine_impl.h"

enum { FN_ECHO = 1 };

static struct {
	struct dg_nic *nic;
	pthread_t thr;
	char dir[64], ctl[96];
} E;

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Which server flow served each call: the handler records it. */
static __thread struct dg_flow *served_by;

static int echo(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	(void)arg;
	served_by = req->flow;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

/* Echo that writes the serving flow's index after the payload. */
static int echo_where(void *arg, const struct dg_request *req,
		      struct dg_response *resp)
{
	struct dg_host *h = arg;
	uint32_t i;

	for (i = 0; i < dg_host_nflows(h); i++)
		if (dg_host_flow(h, i) == req->flow)
			break;
	memcpy(resp->data, req->data, req->len);
	memcpy((uint8_t *)resp->data + req->len, &i, 4);
	resp->len = req->len + 4;
	return 0;
}

static const struct dg_handler handlers[] = {{FN_ECHO, echo}};
static const struct dg_service_def echo_svc = {
	.name = "echo", .handlers = handlers, .nhandlers = 1};

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
	struct dg_nic_opts o = {0};

	(void)state;
	strcpy(E.dir, "/tmp/dg-ctl.XXXXXX");
	assert_non_null(mkdtemp(E.dir));
	snprintf(E.ctl, sizeof(E.ctl), "%s/ctl", E.dir);
	o.ctl_path = E.ctl;
	assert_int_equal(dg_nic_create(&o, &E.nic), 0);
	assert_int_equal(pthread_create(&E.thr, NULL, engine_main, E.nic), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dg_nic_stop(E.nic);
	pthread_join(E.thr, NULL);
	dg_nic_destroy(E.nic);
	rmdir(E.dir);
	return 0;
}

/* ---- the control socket from a test ------------------------------------ */

static int ctl_open(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(a.sun_path, E.ctl);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

/* One answer line (malloc'd, without the newline), within 10 s. */
static char *read_line(int fd)
{
	static char buf[1 << 22];
	static size_t have;
	uint64_t until = now_ms() + 10000;
	char *nl, *line;

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t r;

		nl = memchr(buf, '\n', have);
		if (nl)
			break;
		if (now_ms() > until)
			fail_msg("no answer from the control socket in 10 s");
		if (poll(&p, 1, 100) <= 0)
			continue;
		r = recv(fd, buf + have, sizeof(buf) - have, 0);
		if (r <= 0)
			fail_msg("control socket closed");
		have += (size_t)r;
	}
	line = strndup(buf, (size_t)(nl - buf));
	have -= (size_t)(nl - buf) + 1;
	memmove(buf, nl + 1, have);
	return line;
}

static struct dg_json *ask(int fd, const char *req)
{
	struct dg_json *j;
	char err[160], *line;

	send_all(fd, req, strlen(req));
	send_all(fd, "\n", 1);
	line = read_line(fd);
	if (dg_json_parse(line, strlen(line), &j, err, sizeof(err)))
		fail_msg("answer is not JSON (%s): %s", err, line);
	free(line);
	return j;
}

/* The answer must be ok:false with an error containing want. */
static void expect_error(int fd, const char *req, const char *want)
{
	struct dg_json *j = ask(fd, req);
	const char *e = dg_json_str(j, "error");

	assert_non_null(dg_json_get(j, "ok"));
	assert_false(dg_json_get(j, "ok")->b);
	assert_int_equal(dg_json_uint(j, "v", 0), 1);
	if (!e || !strstr(e, want))
		fail_msg("%s: error \"%s\", expected \"%s\"", req,
			 e ? e : "(none)", want);
	dg_json_free(j);
}

static struct dg_json *expect_ok(int fd, const char *req)
{
	struct dg_json *j = ask(fd, req);

	if (!dg_json_get(j, "ok") || !dg_json_get(j, "ok")->b)
		fail_msg("%s: %s", req,
			 dg_json_str(j, "error") ? dg_json_str(j, "error")
						 : "not ok");
	return j;
}

/* The stats object of one flow, as the engine reports it. */
static uint64_t flow_counter(const struct dg_json *st, uint32_t tenant,
			     uint32_t flow, const char *key)
{
	const struct dg_json *t, *f;

	for (t = dg_json_get(st, "tenants")->child; t; t = t->next) {
		if (dg_json_uint(t, "id", 99) != tenant)
			continue;
		for (f = dg_json_get(t, "flow")->child; f; f = f->next)
			if (dg_json_uint(f, "flow", 99) == flow)
				return dg_json_uint(f, key, UINT64_MAX);
	}
	fail_msg("no tenant %u flow %u in the stats", tenant, flow);
	return 0;
}

static const struct dg_json *service(const struct dg_json *st, const char *name)
{
	const struct dg_json *s;

	for (s = dg_json_get(st, "services")->child; s; s = s->next)
		if (!strcmp(dg_json_str(s, "name"), name))
			return s;
	fail_msg("no service %s in the stats", name);
	return NULL;
}

/* ---- the JSON reader ----------------------------------------------------- */

static void test_json(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"{\"a\":}",
		"{\"a\" 1}",
		"[1,]",
		"[1 2]",
		"{} x",
		"\"abc",
		"\"\\q\"",
		"\"\\u12\"",
		"\"\\ud800\"",
		"01",
		"-",
		"1.",
		"1e",
		"tru",
		"nul",
		"\"a\x01b\"",
		"\"\\u0000\"",
		"{1:2}",
		"[\"\\udc00\"]",
	};
	struct dg_json *j;
	char err[160], deep[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (dg_json_parse(bad[i], strlen(bad[i]), &j, err,
				  sizeof(err)) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_null(j);
		assert_true(strstr(err, "at byte") != NULL);
	}
	{
		static const char ok[] = "{\"n\":18446744073709551615,"
					 "\"s\":\"a\\\"\\u00e9\\ud83d\\ude00\","
					 "\"t\":true,\"z\":null,\"f\":-1.5e2,"
					 "\"a\":[1,[2],{}]}";

		assert_int_equal(
			dg_json_parse(ok, sizeof(ok) - 1, &j, err, sizeof(err)),
			0);
	}
	assert_int_equal(dg_json_uint(j, "n", 0), UINT64_MAX);
	assert_string_equal(dg_json_str(j, "s"), "a\"\xc3\xa9\xf0\x9f\x98\x80");
	assert_true(dg_json_get(j, "t")->b);
	assert_int_equal(dg_json_get(j, "z")->type, DG_JSON_NULL);
	assert_true(dg_json_num(j, "f", 0) == -150.0);
	assert_false(dg_json_get(j, "f")->is_uint);
	assert_int_equal(dg_json_get(j, "a")->n, 3);
	dg_json_free(j);
	/* Nesting: DG_JSON_DEPTH levels parse, one more does not. */
	memset(deep, '[', DG_JSON_DEPTH + 1);
	memset(deep + DG_JSON_DEPTH + 1, ']', DG_JSON_DEPTH + 1);
	assert_int_equal(dg_json_parse(deep, 2 * (DG_JSON_DEPTH + 1), &j, err,
				       sizeof(err)),
			 0);
	dg_json_free(j);
	memset(deep, '[', DG_JSON_DEPTH + 2);
	memset(deep + DG_JSON_DEPTH + 2, ']', DG_JSON_DEPTH + 2);
	assert_int_equal(dg_json_parse(deep, 2 * (DG_JSON_DEPTH + 2), &j, err,
				       sizeof(err)),
			 -EINVAL);
	assert_true(strstr(err, "nested too deep") != NULL);
}

/* ---- the protocol ------------------------------------------------------- */

static void test_protocol_errors(void **state)
{
	char big[6000];
	struct dg_json *j;
	int fd = ctl_open();

	(void)state;
	expect_error(fd, "not json", "not JSON");
	expect_error(fd, "[1,2]", "not a JSON object");
	expect_error(fd, "{\"cmd\":\"stats\"}", "protocol version missing");
	expect_error(fd, "{\"v\":2,\"cmd\":\"stats\"}",
		     "protocol version not supported");
	expect_error(fd, "{\"v\":1}", "no \"cmd\"");
	expect_error(fd, "{\"v\":1,\"cmd\":\"frobnicate\"}",
		     "unknown command \"frobnicate\"");
	expect_error(fd, "{\"v\":1,\"cmd\":\"set\"}", "missing \"name\"");
	expect_error(fd, "{\"v\":1,\"cmd\":\"set\",\"name\":\"speed\"}",
		     "unknown setting \"speed\"");
	expect_error(fd, "{\"v\":1,\"cmd\":\"set\",\"name\":\"batch\"}",
		     "missing \"value\"");
	expect_error(fd,
		     "{\"v\":1,\"cmd\":\"set\",\"name\":\"batch\",\"value\":"
		     "\"lots\"}",
		     "bad \"value\"");
	expect_error(fd,
		     "{\"v\":1,\"cmd\":\"set\",\"name\":\"batch\",\"value\":"
		     "0}",
		     "out of range 1..1024");
	expect_error(fd,
		     "{\"v\":1,\"cmd\":\"set\",\"name\":\"policy\",\"service\":"
		     "\"echo\",\"value\":\"fastest\"}",
		     "unknown policy \"fastest\"");
	expect_error(fd, "{\"v\":1,\"cmd\":\"tenant.evict\"}",
		     "missing \"tenant\"");
	expect_error(fd, "{\"v\":1,\"cmd\":\"tenant.drain\",\"tenant\":63}",
		     "no tenant 63");
	expect_error(fd, "{\"v\":1,\"cmd\":\"reload\"}",
		     "no description to re-read");
	/* An oversized line: refused, skipped to its end, then on. */
	memset(big, 'x', sizeof(big));
	send_all(fd, big, sizeof(big));
	expect_error(fd, "", "longer than 4096 bytes");
	j = expect_ok(fd, "{\"v\":1,\"cmd\":\"hello\"}");
	assert_int_equal(dg_json_uint(j, "protocol", 0), 1);
	dg_json_free(j);
	/* A partial line waits for its end; CRLF is taken too. */
	send_all(fd, "{\"v\":1,\"cmd\":", 13);
	{
		struct pollfd p = {fd, POLLIN, 0};

		/* Nothing may come for half a line (a bounded look). */
		assert_int_equal(poll(&p, 1, 200), 0);
	}
	send_all(fd, "\"get\"}\r\n", 8);
	free(read_line(fd));
	j = expect_ok(fd, "{\"v\":1,\"cmd\":\"get\"}");
	assert_int_equal(dg_json_uint(dg_json_get(j, "settings"), "batch", 0),
			 16);
	dg_json_free(j);
	close(fd);
}

struct load {
	struct dg_host *h;
	uint32_t flow, n, size;
	volatile int *stop;
	uint32_t ok, bad, busy, dup;
	uint8_t *seen; /* completions per call */
};

/*
 * Pipelined echo client: 8 calls in flight, each payload its own (rpc id
 * and a pattern), every completion checked and counted exactly once.
 * BUSY answers are sent again under a new id (the old one is done).
 */
static void *load_main(void *arg)
{
	struct load *a = arg;
	struct dg_flow *f = dg_host_flow(a->h, a->flow);
	uint8_t buf[512], want[512];
	uint32_t sent = 0, done = 0, seq[4096] = {0}, again[16], nagain = 0;
	struct dg_completion c[16];
	uint64_t until = now_ms() + 60000;
	int conn = dg_connect(f, NULL, 0, "echo", 5000);

	if (conn < 0)
		return NULL;
	while (done < a->n && now_ms() < until) {
		int k, i;

		if ((nagain || sent < a->n) && sent - done < 8 + nagain) {
			uint32_t id, s = nagain ? again[nagain - 1] : sent;
			uint32_t len = 8 + s % (a->size - 8);

			memcpy(buf, &s, 4);
			memset(buf + 4, (int)(s * 7 + a->flow), len - 4);
			if (dg_call(f, conn, FN_ECHO, buf, len, &id) == 0) {
				seq[id & 4095] = s;
				if (nagain)
					nagain--;
				else
					sent++;
			}
		}
		k = dg_poll(f, c, 16);
		for (i = 0; i < k; i++) {
			uint32_t s = seq[c[i].rpc_id & 4095], len;

			len = 8 + s % (a->size - 8);
			memcpy(want, &s, 4);
			memset(want + 4, (int)(s * 7 + a->flow), len - 4);
			if (c[i].status == DG_ST_BUSY) {
				/* The server's ring was full: again. */
				a->busy++;
				again[nagain++] = s;
				continue;
			}
			if (a->seen[s]++)
				a->dup++;
			if (c[i].status == 0 && c[i].len == len &&
			    !memcmp(c[i].data, want, len))
				__atomic_add_fetch(&a->ok, 1, __ATOMIC_RELAXED);
			else
				a->bad++;
			done++;
		}
	}
	dg_close(f, conn);
	return NULL;
}

static void test_silent_and_greedy_clients(void **state)
{
	struct dg_host *srv = attach(1, 1024), *cli = attach(1, 1024);
	struct dg_server *s;
	struct load a = {.h = cli, .n = 3000, .size = 200};
	int silent[15], greedy, extra, fd, i;
	pthread_t t;
	struct dg_json *j;
	char *line;

	(void)state;
	a.seen = calloc(a.n, 1);
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 1, &s), 0);
	/* 15 connections that never say a thing. */
	for (i = 0; i < 15; i++)
		silent[i] = ctl_open();
	/* One that asks for stats over and over and never reads. */
	greedy = ctl_open();
	for (i = 0; i < 2000; i++) {
		static const char rq[] = "{\"v\":1,\"cmd\":\"stats\"}\n";

		if (send(greedy, rq, sizeof(rq) - 1,
			 MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			break; /* its socket buffer is full */
	}
	/* The 17th is told there are too many, and closed. */
	extra = ctl_open();
	line = read_line(extra);
	assert_true(strstr(line, "too many control connections") != NULL);
	free(line);
	close(extra);
	/* RPCs flow meanwhile, and every one comes back once, intact. */
	assert_int_equal(pthread_create(&t, NULL, load_main, &a), 0);
	pthread_join(t, NULL);
	assert_int_equal(a.ok, a.n);
	assert_int_equal(a.bad, 0);
	assert_int_equal(a.dup, 0);
	/*
	 * A silent connection closed: its place is free again once the
	 * engine notices (at its next look), and a new one is answered.
	 */
	close(silent[0]);
	for (i = 0;; i++) {
		struct dg_json *h;

		fd = ctl_open();
		send_all(fd, "{\"v\":1,\"cmd\":\"hello\"}\n", 22);
		line = read_line(fd);
		if (!strstr(line, "too many")) {
			assert_int_equal(
				dg_json_parse(line, strlen(line), &h, NULL, 0),
				0);
			assert_true(dg_json_get(h, "ok")->b);
			dg_json_free(h);
			free(line);
			break;
		}
		free(line);
		close(fd);
		if (i > 100000)
			fail_msg("the closed connection's place never freed");
		sched_yield();
	}
	j = expect_ok(fd, "{\"v\":1,\"cmd\":\"stats\"}");
	assert_true(dg_json_get(dg_json_get(j, "engine"), "tenants")->u >= 2);
	dg_json_free(j);
	close(fd);
	for (i = 1; i < 15; i++)
		close(silent[i]);
	close(greedy);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	free(a.seen);
}

/* ---- key-based load balancing ------------------------------------------- */

static void key_table(struct dg_nic *n, struct service *s, uint32_t nserv)
{
	uint32_t i;

	memset(s, 0, sizeof(*s));
	s->used = true;
	s->lb = DG_LB_KEY;
	for (i = 0; i < nserv; i++)
		s->servers[i] = (struct server_ref){(uint16_t)(i / 2),
						    (uint16_t)(i % 2)};
	s->nservers = nserv;
	nic_svc_rebuild(s, n);
}

static void test_key_hashing(void **state)
{
	struct dg_nic *n = calloc(1, sizeof(*n));
	struct service *s = calloc(1, sizeof(*s));
	enum { KEYS = 40000 };
	uint16_t *before = calloc(KEYS, sizeof(*before));
	struct server_ref *was = calloc(KEYS, sizeof(*was));
	uint32_t cnt[8] = {0}, k, i, moved = 0;

	(void)state;
	/* 4 server flows: each gets a quarter of the keys, +-10%. */
	key_table(n, s, 4);
	for (k = 0; k < KEYS; k++) {
		i = nic_svc_key_pick(s, n, dg_key_hash(&k, sizeof(k)));
		assert_true(i < 4);
		before[k] = (uint16_t)i;
		was[k] = s->servers[i];
		cnt[i]++;
		/* Sticky: the same key, the same flow, every time. */
		assert_int_equal(
			nic_svc_key_pick(s, n, dg_key_hash(&k, sizeof(k))), i);
	}
	for (i = 0; i < 4; i++)
		if (cnt[i] < KEYS / 4 * 9 / 10 || cnt[i] > KEYS / 4 * 11 / 10)
			fail_msg("flow %u got %u of %u keys", i, cnt[i], KEYS);
	/* Small keys (0, 1, 2...) spread too: they are mixed first. */
	memset(cnt, 0, sizeof(cnt));
	for (k = 0; k < KEYS; k++)
		cnt[nic_svc_key_pick(s, n, k)]++;
	for (i = 0; i < 4; i++)
		assert_true(cnt[i] > KEYS / 4 * 9 / 10);
	/* Server 1 leaves (as nic_svc_drop_tenant does: the last moves into
	 * its place): only its keys move. */
	s->servers[1] = s->servers[--s->nservers];
	nic_svc_rebuild(s, n);
	for (k = 0; k < KEYS; k++) {
		struct server_ref now =
			s->servers[nic_svc_key_pick(s, n, dg_key_hash(&k, 4))];

		if (before[k] == 1)
			continue;
		if (now.tenant != was[k].tenant || now.flow != was[k].flow)
			moved++;
	}
	assert_int_equal(moved, 0);
	/* A server joins: only keys that go to it move, about a quarter. */
	for (k = 0; k < KEYS; k++)
		was[k] = s->servers[nic_svc_key_pick(s, n, dg_key_hash(&k, 4))];
	s->servers[s->nservers++] = (struct server_ref){9, 9};
	nic_svc_rebuild(s, n);
	moved = 0;
	for (k = 0; k < KEYS; k++) {
		struct server_ref now =
			s->servers[nic_svc_key_pick(s, n, dg_key_hash(&k, 4))];

		if (now.tenant == was[k].tenant && now.flow == was[k].flow)
			continue;
		assert_int_equal(now.tenant, 9);
		moved++;
	}
	assert_true(moved > KEYS / 4 * 8 / 10 && moved < KEYS / 4 * 12 / 10);
	/* A draining tenant's flows take no keys. */
	n->tenants[0].draining = true;
	nic_svc_rebuild(s, n);
	for (k = 0; k < 1000; k++)
		assert_int_not_equal(
			s->servers[nic_svc_key_pick(s, n, k)].tenant, 0);
	free(before);
	free(was);
	free(s);
	free(n);
}

/* Keyed calls through the engine: one flow per key, all flows used. */
static void test_keyed_calls(void **state)
{
	struct dg_host *srv = attach(4, 1024), *cli = attach(1, 1024);
	struct dg_handler hw[] = {{FN_ECHO, echo_where}};
	struct dg_service_def def = {.name = "kv",
				     .handlers = hw,
				     .nhandlers = 1,
				     .arg = srv,
				     .lb = DG_LB_KEY};
	struct dg_flow *f = dg_host_flow(cli, 0);
	/* 61 keys: round-robin would not send a key to one flow each time. */
	uint32_t where[61], got[4] = {0}, key, i, k;
	struct dg_server *s;
	struct dg_json *st;
	int conn, fd = ctl_open();

	(void)state;
	assert_int_equal(dg_server_start(srv, &def, 0, 4, &s), 0);
	conn = dg_connect(f, NULL, 0, "kv", 5000);
	assert_true(conn >= 0);
	for (i = 0; i < 61 * 20; i++) {
		char kbuf[16], resp[64];
		size_t rlen = sizeof(resp);
		struct dg_completion c;
		uint32_t id, flow;

		k = i % 61;
		snprintf(kbuf, sizeof(kbuf), "key-%u", k);
		key = dg_key_hash(kbuf, strlen(kbuf));
		assert_int_equal(dg_call_key(f, conn, FN_ECHO, key, kbuf,
					     strlen(kbuf), &id),
				 0);
		assert_int_equal(dg_wait(f, id, &c, 5000), 0);
		assert_int_equal(c.status, 0);
		assert_int_equal(c.len, strlen(kbuf) + 4);
		memcpy(resp, c.data, c.len);
		(void)rlen;
		assert_memory_equal(resp, kbuf, strlen(kbuf));
		memcpy(&flow, resp + strlen(kbuf), 4);
		assert_true(flow < 4);
		if (i < 61)
			where[k] = flow;
		else
			assert_int_equal(flow, where[k]); /* sticky */
		got[flow]++;
	}
	for (i = 0; i < 4; i++)
		assert_true(got[i] > 0); /* 61 keys over 4 flows */
	/* The engine's own counters say the same. */
	st = expect_ok(fd, "{\"v\":1,\"cmd\":\"stats\"}");
	{
		const struct dg_json *t, *sv = service(st, "kv");
		uint32_t tid = UINT32_MAX;

		assert_string_equal(dg_json_str(sv, "policy"), "key");
		assert_int_equal(dg_json_uint(sv, "requests", 0), 61 * 20);
		assert_int_equal(
			dg_json_uint(dg_json_get(sv, "latency"), "count", 0),
			61 * 20);
		for (t = dg_json_get(st, "tenants")->child; t; t = t->next)
			if (dg_json_uint(t, "flows", 0) == 4)
				tid = (uint32_t)dg_json_uint(t, "id", 0);
		for (i = 0; i < 4; i++)
			/* rpcs_rx: the requests, and the REGISTER reply. */
			assert_int_equal(flow_counter(st, tid, i, "rpcs_rx"),
					 got[i] + 1);
	}
	dg_json_free(st);
	close(fd);
	dg_close(f, conn);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

/* ---- live changes under load -------------------------------------------- */

static void test_live_changes(void **state)
{
	static const char *const sets[] = {
		"\"name\":\"batch\",\"value\":1",
		"\"name\":\"batch\",\"value\":64",
		"\"name\":\"poll_max_us\",\"value\":5",
		"\"name\":\"poll_max_us\",\"value\":1000",
		"\"name\":\"spin_us\",\"value\":1",
		"\"name\":\"spin_us\",\"value\":5000",
		"\"name\":\"idle_us\",\"value\":10",
		"\"name\":\"idle_us\",\"value\":2000",
		"\"name\":\"peer_timeout_ms\",\"value\":100",
		"\"name\":\"peer_timeout_ms\",\"value\":3000",
		"\"name\":\"verbose\",\"value\":0",
		"\"name\":\"policy\",\"service\":\"echo\",\"value\":\"key\"",
		"\"name\":\"policy\",\"service\":\"echo\",\"value\":"
		"\"random\"",
		"\"name\":\"policy\",\"service\":\"echo\",\"value\":"
		"\"static\"",
		"\"name\":\"policy\",\"service\":\"echo\",\"value\":\"rr\"",
	};
	struct dg_host *srv = attach(2, 512), *cli = attach(2, 512);
	struct load a[2] = {{.h = cli, .flow = 0, .n = 20000, .size = 300},
			    {.h = cli, .flow = 1, .n = 20000, .size = 300}};
	struct dg_server *s;
	pthread_t t[2];
	struct dg_json *j;
	uint32_t round = 0, i;
	int fd = ctl_open();

	(void)state;
	assert_int_equal(dg_server_start(srv, &echo_svc, 0, 2, &s), 0);
	for (i = 0; i < 2; i++) {
		a[i].seen = calloc(a[i].n, 1);
		assert_int_equal(pthread_create(&t[i], NULL, load_main, &a[i]),
				 0);
	}
	/* Every setting back and forth while the calls run. */
	while (__atomic_load_n(&a[0].ok, __ATOMIC_RELAXED) +
		       __atomic_load_n(&a[1].ok, __ATOMIC_RELAXED) <
	       a[0].n + a[1].n - 500) {
		char rq[256];

		snprintf(rq, sizeof(rq), "{\"v\":1,\"cmd\":\"set\",%s}",
			 sets[round++ % (sizeof(sets) / sizeof(sets[0]))]);
		dg_json_free(expect_ok(fd, rq));
		if (round > 100000)
			fail_msg("the load did not finish");
	}
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].ok, a[i].n);
		assert_int_equal(a[i].bad, 0);
		assert_int_equal(a[i].dup, 0);
		free(a[i].seen);
	}
	assert_true(round >= sizeof(sets) / sizeof(sets[0]));
	dg_json_free(expect_ok(fd, "{\"v\":1,\"cmd\":\"set\",\"name\":"
				   "\"policy\",\"service\":\"echo\",\"value\":"
				   "\"static\"}"));
	j = expect_ok(fd, "{\"v\":1,\"cmd\":\"get\"}");
	assert_string_equal(dg_json_str(dg_json_get(j, "policies"), "echo"),
			    "static");
	assert_int_equal(
		dg_json_uint(dg_json_get(j, "settings"), "peer_timeout_ms", 0),
		dg_nic_setting_get(E.nic, DG_NIC_SET_PEER_TIMEOUT_MS));
	dg_json_free(j);
	/* Back to the defaults for the tests that follow. */
	dg_json_free(expect_ok(
		fd,
		"{\"v\":1,\"cmd\":\"set\",\"name\":\"batch\",\"value\":16}"));
	dg_json_free(expect_ok(fd, "{\"v\":1,\"cmd\":\"set\",\"name\":"
				   "\"poll_max_us\",\"value\":1000}"));
	dg_json_free(expect_ok(fd, "{\"v\":1,\"cmd\":\"set\",\"name\":"
				   "\"spin_us\",\"value\":50}"));
	dg_json_free(expect_ok(fd, "{\"v\":1,\"cmd\":\"set\",\"name\":"
				   "\"idle_us\",\"value\":1000}"));
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	close(fd);
}

/* Drain moves new requests off a tenant; evict refuses in-process ones. */
static void test_drain_evict(void **state)
{
	struct dg_host *s1 = attach(1, 512), *s2 = attach(1, 512);
	struct dg_host *cli = attach(1, 512);
	struct dg_server *a, *b;
	struct dg_flow *f = dg_host_flow(cli, 0);
	struct dg_json *j;
	const struct dg_json *sv;
	uint32_t ta, tb, ra, rb, i;
	char rq[160], buf[32] = "drain";
	int conn, fd = ctl_open();

	(void)state;
	assert_int_equal(dg_server_start(s1, &echo_svc, 0, 1, &a), 0);
	assert_int_equal(dg_server_start(s2, &echo_svc, 0, 1, &b), 0);
	conn = dg_connect(f, NULL, 0, "echo", 5000);
	assert_true(conn >= 0);
	/* The service's two server flows, as the engine lists them. */
	j = expect_ok(fd, "{\"v\":1,\"cmd\":\"stats\"}");
	sv = service(j, "echo");
	assert_int_equal(dg_json_get(sv, "servers")->n, 2);
	ta = (uint32_t)dg_json_uint(dg_json_get(sv, "servers")->child, "tenant",
				    99);
	tb = (uint32_t)dg_json_uint(dg_json_get(sv, "servers")->child->next,
				    "tenant", 99);
	ra = (uint32_t)flow_counter(j, ta, 0, "rpcs_rx");
	rb = (uint32_t)flow_counter(j, tb, 0, "rpcs_rx");
	dg_json_free(j);
	snprintf(rq, sizeof(rq),
		 "{\"v\":1,\"cmd\":\"tenant.drain\",\"tenant\":%u}", ta);
	j = expect_ok(fd, rq);
	assert_true(dg_json_get(dg_json_get(j, "tenant"), "draining")->b);
	dg_json_free(j);
	for (i = 0; i < 200; i++) {
		size_t rl = sizeof(buf);

		assert_int_equal(
			dg_call_sync(f, conn, FN_ECHO, buf, 5, buf, &rl, 5000),
			0);
	}
	j = expect_ok(fd, "{\"v\":1,\"cmd\":\"stats\"}");
	/* Not one new request for the draining tenant; all to the other. */
	assert_int_equal(flow_counter(j, ta, 0, "rpcs_rx"), ra);
	assert_int_equal(flow_counter(j, tb, 0, "rpcs_rx"), rb + 200);
	assert_int_equal(dg_json_uint(service(j, "echo"), "active", 0), 1);
	dg_json_free(j);
	snprintf(rq, sizeof(rq),
		 "{\"v\":1,\"cmd\":\"tenant.drain\",\"tenant\":%u,\"on\":"
		 "false}",
		 ta);
	dg_json_free(expect_ok(fd, rq));
	snprintf(rq, sizeof(rq),
		 "{\"v\":1,\"cmd\":\"tenant.evict\",\"tenant\":%u}", ta);
	expect_error(fd, rq, "in the engine's own process");
	snprintf(rq, sizeof(rq),
		 "{\"v\":1,\"cmd\":\"set\",\"name\":\"mode\",\"tenant\":%u,"
		 "\"value\":\"push\"}",
		 ta);
	expect_error(fd, rq, "is on shared memory, polled in place");
	snprintf(rq, sizeof(rq),
		 "{\"v\":1,\"cmd\":\"set\",\"name\":\"mode\",\"tenant\":%u,"
		 "\"value\":\"warp\"}",
		 ta);
	expect_error(fd, rq, "must be poll, doorbell or push");
	dg_close(f, conn);
	dg_server_stop(a);
	dg_server_stop(b);
	dg_host_detach(cli);
	dg_host_detach(s1);
	dg_host_detach(s2);
	close(fd);
}

/* dg_nic_ctl_request: the same protocol without a socket. */
static void test_request_api(void **state)
{
	char out[256];
	size_t k;

	(void)state;
	k = dg_nic_ctl_request(E.nic, "{\"v\":1,\"cmd\":\"hello\"}", 21, out,
			       sizeof(out));
	assert_true(k > 0 && out[k - 1] == '\n');
	assert_true(strstr(out, "\"ok\":true") != NULL);
	/* An answer that does not fit is refused, not cut. */
	k = dg_nic_ctl_request(E.nic, "{\"v\":1,\"cmd\":\"stats\"}", 21, out,
			       sizeof(out));
	assert_true(strstr(out, "does not fit") != NULL);
	assert_int_equal(dg_nic_set(E.nic, DG_NIC_SET_BATCH, 2000), -ERANGE);
	assert_int_equal(dg_nic_set_policy(E.nic, "", DG_LB_KEY), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_key_hashing),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_request_api),
		cmocka_unit_test(test_keyed_calls),
		cmocka_unit_test(test_live_changes),
		cmocka_unit_test(test_drain_evict),
		cmocka_unit_test(test_silent_and_greedy_clients),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
