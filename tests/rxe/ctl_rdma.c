// SPDX-License-Identifier: MIT
/*
 * dagger-ctl against a running dagger-nic over RDMA: the engine is a
 * process started from a deployment description with --ctl; the server
 * and client hosts are in this process and reach it by RDMA (rdma_cm);
 * dagger-ctl is run as a program and its --json answers are parsed.
 *
 *  - stats: the engine's counts (per service, per flow) equal what the
 *    test sent; top --count 2 --json gives two intervals; stats
 *    --prometheus parses with Debian's python3-prometheus-client (every
 *    family typed, the service's request counter equal to the calls);
 *  - every live change under load, back and forth: batch, poll_max_us,
 *    spin_us, idle_us, peer_timeout_ms, verbose, the service's policy
 *    (rr, static, random, key), a tenant drained and back; and reload
 *    (dagger-ctl reload and SIGHUP) of a description whose batch and
 *    policy changed. Two client threads check that every call completes
 *    exactly once with its own bytes;
 *  - reload refuses a changed port (nothing applied, exit 1, the reason);
 *    set mode with a bad mode or tenant exits 1; bad commands exit 2;
 *  - set mode: the server tenants' flows switch poll/doorbell/push under
 *    load (in the cycle above) and, idle and asleep, are woken to switch;
 *    tenant list shows each tenant's mode;
 *  - tenant evict: an RDMA server tenant is cut off (its host sees
 *    -ENOTCONN), the service goes on with the other server.
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
#include "dg_json.h"
#include "rxe_env.h"

extern char **environ;

enum { FN_ECHO = 1 };

static int stop_load;
/*
 * Set once every change has been made: until then the load keeps its last
 * 300 calls back, so it cannot finish before the changes (a slow
 * dagger-ctl, as under ASan, made fewer changes than the list).
 */
static int changes_done = 1;
/* atomic; 0 while a change list runs */ /* atomic: load threads give up
					    (a test failed) */

static struct {
	pid_t nic;
	uint16_t port;
	char dir[64], ctl[128], yaml[128];
	struct dg_host *srv1, *srv2;
	struct dg_server *s1, *s2;
} E;

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
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
/* Two RDMA tenants serve it: they share its secret (no identity). */
static const struct dg_service_def echo_svc = {.name = "echo",
					       .handlers = handlers,
					       .nhandlers = 1,
					       .secret = 0x6563686f5eedull};

static void write_yaml(uint32_t batch, const char *policy, uint16_t port)
{
	FILE *f = fopen(E.yaml, "w");

	assert_non_null(f);
	fprintf(f,
		"machines:\n  - {name: m, rdma_addr: %s}\n"
		"engines:\n  - {name: e1, machine: m, port: %u, batch: %u, "
		"ctl: %s}\n"
		"services:\n  - {name: echo, policy: %s, threads: 2}\n",
		dg_rxe_addr(0), port, batch, E.ctl, policy);
	fclose(f);
}

/* Runs dagger-ctl with args; its stdout in *out (malloc'd); exit status. */
static int ctl(char **out, const char *fmt, ...)
{
	char cmd[1024], args[768];
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	va_list ap;
	FILE *p;
	size_t k;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --ctl %s --timeout 20000 %s", DG_CTL_BIN,
		 E.ctl, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	while ((k = fread(buf + len, 1, cap - len - 1, p)) > 0) {
		len += k;
		if (cap - len < 4096)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = 0;
	st = pclose(p);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* dagger-ctl --json ARGS: exit 0 and one JSON object, parsed. */
static struct dg_json *ctl_json(const char *args)
{
	struct dg_json *j;
	char *out, err[160];
	int st = ctl(&out, "--json %s", args);

	if (st)
		fail_msg("dagger-ctl %s: exit status %d: %s", args, st, out);
	if (dg_json_parse(out, strlen(out), &j, err, sizeof(err)))
		fail_msg("dagger-ctl %s: not JSON (%s): %s", args, err, out);
	free(out);
	return j;
}

static struct dg_host *attach(uint32_t nflows)
{
	struct dg_host_opts o = {.engine_addr = dg_rxe_addr(0),
				 .engine_port = E.port,
				 .src_addr = dg_rxe_src(),
				 .nflows = nflows,
				 .slots = 1024,
				 .timeout_ms = 30000};
	struct dg_host *h = NULL;
	uint64_t until = now_ms() + 60000;
	int rc;

	/* The engine needs a moment to listen: retry the attach. */
	while ((rc = dg_host_attach(&o, &h)) != 0 && now_ms() < until)
		usleep(200000);
	if (rc)
		fail_msg("attach to %s:%u: %s", dg_rxe_addr(0), E.port,
			 strerror(-rc));
	return h;
}

static int group_setup(void **state)
{
	char port[8];

	(void)state;
	dg_rxe_require();
	strcpy(E.dir, "/tmp/dg-ctl-rdma.XXXXXX");
	assert_non_null(mkdtemp(E.dir));
	snprintf(E.ctl, sizeof(E.ctl), "%s/e1.ctl", E.dir);
	snprintf(E.yaml, sizeof(E.yaml), "%s/d.yaml", E.dir);
	E.port = (uint16_t)(30000 + getpid() % 20000);
	snprintf(port, sizeof(port), "%u", E.port);
	write_yaml(16, "rr", E.port);
	{
		char *argv[] = {"dagger-nic", "--config", E.yaml,
				"--engine",   "e1",	  NULL};

		assert_int_equal(posix_spawn(&E.nic, DG_NIC_BIN, NULL, NULL,
					     argv, environ),
				 0);
	}
	E.srv1 = attach(2);
	E.srv2 = attach(1);
	assert_int_equal(dg_server_start(E.srv1, &echo_svc, 0, 2, &E.s1), 0);
	assert_int_equal(dg_server_start(E.srv2, &echo_svc, 0, 1, &E.s2), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dg_server_stop(E.s1);
	dg_host_detach(E.srv1);
	if (E.srv2) {
		dg_server_stop(E.s2);
		dg_host_detach(E.srv2);
	}
	kill(E.nic, SIGTERM);
	waitpid(E.nic, NULL, 0);
	unlink(E.yaml);
	rmdir(E.dir);
	return 0;
}

/* ---- load: every call once, with its own bytes ----------------------------
 */

/*
 * A flow belongs to the first thread that uses it: each test attaches a
 * client host of its own, for the threads it starts.
 */
struct load {
	struct dg_host *h;
	uint32_t flow, n;
	uint32_t ok, bad, dup, busy; /* ok: atomic */
	uint8_t *seen;
	int rc;
};

static void *load_main(void *arg)
{
	struct load *a = arg;
	struct dg_flow *f = dg_host_flow(a->h, a->flow);
	uint8_t buf[512], want[512];
	uint32_t sent = 0, done = 0, seq[4096] = {0}, again[16], nagain = 0;
	struct dg_completion c[16];
	uint64_t until = now_ms() + 600000;
	int conn = dg_connect(f, NULL, 0, "echo", 10000);

	if (conn < 0) {
		a->rc = conn;
		return NULL;
	}
	while (done < a->n && now_ms() < until &&
	       !__atomic_load_n(&stop_load, __ATOMIC_RELAXED)) {
		int k, i;

		if ((nagain ||
		     (sent < a->n &&
		      (sent + 300 < a->n ||
		       __atomic_load_n(&changes_done, __ATOMIC_RELAXED)))) &&
		    sent - done < 8 + nagain) {
			uint32_t id, s = nagain ? again[nagain - 1] : sent;
			uint32_t len = 8 + s % 300;

			memcpy(buf, &s, 4);
			memset(buf + 4, (int)(s * 7 + a->flow), len - 4);
			if (dg_call_key(f, conn, FN_ECHO, s % 97, buf, len,
					&id) == 0) {
				seq[id & 4095] = s;
				if (nagain)
					nagain--;
				else
					sent++;
			}
		}
		k = dg_poll(f, c, 16);
		if (k < 0) {
			a->rc = k;
			break;
		}
		for (i = 0; i < k; i++) {
			uint32_t s = seq[c[i].rpc_id & 4095];
			uint32_t len = 8 + s % 300;

			memcpy(want, &s, 4);
			memset(want + 4, (int)(s * 7 + a->flow), len - 4);
			if (c[i].status == DG_ST_BUSY) {
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

static const struct dg_json *service(const struct dg_json *st, const char *name)
{
	const struct dg_json *s;

	for (s = dg_json_get(st, "services")->child; s; s = s->next)
		if (!strcmp(dg_json_str(s, "name"), name))
			return s;
	fail_msg("no service %s", name);
	return NULL;
}

/* ---- tests -------------------------------------------------------------- */

static void test_stats_and_prometheus(void **state)
{
	struct load a = {.h = attach(1), .flow = 0, .n = 2000};
	struct dg_json *j;
	const struct dg_json *s;
	uint64_t before;
	char cmd[2048], *out;
	pthread_t t;
	int st;

	(void)state;
	a.seen = calloc(a.n, 1);
	j = ctl_json("stats");
	before = dg_json_uint(service(j, "echo"), "requests", 0);
	assert_string_equal(dg_json_str(service(j, "echo"), "policy"), "rr");
	assert_true(dg_json_get(service(j, "echo"), "policy_set")->b);
	assert_int_equal(dg_json_get(service(j, "echo"), "servers")->n, 3);
	dg_json_free(j);
	assert_int_equal(pthread_create(&t, NULL, load_main, &a), 0);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(a.ok, a.n);
	assert_int_equal(a.bad + a.dup, 0);
	j = ctl_json("stats");
	s = service(j, "echo");
	/* Every call delivered once (BUSY answers are not deliveries). */
	assert_int_equal(dg_json_uint(s, "requests", 0) - before, a.n);
	assert_true(dg_json_uint(dg_json_get(s, "latency"), "count", 0) >= a.n);
	assert_true(dg_json_num(dg_json_get(s, "latency"), "p99_us", 0) > 0);
	/* RDMA tenants: READs and batches counted. */
	assert_true(
		dg_json_uint(dg_json_get(dg_json_get(j, "engine"), "totals"),
			     "reads", 0) > 0);
	dg_json_free(j);
	/* top: two intervals, one JSON object each. */
	assert_int_equal(ctl(&out, "top --count 2 --interval 0.2 --json"), 0);
	{
		char *nl = strchr(out, '\n');
		struct dg_json *x;

		assert_non_null(nl);
		assert_int_equal(
			dg_json_parse(out, (size_t)(nl - out), &x, NULL, 0), 0);
		assert_int_equal(dg_json_uint(x, "round", 0), 1);
		dg_json_free(x);
		assert_int_equal(
			dg_json_parse(nl + 1, strlen(nl + 1), &x, NULL, 0), 0);
		assert_int_equal(dg_json_uint(x, "round", 0), 2);
		dg_json_free(x);
	}
	free(out);
	/* Prometheus: parsed by a real parser. */
	snprintf(cmd, sizeof(cmd),
		 "%s --ctl %s stats --prometheus > %s/m.prom && %s -c '"
		 "import sys\n"
		 "from prometheus_client.parser import "
		 "text_string_to_metric_families as p\n"
		 "fam = {f.name: f for f in p(open(\"%s/m.prom\").read())}\n"
		 "req = [s.value for s in fam[\"dagger_service_requests\"]"
		 ".samples if s.labels[\"service\"] == \"echo\"]\n"
		 "assert fam[\"dagger_service_latency_seconds\"].type == "
		 "\"summary\"\n"
		 "assert fam[\"dagger_flow_rpcs_tx\"].type == \"counter\"\n"
		 "assert all(f.type != \"unknown\" for f in fam.values())\n"
		 "assert req and req[0] >= %u, req\n"
		 "print(\"prometheus: %%d families\" %% len(fam))'",
		 DG_CTL_BIN, E.ctl, E.dir, DG_PYTHON, E.dir, a.n);
	st = system(cmd);
	assert_int_equal(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
	snprintf(cmd, sizeof(cmd), "%s/m.prom", E.dir);
	unlink(cmd);
	free(a.seen);
	dg_host_detach(a.h);
}

static void test_live_changes_under_load(void **state)
{
	static const char *const sets[] = {
		"set batch 1",
		"set batch 64",
		"set poll_max_us 5",
		"set poll_max_us 2000",
		"set spin_us 1",
		"set spin_us 5000",
		"set idle_us 10",
		"set idle_us 2000",
		"set peer_timeout_ms 100",
		"set peer_timeout_ms 3000",
		"set verbose 1",
		"set verbose 0",
		"set policy echo key",
		"set policy echo random",
		"set policy echo static",
		"set policy echo rr",
		"set mode 0 push",
		"set mode 1 poll",
		"set mode 0 doorbell",
		"set mode 1 push",
		"set mode 0 poll",
		"set mode 1 doorbell",
		"tenant drain 0",
		"tenant drain 0 --off",
		"reload",
		"set batch 16",
	};
	struct dg_host *cli = attach(2);
	struct load a[2] = {{.h = cli, .flow = 0, .n = 6000},
			    {.h = cli, .flow = 1, .n = 6000}};
	struct dg_json *j;
	pthread_t t[2];
	uint32_t round = 0, i;
	char *out, why[600] = "";

	(void)state;
	/* The description changes too: reload applies batch and policy. */
	write_yaml(32, "key", E.port);
	__atomic_store_n(&changes_done, 0, __ATOMIC_RELAXED);
	for (i = 0; i < 2; i++) {
		a[i].seen = calloc(a[i].n, 1);
		assert_int_equal(pthread_create(&t[i], NULL, load_main, &a[i]),
				 0);
	}
	while (round < sizeof(sets) / sizeof(sets[0]) ||
	       __atomic_load_n(&a[0].ok, __ATOMIC_RELAXED) +
			       __atomic_load_n(&a[1].ok, __ATOMIC_RELAXED) <
		       a[0].n + a[1].n - 300) {
		const char *cmd =
			sets[round++ % (sizeof(sets) / sizeof(sets[0]))];
		int st = ctl(&out, "%s", cmd);

		if (st)
			snprintf(why, sizeof(why), "dagger-ctl %s: exit %d: %s",
				 cmd, st, out);
		free(out);
		if (round % 5 == 0) /* SIGHUP: the same reload */
			kill(E.nic, SIGHUP);
		if (!why[0] && round > 5000)
			snprintf(why, sizeof(why), "the load did not finish");
		if (why[0])
			break;
		/* Every change made under load: the load may finish. */
		if (round == sizeof(sets) / sizeof(sets[0]))
			__atomic_store_n(&changes_done, 1, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&changes_done, 1, __ATOMIC_RELAXED);
	/* Threads first: a failure must not leave them on the flows. */
	if (why[0])
		__atomic_store_n(&stop_load, 1, __ATOMIC_RELAXED);
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	if (why[0])
		fail_msg("%s", why);
	for (i = 0; i < 2; i++) {
		assert_int_equal(a[i].rc, 0);
		assert_int_equal(a[i].ok, a[i].n);
		assert_int_equal(a[i].bad, 0);
		assert_int_equal(a[i].dup, 0);
		free(a[i].seen);
	}
	printf("# %u changes under load, %u + %u calls (%u + %u BUSY, sent "
	       "again)\n",
	       round, a[0].n, a[1].n, a[0].busy, a[1].busy);
	assert_true(round >= sizeof(sets) / sizeof(sets[0]));
	dg_host_detach(cli);
	/*
	 * Reload applies what changed in the file (settings set by hand in
	 * between stay until the file changes them): a new batch and policy.
	 */
	write_yaml(24, "static", E.port);
	assert_int_equal(ctl(NULL, "reload"), 0);
	j = ctl_json("get");
	assert_int_equal(dg_json_uint(dg_json_get(j, "settings"), "batch", 0),
			 24);
	assert_string_equal(dg_json_str(dg_json_get(j, "policies"), "echo"),
			    "static");
	dg_json_free(j);
	j = ctl_json("service list");
	assert_string_equal(
		dg_json_str(dg_json_get(j, "services")->child, "policy"),
		"static");
	dg_json_free(j);
	write_yaml(32, "key", E.port);
	assert_int_equal(ctl(NULL, "reload"), 0);
}

/* The tenants' mode as tenant list shows it: "poll", "push", "mixed"... */
static int tenant_mode_is(uint32_t tid, const char *mode)
{
	struct dg_json *j = ctl_json("tenant list");
	const struct dg_json *t;
	int ok = 0;

	for (t = dg_json_get(j, "tenants")->child; t; t = t->next)
		if (dg_json_uint(t, "id", 999) == tid)
			ok = !strcmp(dg_json_str(t, "mode"), mode);
	dg_json_free(j);
	return ok;
}

/*
 * Idle server tenants (their dispatch threads asleep) are asked for a
 * mode: the engine wakes them, each flow switches, and calls still work.
 */
static void test_set_mode_idle(void **state)
{
	static const char *const modes[] = {"push", "poll", "doorbell"};
	struct dg_host *cli = attach(1);
	struct dg_flow *f = dg_host_flow(cli, 0);
	char out[16];
	size_t olen;
	uint32_t m, t;
	int conn = dg_connect(f, NULL, 0, "echo", 10000);

	(void)state;
	assert_true(conn >= 0);
	for (m = 0; m < 3; m++) {
		uint64_t until;

		usleep(200000); /* long enough for the servers to sleep */
		for (t = 0; t < 2; t++)
			assert_int_equal(
				ctl(NULL, "set mode %u %s", t, modes[m]), 0);
		until = now_ms() + 20000;
		while (!(tenant_mode_is(0, modes[m]) &&
			 tenant_mode_is(1, modes[m])) &&
		       now_ms() < until)
			usleep(10000);
		printf("# server tenants asked for %s: %s\n", modes[m],
		       tenant_mode_is(0, modes[m]) &&
				       tenant_mode_is(1, modes[m])
			       ? "switched"
			       : "NOT switched");
		assert_true(tenant_mode_is(0, modes[m]));
		assert_true(tenant_mode_is(1, modes[m]));
		olen = sizeof(out);
		assert_int_equal(dg_call_sync(f, conn, FN_ECHO, "mode", 4, out,
					      &olen, 20000),
				 0);
		assert_memory_equal(out, "mode", 4);
	}
	dg_close(f, conn);
	dg_host_detach(cli);
}

static void test_refusals(void **state)
{
	struct dg_json *j;
	char *out;

	(void)state;
	/* A port change cannot be applied live: nothing is. */
	write_yaml(8, "static", (uint16_t)(E.port + 1));
	assert_int_equal(ctl(&out, "reload"), 1);
	free(out);
	j = ctl_json("get");
	assert_int_equal(dg_json_uint(dg_json_get(j, "settings"), "batch", 0),
			 32);
	dg_json_free(j);
	{
		char cmd[512];
		FILE *p;
		char line[512] = "";

		snprintf(cmd, sizeof(cmd), "%s --ctl %s reload 2>&1",
			 DG_CTL_BIN, E.ctl);
		p = popen(cmd, "r");
		assert_non_null(fgets(line, sizeof(line), p));
		pclose(p);
		assert_non_null(strstr(line, "port"));
		assert_non_null(strstr(line, "nothing applied"));
	}
	write_yaml(32, "key", E.port);
	assert_int_equal(ctl(NULL, "set mode 0 warp"), 1);
	assert_int_equal(ctl(NULL, "set mode 63 push"), 1);
	assert_int_equal(ctl(NULL, "set batch 0"), 1);
	assert_int_equal(ctl(NULL, "frobnicate"), 2);
	assert_int_equal(ctl(NULL, "set policy echo fastest"), 1);
}

static void test_evict(void **state)
{
	struct dg_json *j;
	const struct dg_json *t;
	uint64_t until;
	uint32_t victim = UINT32_MAX;
	char buf[16] = "after", out[16];
	size_t olen = sizeof(out);
	struct dg_host *cli = attach(1);
	int conn;

	(void)state;
	j = ctl_json("tenant list");
	/* srv2: the one-flow tenant attached second. */
	for (t = dg_json_get(j, "tenants")->child; t; t = t->next)
		if (dg_json_uint(t, "flows", 0) == 1 && victim == UINT32_MAX)
			victim = (uint32_t)dg_json_uint(t, "id", 0);
	dg_json_free(j);
	assert_true(victim != UINT32_MAX);
	{
		char a[64];

		snprintf(a, sizeof(a), "tenant evict %u", victim);
		assert_int_equal(ctl(NULL, "%s", a), 0);
	}
	until = now_ms() + 10000;
	while (dg_host_check(E.srv2) == 0 && now_ms() < until)
		usleep(10000);
	assert_int_equal(dg_host_check(E.srv2), -ENOTCONN);
	dg_server_stop(E.s2);
	dg_host_detach(E.srv2);
	E.srv2 = NULL;
	j = ctl_json("stats");
	assert_int_equal(dg_json_get(service(j, "echo"), "servers")->n, 2);
	dg_json_free(j);
	/* The service goes on with the other server. */
	conn = dg_connect(dg_host_flow(cli, 0), NULL, 0, "echo", 10000);
	assert_true(conn >= 0);
	assert_int_equal(dg_call_sync(dg_host_flow(cli, 0), conn, FN_ECHO, buf,
				      5, out, &olen, 10000),
			 0);
	assert_memory_equal(out, "after", 5);
	dg_close(dg_host_flow(cli, 0), conn);
	dg_host_detach(cli);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stats_and_prometheus),
		cmocka_unit_test(test_live_changes_under_load),
		cmocka_unit_test(test_set_mode_idle),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_evict),
	};

	dg_rxe_require();
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
