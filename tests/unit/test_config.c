// SPDX-License-Identifier: MIT
/*
 * The deployment description parser (dg_deploy): a complete file parses
 * into the expected values, defaults apply, tenant command lines are
 * built with their placeholders filled, and every kind of bad file is
 * rejected with "FILE:LINE: reason" naming the right line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dagger/ctrl.h"
#include "dagger/deploy.h"

static const char good[] =
	"# a full description\n"		       /* 1 */
	"name: demo\n"				       /* 2 */
	"ssh: ssh -p 2222 -o BatchMode=yes\n"	       /* 3 */
	"run_dir: /tmp/dg-run\n"		       /* 4 */
	"bin_dir: /opt/dagger/bin\n"		       /* 5 */
	"start_timeout: 12\n"			       /* 6 */
	"stop_timeout: 3\n"			       /* 7 */
	"machines:\n"				       /* 8 */
	"  - name: a\n"				       /* 9 */
	"    rdma_addr: 192.0.2.1\n"		       /* 10 */
	"    rdma_device: rxe0\n"		       /* 11 */
	"    gid_index: 1\n"			       /* 12 */
	"  - name: b\n"				       /* 13 */
	"    host: root@b.example\n"		       /* 14 */
	"    rdma_addr: 192.0.2.2\n"		       /* 15 */
	"    bin_dir: /usr/local/bin\n"		       /* 16 */
	"    launcher: /usr/local/bin/dagger-launch\n" /* 17 */
	"engines:\n"				       /* 18 */
	"  - name: nic-a\n"			       /* 19 */
	"    machine: a\n"			       /* 20 */
	"  - name: nic-b\n"			       /* 21 */
	"    machine: b\n"			       /* 22 */
	"    listen: 0.0.0.0\n"			       /* 23 */
	"    port: 7472\n"			       /* 24 */
	"    id: 9\n"				       /* 25 */
	"    batch: 32\n"			       /* 26 */
	"    cpu: 3\n"				       /* 27 */
	"    spin_us: 20\n"			       /* 28 */
	"    idle_us: 500\n"			       /* 29 */
	"    verbose: yes\n"			       /* 30 */
	"services:\n"				       /* 31 */
	"  - name: echo\n"			       /* 32 */
	"    policy: static\n"			       /* 33 */
	"    threads: 4\n"			       /* 34 */
	"  - name: kv\n"			       /* 35 */
	"tenants:\n"				       /* 36 */
	"  - name: srv\n"			       /* 37 */
	"    machine: b\n"			       /* 38 */
	"    engine: nic-b\n"			       /* 39 */
	"    app: echo-server\n"		       /* 40 */
	"  - name: cli\n"			       /* 41 */
	"    machine: a\n"			       /* 42 */
	"    engine: nic-a\n"			       /* 43 */
	"    app: echo-client\n"		       /* 44 */
	"    args: [-n, 100, -s, 64]\n"		       /* 45 */
	"  - name: tool\n"			       /* 46 */
	"    machine: a\n"			       /* 47 */
	"    engine: nic-a\n"			       /* 48 */
	"    service: kv\n"			       /* 49 */
	"    command: [kvtool, --at, \"{engine}\", \"{threads}/{policy}\"]\n"
	"    ready: up\n"     /* 51 */
	"  - name: sh\n"      /* 52 */
	"    machine: b\n"    /* 53 */
	"    engine: nic-a\n" /* 54 */
	"    command: echo {name} on {machine} via "
	"{engine_addr}:{engine_port}\n"
	"    oneshot: true\n"	 /* 56 */
	"    timeout: 90\n"	 /* 57 */
	"    mode: poll\n"	 /* 58 */
	"    spin_us: 7\n"	 /* 59 */
	"    busy_poll: true\n"; /* 60 */

static struct dg_deploy *parse_ok(const char *text)
{
	struct dg_deploy *d = NULL;
	char err[512];
	int rc = dg_deploy_parse(text, strlen(text), "t.yaml", &d, err,
				 sizeof(err));

	if (rc)
		fail_msg("unexpected error %d: %s", rc, err);
	return d;
}

static void test_good(void **state)
{
	struct dg_deploy *d = parse_ok(good);
	const struct dg_deploy_engine *e;
	const struct dg_deploy_tenant *t;

	(void)state;
	assert_string_equal(d->name, "demo");
	assert_string_equal(d->ssh[0], "ssh");
	assert_string_equal(d->ssh[1], "-p");
	assert_string_equal(d->ssh[3], "-o");
	assert_string_equal(d->ssh[4], "BatchMode=yes");
	assert_null(d->ssh[5]);
	assert_string_equal(d->run_dir, "/tmp/dg-run");
	assert_int_equal(d->start_timeout_s, 12);
	assert_int_equal(d->stop_timeout_s, 3);

	assert_int_equal(d->nmachines, 2);
	assert_null(d->machines[0].host);
	assert_string_equal(d->machines[0].rdma_device, "rxe0");
	assert_int_equal(d->machines[0].gid_index, 1);
	assert_int_equal(d->machines[0].line, 9);
	assert_string_equal(d->machines[1].host, "root@b.example");
	assert_int_equal(d->machines[1].gid_index, -1);
	assert_string_equal(dg_deploy_bin_dir(d, 0), "/opt/dagger/bin");
	assert_string_equal(dg_deploy_bin_dir(d, 1), "/usr/local/bin");
	assert_string_equal(d->machines[1].launcher,
			    "/usr/local/bin/dagger-launch");

	assert_int_equal(d->nengines, 2);
	e = &d->engines[0]; /* defaults */
	assert_string_equal(e->listen, "192.0.2.1");
	assert_int_equal(e->port, DG_DEPLOY_DEFAULT_PORT);
	assert_int_equal(e->id, 1);
	assert_int_equal(e->batch, 0);
	assert_int_equal(e->cpu, -1);
	assert_false(e->verbose);
	e = &d->engines[1];
	assert_int_equal(e->machine, 1);
	assert_string_equal(e->listen, "0.0.0.0");
	assert_string_equal(dg_deploy_engine_addr(d, e), "192.0.2.2");
	assert_int_equal(e->port, 7472);
	assert_int_equal(e->id, 9);
	assert_int_equal(e->batch, 32);
	assert_int_equal(e->cpu, 3);
	assert_int_equal(e->spin_us, 20);
	assert_int_equal(e->idle_us, 500);
	assert_true(e->verbose);
	assert_int_equal(e->line, 21);

	assert_int_equal(d->nservices, 2);
	assert_int_equal(d->services[0].policy, DG_LB_STATIC);
	assert_int_equal(d->services[0].threads, 4);
	assert_int_equal(d->services[1].policy, DG_LB_ROUND_ROBIN);
	assert_int_equal(d->services[1].threads, 1);

	assert_int_equal(d->ntenants, 4);
	t = &d->tenants[0];
	assert_int_equal(t->app, DG_APP_ECHO_SERVER);
	assert_string_equal(t->service_name, "echo");
	assert_int_equal(t->service, 0);
	assert_string_equal(t->ready, "serving");
	assert_false(t->oneshot);
	t = &d->tenants[1];
	assert_int_equal(t->app, DG_APP_ECHO_CLIENT);
	assert_true(t->oneshot);
	assert_null(t->ready);
	assert_int_equal(t->argc, 4);
	t = &d->tenants[2];
	assert_int_equal(t->app, DG_APP_COMMAND);
	assert_int_equal(t->service, 1);
	assert_string_equal(t->ready, "up");
	assert_int_equal(t->timeout_s, 0);
	t = &d->tenants[3];
	assert_non_null(t->shell);
	assert_true(t->oneshot);
	assert_int_equal(t->timeout_s, 90);
	assert_int_equal(t->mode, DG_MODE_POLL);
	assert_int_equal(t->spin_us, 7);
	assert_true(t->busy_poll);
	t = &d->tenants[0];
	assert_int_equal(t->mode, DG_MODE_DEFAULT);
	assert_int_equal(t->spin_us, 0);
	assert_false(t->busy_poll);

	assert_int_equal(dg_deploy_find_machine(d, "b"), 1);
	assert_int_equal(dg_deploy_find_engine(d, "nope"), -1);
	assert_int_equal(dg_deploy_find_service(d, "kv"), 1);
	assert_int_equal(dg_deploy_find_tenant(d, "tool"), 2);
	dg_deploy_free(d);
}

static void assert_argv(char **v, const char *const *want)
{
	size_t i;

	for (i = 0; want[i]; i++) {
		assert_non_null(v[i]);
		assert_string_equal(v[i], want[i]);
	}
	assert_null(v[i]);
}

static void test_argv(void **state)
{
	struct dg_deploy *d = parse_ok(good);
	static const char *const srv[] = {"/usr/local/bin/dagger-echo",
					  "server",
					  "--engine",
					  "192.0.2.2:7472",
					  "--threads",
					  "4",
					  "--lb",
					  "static",
					  NULL};
	static const char *const cli[] = {"/opt/dagger/bin/dagger-echo",
					  "client",
					  "--engine",
					  "192.0.2.1:7471",
					  "--remote",
					  "192.0.2.2:7472",
					  "--wait",
					  "12",
					  "-n",
					  "100",
					  "-s",
					  "64",
					  NULL};
	static const char *const tool[] = {"kvtool", "--at", "192.0.2.1:7471",
					   "1/rr", NULL};
	static const char *const sh[] = {
		"/bin/sh", "-c", "echo sh on b via 192.0.2.1:7471", NULL};
	char **v;

	(void)state;
	assert_int_equal(dg_deploy_tenant_argv(d, 0, &v), 0);
	assert_argv(v, srv);
	dg_deploy_argv_free(v);
	assert_int_equal(dg_deploy_tenant_argv(d, 1, &v), 0);
	assert_argv(v, cli);
	dg_deploy_argv_free(v);
	assert_int_equal(dg_deploy_tenant_argv(d, 2, &v), 0);
	assert_argv(v, tool);
	dg_deploy_argv_free(v);
	assert_int_equal(dg_deploy_tenant_argv(d, 3, &v), 0);
	assert_argv(v, sh);
	dg_deploy_argv_free(v);
	dg_deploy_free(d);
}

/* A client on the server's own engine gets no --remote. */
static void test_argv_same_engine(void **state)
{
	static const char text[] = "machines: [{name: a, rdma_addr: '::1'}]\n"
				   "engines: [{name: e, machine: a}]\n"
				   "tenants:\n"
				   "  - {name: s, machine: a, engine: e, app: "
				   "echo-server}\n"
				   "  - {name: c, machine: a, engine: e, app: "
				   "echo-client}\n";
	static const char *const cli[] = {"dagger-echo", "client", "--engine",
					  "[::1]:7471",	 "--wait", "30",
					  NULL};
	struct dg_deploy *d = parse_ok(text);
	char **v;

	(void)state;
	assert_int_equal(dg_deploy_tenant_argv(d, 1, &v), 0);
	assert_argv(v, cli);
	dg_deploy_argv_free(v);
	dg_deploy_free(d);
}

/* kvs kinds: dagger-kvs, service "kvs.Kvs" and its threads. */
static void test_argv_kvs(void **state)
{
	static const char text[] =
		"machines: [{name: a, rdma_addr: 10.0.0.1},"
		" {name: b, rdma_addr: 10.0.0.2}]\n"
		"engines: [{name: e, machine: a}, {name: f, machine: b}]\n"
		"services: [{name: kvs.Kvs, threads: 3}]\n"
		"tenants:\n"
		"  - {name: s, machine: b, engine: f, app: kvs-server}\n"
		"  - {name: c, machine: a, engine: e, app: kvs-client,"
		" args: [-c, set k v]}\n";
	static const char *const srv[] = {
		"dagger-kvs",	 "server",    "--engine",
		"10.0.0.2:7471", "--threads", "3",
		"--lb",		 "rr",	      NULL};
	static const char *const cli[] = {
		"dagger-kvs", "client",	       "--engine", "10.0.0.1:7471",
		"--remote",   "10.0.0.2:7471", "--wait",   "30",
		"-c",	      "set k v",       NULL};
	struct dg_deploy *d = parse_ok(text);
	char **v;

	(void)state;
	assert_string_equal(d->tenants[0].ready, "serving");
	assert_false(d->tenants[0].oneshot);
	assert_true(d->tenants[1].oneshot);
	assert_int_equal(d->tenants[1].service, 0);
	assert_int_equal(dg_deploy_tenant_argv(d, 0, &v), 0);
	assert_argv(v, srv);
	dg_deploy_argv_free(v);
	assert_int_equal(dg_deploy_tenant_argv(d, 1, &v), 0);
	assert_argv(v, cli);
	dg_deploy_argv_free(v);
	dg_deploy_free(d);
}

/* A minimal valid description the bad cases below change one line of. */
#define HEAD                                                                   \
	"machines:\n"		    /* 1 */                                    \
	"  - name: a\n"		    /* 2 */                                    \
	"    rdma_addr: 10.0.0.1\n" /* 3 */                                    \
	"engines:\n"		    /* 4 */                                    \
	"  - name: e\n"		    /* 5 */                                    \
	"    machine: a\n"	    /* 6 */

struct bad {
	const char *text;
	const char *want; /* expected message, after "t.yaml:" */
};

static const struct bad bads[] = {
	/* syntax */
	{"machines: [a, b\n", "2: not valid YAML"},
	{"machines:\n  - name: a\n   bad indent: x\n", "3: not valid YAML"},
	{"", "1: the description is empty"},
	{HEAD "---\nname: x\n", "8: a second document"},
	{"- a\n- b\n", "1: description must be a mapping"},
	/* unknown keys, typos */
	{HEAD "machnes: []\n", "7: description: unknown key \"machnes\""},
	{"machines:\n  - name: a\n    rdma_adr: 10.0.0.1\n",
	 "3: machine: unknown key \"rdma_adr\" (known: name, host"},
	{HEAD "    prot: 1\n", "7: engine: unknown key \"prot\""},
	{HEAD "services:\n  - name: s\n    polcy: rr\n",
	 "9: service: unknown key \"polcy\""},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engin: e\n",
	 "10: tenant: unknown key \"engin\""},
	/* missing required keys */
	{"engines: []\n", "1: description: missing required key \"machines\""},
	{"machines:\n  - name: a\n    rdma_addr: 10.0.0.1\n",
	 "1: description: missing required key \"engines\""},
	{"machines:\n  - rdma_addr: 10.0.0.1\nengines: []\n",
	 "2: machine: missing required key \"name\""},
	{"machines:\n  - name: a\nengines: []\n",
	 "2: machine: missing required key \"rdma_addr\""},
	{HEAD "  - name: f\n", "7: engine: missing required key \"machine\""},
	{HEAD "tenants:\n  - name: t\n    machine: a\n",
	 "8: tenant: missing required key \"engine\""},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n",
	 "8: tenant \"t\": missing required key \"command\""},
	{"machines: []\nengines: []\n", "1: \"machines\" lists no machine"},
	{HEAD "services:\n  - policy: rr\n",
	 "8: service: missing required key \"name\""},
	/* wrong types and ranges */
	{HEAD "    port: abc\n", "7: engine: \"port\" must be a number, not "
				 "\"abc\""},
	{HEAD "    port: 70000\n", "7: engine: \"port\" is 70000, out of "
				   "range 1..65535"},
	{HEAD "    port: 0\n", "7: engine: \"port\" is 0, out of range"},
	{HEAD "    port: -5\n", "7: engine: \"port\" must be a number"},
	{HEAD "    port: [1]\n", "7: engine: \"port\" must be a number, not "
				 "a list"},
	{HEAD "    cpu: 1.5\n", "7: engine: \"cpu\" must be a number"},
	{HEAD "    cpu: 1024\n", "7: engine: \"cpu\" is 1024, out of range "
				 "0..1023"},
	{HEAD "    verbose: maybe\n", "7: engine: \"verbose\" must be true "
				      "or false"},
	{HEAD "    listen: myhost\n", "7: engine: \"listen\" must be a "
				      "numeric IPv4 or IPv6 address"},
	{HEAD "    name: x\n", "7: engine: duplicate key \"name\" (first at "
			       "line 5)"},
	{"machines:\n  - name: a\n    rdma_addr: 10.0.0.1\n    gid_index: "
	 "300\nengines: []\n",
	 "4: machine: \"gid_index\" is 300, out of range 0..255"},
	{"machines:\n  - name: a\n    rdma_addr: 10.0.0.1\n    host: a b\n",
	 "4: machine: \"host\" must be one ssh destination"},
	{"machines:\n  - name: a b\n", "2: machine: \"name\" may hold only"},
	{"machines:\n  - name: -a\n", "2: machine: \"name\" must not start"},
	{"machines:\n  - name:\n", "2: machine: \"name\" must not be empty"},
	{"machines: a\n", "1: \"machines\" must be a list"},
	{"machines:\n  - a\n", "2: machine must be a mapping"},
	{HEAD "start_timeout: 0\n", "7: description: \"start_timeout\" is 0"},
	{HEAD "ssh: []\n", "7: \"ssh\" is empty"},
	{HEAD "ssh: [ssh, [x]]\n", "7: description: every item of \"ssh\""},
	/* names and references */
	{"machines:\n  - name: a\n    rdma_addr: 10.0.0.1\n  - name: a\n",
	 "4: duplicate machine name \"a\" (first at line 2)"},
	{HEAD "  - name: e\n    machine: a\n    port: 1\n",
	 "7: duplicate engine name \"e\" (first at line 5)"},
	{HEAD "  - name: f\n    machine: zz\n", "8: engine: unknown machine "
						"\"zz\""},
	{HEAD "  - name: f\n    machine: a\n",
	 "7: engine \"f\": 10.0.0.1 port 7471 is already engine \"e\"'s "
	 "(line 5)"},
	{HEAD "tenants:\n  - name: t\n    machine: b\n    engine: e\n",
	 "9: tenant: unknown machine \"b\""},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: x\n",
	 "10: tenant: unknown engine \"x\""},
	{HEAD "tenants:\n  - {name: t, machine: a, engine: e, command: [x]}\n"
	      "  - {name: t, machine: a, engine: e, command: [x]}\n",
	 "9: duplicate tenant name \"t\" (first at line 8)"},
	{HEAD "services: [{name: s}, {name: s}]\n",
	 "7: duplicate service name \"s\""},
	{HEAD "tenants:\n  - {name: t, machine: a, engine: e, command: [x],"
	      " service: nope}\n",
	 "8: tenant \"t\": unknown service \"nope\""},
	/* services */
	{HEAD "services:\n  - name: s\n    policy: fastest\n",
	 "9: service: unknown policy \"fastest\" (known: rr, static, random, "
	 "key)"},
	{HEAD "services:\n  - name: s\n    threads: 0\n",
	 "9: service: \"threads\" is 0, out of range 1..64"},
	{HEAD "services:\n  - name: s\n    threads: 65\n",
	 "9: service: \"threads\" is 65"},
	{HEAD "services:\n  - name: s\n    workers: 1025\n",
	 "9: service: \"workers\" is 1025, out of range 0..1024"},
	{HEAD "    ctl: run/e.ctl\n",
	 "7: engine \"e\": ctl must be an absolute path of at most 107 "
	 "bytes"},
	/* tenants */
	{HEAD "tenants:\n  - {name: t, machine: a, engine: e, app: kvs}\n",
	 "8: tenant: unknown app \"kvs\" (known: echo-server, echo-client, "
	 "kvs-server, kvs-client, command)"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    app: echo-server\n    command: [x]\n",
	 "12: tenant \"t\": \"command\" does not go with app echo-server"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    args: [y]\n",
	 "12: tenant \"t\": \"args\" goes with an app kind"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: []\n",
	 "11: tenant: \"command\" is empty"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x, \"{engin}\"]\n",
	 "11: tenant: unknown placeholder \"{engin}\""},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: \"x {engine\"\n",
	 "11: tenant: unterminated placeholder"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    app: echo-server\n    service: kv\n",
	 "12: tenant \"t\": app echo-server serves service \"echo\", not "
	 "\"kv\""},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    oneshot: true\n    ready: hi\n",
	 "13: tenant \"t\": \"ready\" does not go with oneshot"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    oneshot: 1\n",
	 "12: tenant: \"oneshot\" must be true or false"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    timeout: 5\n",
	 "12: tenant \"t\": \"timeout\" goes with oneshot tenants only"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    oneshot: true\n    timeout: 0\n",
	 "13: tenant: \"timeout\" is 0, out of range"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    mode: turbo\n",
	 "12: tenant \"t\": unknown mode \"turbo\" (poll, doorbell or push)"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    mode: [poll]\n",
	 "12: tenant: \"mode\" must be"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    spin_us: 20000000\n",
	 "12: tenant: \"spin_us\" is 20000000, out of range 0..10000000"},
	{HEAD "tenants:\n  - name: t\n    machine: a\n    engine: e\n"
	      "    command: [x]\n    busy_poll: sometimes\n",
	 "12: tenant: \"busy_poll\" must be true or false"},
};

static void test_bad(void **state)
{
	size_t i, failed = 0;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct dg_deploy *d = NULL;
		char err[512], want[512];
		int rc = dg_deploy_parse(bads[i].text, strlen(bads[i].text),
					 "t.yaml", &d, err, sizeof(err));

		snprintf(want, sizeof(want), "t.yaml:%s", bads[i].want);
		if (rc != -EINVAL || d ||
		    strncmp(err, want, strlen(want)) != 0) {
			print_error(
				"case %zu: rc %d\n  got:  %s\n  want: %s...\n",
				i, rc, rc ? err : "(accepted)", want);
			failed++;
		}
		dg_deploy_free(d);
	}
	assert_int_equal(failed, 0);
}

static void test_load(void **state)
{
	char path[] = "/tmp/dg-test-config-XXXXXX", err[512];
	struct dg_deploy *d = NULL;
	int fd;

	(void)state;
	assert_int_equal(dg_deploy_load("/nonexistent/x.yaml", NULL, &d, err,
					sizeof(err)),
			 -ENOENT);
	assert_string_equal(err,
			    "/nonexistent/x.yaml: No such file or directory");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good, strlen(good)), (ssize_t)strlen(good));
	close(fd);
	assert_int_equal(dg_deploy_load(path, NULL, &d, err, sizeof(err)), 0);
	assert_string_equal(d->path, path);
	assert_int_equal(d->ntenants, 4);
	dg_deploy_free(d);
	/* A file that is not text: a clean error, not a crash. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\x00\xff\xfe\x01:", 5), 5);
	close(fd);
	d = NULL;
	assert_int_equal(dg_deploy_load(path, "x", &d, err, sizeof(err)),
			 -EINVAL);
	assert_null(d);
	assert_true(!strncmp(err, "x:1: not valid YAML", 19));
	unlink(path);
}

/* workers (app servers get --workers), policy key, an engine's ctl. */
static void test_workers_ctl(void **state)
{
	static const char text[] =
		"machines: [{name: a, rdma_addr: 10.0.0.1}]\n"
		"engines: [{name: e, machine: a, ctl: /run/x/e.ctl},"
		" {name: f, machine: a, port: 7472}]\n"
		"services: [{name: echo, threads: 2, workers: 8, policy: "
		"key}]\n"
		"tenants:\n"
		"  - {name: s, machine: a, engine: e, app: echo-server}\n"
		"  - {name: c, machine: a, engine: e, service: echo,"
		" command: [x, \"{workers}\"]}\n";
	static const char *const srv[] = {
		"dagger-echo", "server", "--engine", "10.0.0.1:7471",
		"--threads",   "2",	 "--lb",     "key",
		"--workers",   "8",	 NULL};
	static const char *const cmd[] = {"x", "8", NULL};
	struct dg_deploy *d = parse_ok(text);
	char path[128], want[128];
	char **v;

	(void)state;
	assert_true(d->services[0].policy_set);
	assert_int_equal(d->services[0].policy, DG_LB_KEY);
	assert_int_equal(dg_deploy_tenant_argv(d, 0, &v), 0);
	assert_argv(v, srv);
	dg_deploy_argv_free(v);
	assert_int_equal(dg_deploy_tenant_argv(d, 1, &v), 0);
	assert_argv(v, cmd);
	dg_deploy_argv_free(v);
	assert_int_equal(
		dg_deploy_ctl_path(&d->engines[0], false, path, sizeof(path)),
		0);
	assert_string_equal(path, "/run/x/e.ctl");
	/* The default: RUN/NAME.ctl, as dagger-nic and dagger-ctl agree. */
	assert_int_equal(
		dg_deploy_ctl_path(&d->engines[1], false, path, sizeof(path)),
		0);
	assert_int_equal(dg_ctl_default_path("f", false, want, sizeof(want)),
			 0);
	assert_string_equal(path, want);
	assert_non_null(strstr(path, "/f.ctl"));
	dg_deploy_free(d);
}

static void test_policy(void **state)
{
	(void)state;
	assert_int_equal(dg_deploy_policy_parse("rr"), DG_LB_ROUND_ROBIN);
	assert_int_equal(dg_deploy_policy_parse("round-robin"),
			 DG_LB_ROUND_ROBIN);
	assert_int_equal(dg_deploy_policy_parse("static"), DG_LB_STATIC);
	assert_int_equal(dg_deploy_policy_parse("random"), DG_LB_RANDOM);
	assert_int_equal(dg_deploy_policy_parse("key"), DG_LB_KEY);
	assert_string_equal(dg_deploy_policy_name(DG_LB_KEY), "key");
	assert_int_equal(dg_deploy_policy_parse("RR"), -EINVAL);
	assert_string_equal(dg_deploy_policy_name(DG_LB_RANDOM), "random");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_argv_same_engine),
		cmocka_unit_test(test_argv_kvs),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_workers_ctl),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
