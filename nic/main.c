// SPDX-License-Identifier: MIT
/*
 * dagger-nic: the NIC engine as a program. Accepts host tenants over RDMA
 * (rdma_cm) on --listen ADDR:PORT, and host processes of this machine on
 * the unix socket --shm PATH (shared memory, no RDMA), and serves them
 * until SIGINT/SIGTERM.
 * Its settings come from flags, or from an engine of a deployment
 * description (--config FILE --engine NAME, docs/DEPLOY.md), with flags
 * given on the command line overriding the file.
 * SIGUSR1 prints per-tenant, per-flow counters; they are printed at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dagger/deploy.h"
#include "engine.h"

static struct dg_nic *the_nic;
static volatile sig_atomic_t want_stats, want_reload;

static void on_stop(int sig)
{
	(void)sig;
	if (the_nic)
		dg_nic_stop(the_nic);
}

static void on_usr1(int sig)
{
	(void)sig;
	want_stats = 1;
	/* The loop notices at its next stop check; see below. */
	if (the_nic)
		dg_nic_stop(the_nic);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dagger-nic --listen ADDR [--port PORT] [options]\n"
		"       dagger-nic --shm PATH [options]\n"
		"       dagger-nic --config FILE [--engine NAME] [options]\n"
		"The NIC engine: serves host tenants that attach over RDMA,\n"
		"and processes of this machine that attach by shared memory.\n"
		"  -c, --config FILE   take the settings of one engine of the\n"
		"                      deployment description FILE (YAML, see\n"
		"                      docs/DEPLOY.md): listen, port, id, "
		"batch,\n"
		"                      cpu, spin_us, idle_us, "
		"peer_timeout_ms,\n"
		"                      poll_max_us, hold_us, verbose, and the\n"
		"                      machine's rdma_device (checked "
		"present)\n"
		"  -e, --engine NAME   which engine of FILE (default: the only "
		"one)\n"
		"      --config-label NAME  call FILE NAME in messages (the\n"
		"                      original of a copy)\n"
		"  -l, --listen ADDR   RDMA device address to accept on\n"
		"  -s, --shm PATH      unix socket for processes of this "
		"machine\n"
		"                      (shared memory, no RDMA, no root; "
		"applications\n"
		"                      use --engine unix:PATH); its mode "
		"follows the\n"
		"                      umask, so its directory's permissions "
		"decide who\n"
		"                      may attach\n"
		"  -p, --port PORT     rdma_cm port (default 7471)\n"
		"  -b, --batch N       TX slots per RDMA READ (default 16)\n"
		"  -i, --id N          engine id (default 1; in FILE: its "
		"position)\n"
		"  -C, --cpu N         pin the engine to CPU N\n"
		"      --peer-timeout MS  declare a peer engine down after MS\n"
		"                      without a message from it (default "
		"3000;\n"
		"                      links send keepalives at MS/6)\n"
		"      --poll-max-us N  longest interval between READs of an "
		"idle\n"
		"                      flow's TX ring (default 1000)\n"
		"      --hold-us N     longest a response waits for room at a "
		"client\n"
		"                      that does not read, holding the others "
		"of its\n"
		"                      server or link; then the client is "
		"answered\n"
		"                      DROPPED for it (default 100000)\n"
		"      --spin-us N     spin this long without work before "
		"sleeping\n"
		"                      until there is some (default 50)\n"
		"      --idle-us N     sleep at most this long at a time "
		"(default 100000)\n"
		"      --busy-poll     never sleep (a dedicated core)\n"
		"      --ctl PATH      the control socket (dagger-ctl); "
		"default: the\n"
		"                      description's ctl, else "
		"/run/dagger/NAME.ctl\n"
		"                      (or $XDG_RUNTIME_DIR/dagger/...), NAME "
		"the engine's\n"
		"                      name or dagger-nic-ADDR-PORT; mode "
		"0660\n"
		"      --no-ctl        no control socket\n"
		"  -v, --verbose       log tenants and services\n"
		"  -n, --dry-run       print the resolved settings and exit\n"
		"Flags given on the command line override FILE.\n"
		"Signals: SIGUSR1 prints counters; SIGHUP re-reads FILE "
		"(as dagger-ctl\n"
		"reload); SIGINT/SIGTERM stop.\n"
		"Exit status: 0 stopped by a signal, 1 cannot start (the "
		"cause\n"
		"is printed), 2 bad arguments or description.\n");
}

/* A decimal or 0x number in [min, max], or an error naming the flag. */
static int num(const char *flag, const char *s, unsigned long min,
	       unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 0);
	(void)flag;
	if (!*s || *end || errno || *s == '-' || *out < min || *out > max)
		return -EINVAL;
	return 0;
}

/* Why listening failed, in words a user can act on. */
static const char *listen_hint(int err)
{
	switch (err) {
	case ENODEV:
		return " (no RDMA device on this machine: load the NIC's "
		       "driver or rdma_rxe, see docs/DEPLOY.md)";
	case EADDRNOTAVAIL:
		return " (the address is not that of an RDMA device on this "
		       "machine: check `rdma link` and `ip addr`)";
	case EADDRINUSE:
		return " (another program listens on this address and port)";
	case EINVAL:
		return " (not a numeric IP address)";
	case EACCES:
	case EPERM:
		return " (no permission: /dev/infiniband/rdma_cm)";
	default:
		return "";
	}
}

/* The settings flags gave, to apply over the description's. */
struct flags {
	const char *listen, *shm, *port, *batch, *id, *cpu, *peer_timeout,
		*poll_max, *spin, *idle, *ctl, *hold;
	bool verbose, busy_poll, no_ctl;
};

/* The engine's settings, resolved from the description and the flags. */
struct conf {
	struct dg_nic_opts o;
	int cpu;
	const char *dev, *dev_machine; /* the machine's device, to check */
	char ctl[108];		       /* "": no control socket */
	bool ctl_default;	       /* ctl is the default path */
	char where[256];	       /* " (engine NAME, FILE:LINE)" or "" */
};

/* The running engine, for reload (SIGHUP, dagger-ctl reload). */
static struct {
	const char *config, *engine, *label;
	struct flags fl;
	struct dg_deploy *d;
	struct conf c;
} app;

/*
 * Resolves c from description d (may be NULL) and engine name, with the
 * flags over it. 0, or 2 with the reason in err.
 */
static int resolve(const struct dg_deploy *d, const char *engine,
		   const struct flags *fl, struct conf *c, char *err,
		   size_t errlen)
{
	unsigned long v;

	memset(c, 0, sizeof(*c));
	c->o.port = 7471;
	c->o.engine_id = 1;
	c->cpu = -1;
	if (d) {
		const struct dg_deploy_engine *e;
		const struct dg_deploy_machine *m;
		long i;

		if (!engine && d->nengines != 1) {
			snprintf(err, errlen,
				 "%s names %zu engines: choose one with "
				 "--engine NAME",
				 d->path, d->nengines);
			return 2;
		}
		i = engine ? dg_deploy_find_engine(d, engine) : 0;
		if (i < 0) {
			snprintf(err, errlen, "%s: no engine \"%s\"", d->path,
				 engine);
			return 2;
		}
		e = &d->engines[i];
		m = &d->machines[e->machine];
		snprintf(c->where, sizeof(c->where), " (engine \"%s\", %s:%d)",
			 e->name, d->path, e->line);
		c->o.listen_addr = e->listen;
		c->o.shm_path = e->shm;
		c->o.port = e->port;
		c->o.engine_id = e->id;
		c->o.read_batch = e->batch;
		c->o.spin_us = e->spin_us;
		c->o.idle_us = e->idle_us;
		c->o.peer_timeout_ms = e->peer_timeout_ms;
		c->o.poll_max_us = e->poll_max_us;
		c->o.hold_us = e->hold_us;
		c->o.verbose = e->verbose;
		c->o.busy_poll = e->busy_poll;
		c->cpu = e->cpu;
		if (!fl->listen) {
			c->dev = m->rdma_device;
			c->dev_machine = m->name;
		}
		if (!fl->ctl && !fl->no_ctl) {
			c->ctl_default = !e->ctl;
			if (dg_deploy_ctl_path(e, true, c->ctl, sizeof(c->ctl)))
				c->ctl[0] = 0;
		}
	}
	if (fl->listen)
		c->o.listen_addr = fl->listen;
	if (fl->shm)
		c->o.shm_path = fl->shm;
	if (fl->verbose)
		c->o.verbose = true;
#define NUM(flag, str, min, max, dst)                                          \
	do {                                                                   \
		if (str) {                                                     \
			if (num(flag, str, min, max, &v)) {                    \
				snprintf(err, errlen,                          \
					 "bad %s \"%s\" (%lu..%lu)", flag,     \
					 str, (unsigned long)(min),            \
					 (unsigned long)(max));                \
				return 2;                                      \
			}                                                      \
			dst = v;                                               \
		}                                                              \
	} while (0)
	NUM("--port", fl->port, 0, 65535, c->o.port);
	NUM("--batch", fl->batch, 1, 1024, c->o.read_batch);
	NUM("--id", fl->id, 1, UINT32_MAX, c->o.engine_id);
	NUM("--peer-timeout", fl->peer_timeout, 60, 300000,
	    c->o.peer_timeout_ms);
	NUM("--poll-max-us", fl->poll_max, 1, 1000000, c->o.poll_max_us);
	NUM("--hold-us", fl->hold, 1, 10000000, c->o.hold_us);
	NUM("--spin-us", fl->spin, 1, 10000000, c->o.spin_us);
	NUM("--idle-us", fl->idle, 1, 10000000, c->o.idle_us);
	if (fl->busy_poll)
		c->o.busy_poll = true;
	NUM("--cpu", fl->cpu, 0, CPU_SETSIZE - 1, c->cpu);
#undef NUM
	if (!c->o.listen_addr && !c->o.shm_path) {
		snprintf(err, errlen,
			 "nothing to listen on: --listen ADDR or "
			 "--shm PATH (or --config FILE)");
		return 2;
	}
	if (fl->ctl) {
		snprintf(c->ctl, sizeof(c->ctl), "%s", fl->ctl);
	} else if (!fl->no_ctl && !d) {
		/* Named after what the engine listens on. */
		char name[160];
		const char *b =
			c->o.shm_path ? strrchr(c->o.shm_path, '/') : NULL;

		if (c->o.listen_addr)
			snprintf(name, sizeof(name), "dagger-nic-%s-%u",
				 c->o.listen_addr, c->o.port);
		else
			snprintf(name, sizeof(name), "dagger-nic-shm-%s",
				 b ? b + 1 : c->o.shm_path);
		c->ctl_default = true;
		if (dg_ctl_default_path(name, true, c->ctl, sizeof(c->ctl)))
			c->ctl[0] = 0;
	}
	return 0;
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

/* Appends to msg (of len bytes, NUL-terminated). */
static void say(char *msg, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(char *msg, size_t len, const char *fmt, ...)
{
	size_t k = strlen(msg);
	va_list ap;

	if (k + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(msg + k, len - k, fmt, ap);
	va_end(ap);
}

/*
 * The services' policies the description sets (those with a policy key):
 * set in the engine; those old set and d no longer does, forgotten.
 */
static void apply_policies(const struct dg_deploy *old,
			   const struct dg_deploy *d, char *msg, size_t len)
{
	size_t i;
	long j;
	int rc;

	for (i = 0; d && i < d->nservices; i++) {
		const struct dg_deploy_service *s = &d->services[i];

		if (!s->policy_set)
			continue;
		j = old ? dg_deploy_find_service(old, s->name) : -1;
		if (j >= 0 && old->services[j].policy_set &&
		    old->services[j].policy == s->policy)
			continue;
		rc = dg_nic_set_policy(the_nic, s->name, s->policy);
		if (msg && rc)
			say(msg, len, "policy of %s: %s; ", s->name,
			    strerror(-rc));
		else if (msg)
			say(msg, len, "policy of %s -> %s; ", s->name,
			    dg_deploy_policy_name(s->policy));
	}
	for (i = 0; old && i < old->nservices; i++) {
		const struct dg_deploy_service *s = &old->services[i];

		if (!s->policy_set)
			continue;
		j = d ? dg_deploy_find_service(d, s->name) : -1;
		if (j >= 0 && d->services[j].policy_set)
			continue;
		dg_nic_set_policy(the_nic, s->name, -1);
		if (msg)
			say(msg, len, "policy of %s no longer set; ", s->name);
	}
}

/*
 * Re-reads the description and applies what changed: the settings that
 * can change live, the CPU, the services' policies. Refuses, applying
 * nothing, when a setting changed that cannot change while the engine
 * runs (listen, port, shm, id, ctl). On the loop thread.
 */
static int reload(void *arg, char *msg, size_t len)
{
	static const char *const why =
		"cannot change while the engine runs (restart it)";
	struct dg_deploy *d = NULL;
	const struct dg_nic_opts *a;
	const struct dg_nic_opts *b;
	struct conf c;
	char err[1024];
	uint32_t i, cur, want;
	size_t k;
	int rc;

	(void)arg;
	msg[0] = 0;
	if (!app.config) {
		snprintf(msg, len,
			 "no description to re-read (the engine was "
			 "started without --config)");
		return -EINVAL;
	}
	rc = dg_deploy_load(app.config, app.label, &d, err, sizeof(err));
	if (rc) {
		snprintf(msg, len, "%s; nothing applied", err);
		return rc;
	}
	if (resolve(d, app.engine, &app.fl, &c, err, sizeof(err))) {
		snprintf(msg, len, "%s; nothing applied", err);
		dg_deploy_free(d);
		return -EINVAL;
	}
	a = &app.c.o;
	b = &c.o;
	if (!same(a->listen_addr, b->listen_addr))
		say(msg, len, "listen %s -> %s %s; ",
		    a->listen_addr ? a->listen_addr : "-",
		    b->listen_addr ? b->listen_addr : "-", why);
	if (a->port != b->port)
		say(msg, len, "port %u -> %u %s; ", a->port, b->port, why);
	if (!same(a->shm_path, b->shm_path))
		say(msg, len, "shm %s -> %s %s; ",
		    a->shm_path ? a->shm_path : "-",
		    b->shm_path ? b->shm_path : "-", why);
	if (a->engine_id != b->engine_id)
		say(msg, len, "id %u -> %u %s; ", a->engine_id, b->engine_id,
		    why);
	if (strcmp(app.c.ctl, c.ctl))
		say(msg, len, "ctl %s -> %s %s; ",
		    app.c.ctl[0] ? app.c.ctl : "-", c.ctl[0] ? c.ctl : "-",
		    why);
	if (msg[0]) {
		k = strlen(msg);
		if (k >= 2)
			msg[k - 2] = 0;
		say(msg, len, "; nothing applied");
		dg_deploy_free(d);
		return -EPERM;
	}
	if (c.cpu != app.c.cpu && c.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(c.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			snprintf(msg, len, "cpu %d: %s; nothing applied", c.cpu,
				 strerror(errno));
			dg_deploy_free(d);
			return -errno;
		}
		say(msg, len, "cpu %d -> %d; ", app.c.cpu, c.cpu);
	}
	for (i = 0; i < DG_NIC_SET_N; i++) {
		/* The engine's defaults (dg_nic_create), for keys unset. */
		static const uint32_t def[DG_NIC_SET_N] = {
			16, 50, 100000, 1000, 3000, 0, 100000};
		const uint32_t *vals[DG_NIC_SET_N] = {
			&b->read_batch,	 &b->spin_us,	      &b->idle_us,
			&b->poll_max_us, &b->peer_timeout_ms, NULL,
			&b->hold_us};

		cur = dg_nic_setting_get(the_nic, i);
		want = vals[i] ? or_default(*vals[i], def[i]) : b->verbose;
		if (cur == want)
			continue;
		rc = dg_nic_set(the_nic, i, want);
		if (rc)
			say(msg, len, "%s %u: %s; ", dg_nic_setting_name(i),
			    want, strerror(-rc));
		else
			say(msg, len, "%s %u -> %u; ", dg_nic_setting_name(i),
			    cur, want);
	}
	apply_policies(app.d, d, msg, len);
	dg_deploy_free(app.d);
	app.d = d;
	/* The engine's copies of listen and shm (unchanged) stay ours. */
	c.o.listen_addr = app.c.o.listen_addr;
	c.o.shm_path = app.c.o.shm_path;
	app.c = c;
	k = strlen(msg);
	if (k >= 2)
		msg[k - 2] = 0;
	else
		snprintf(msg, len, "nothing changed");
	return 0;
}

static void on_hup(int sig)
{
	(void)sig;
	want_reload = 1;
	if (the_nic)
		dg_nic_stop(the_nic);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"config", required_argument, NULL, 'c'},
		{"engine", required_argument, NULL, 'e'},
		{"config-label", required_argument, NULL, 'L'},
		{"listen", required_argument, NULL, 'l'},
		{"shm", required_argument, NULL, 's'},
		{"port", required_argument, NULL, 'p'},
		{"batch", required_argument, NULL, 'b'},
		{"id", required_argument, NULL, 'i'},
		{"cpu", required_argument, NULL, 'C'},
		{"peer-timeout", required_argument, NULL, 'T'},
		{"poll-max-us", required_argument, NULL, 'M'},
		{"hold-us", required_argument, NULL, 'H'},
		{"spin-us", required_argument, NULL, 'S'},
		{"idle-us", required_argument, NULL, 'I'},
		{"busy-poll", no_argument, NULL, 'B'},
		{"ctl", required_argument, NULL, 'k'},
		{"no-ctl", no_argument, NULL, 'K'},
		{"verbose", no_argument, NULL, 'v'},
		{"dry-run", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct sigaction sa = {0};
	struct flags *fl = &app.fl;
	struct conf *cf = &app.c;
	struct dg_nic_opts o;
	const char *what;
	bool dry = false;
	char err[1024];
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:e:l:s:p:b:i:C:vnh", lo, NULL)) !=
	       -1) {
		switch (c) {
		case 'c':
			app.config = optarg;
			break;
		case 'e':
			app.engine = optarg;
			break;
		case 'L':
			app.label = optarg;
			break;
		case 'l':
			fl->listen = optarg;
			break;
		case 's':
			fl->shm = optarg;
			break;
		case 'p':
			fl->port = optarg;
			break;
		case 'b':
			fl->batch = optarg;
			break;
		case 'i':
			fl->id = optarg;
			break;
		case 'C':
			fl->cpu = optarg;
			break;
		case 'T':
			fl->peer_timeout = optarg;
			break;
		case 'M':
			fl->poll_max = optarg;
			break;
		case 'H':
			fl->hold = optarg;
			break;
		case 'S':
			fl->spin = optarg;
			break;
		case 'I':
			fl->idle = optarg;
			break;
		case 'B':
			fl->busy_poll = true;
			break;
		case 'k':
			fl->ctl = optarg;
			break;
		case 'K':
			fl->no_ctl = true;
			break;
		case 'v':
			fl->verbose = true;
			break;
		case 'n':
			dry = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "dagger-nic: unexpected argument \"%s\"\n",
			argv[optind]);
		return 2;
	}
	if (app.engine && !app.config) {
		fprintf(stderr, "dagger-nic: --engine needs --config FILE\n");
		return 2;
	}
	if (fl->ctl && fl->no_ctl) {
		fprintf(stderr, "dagger-nic: --ctl and --no-ctl together\n");
		return 2;
	}
	if (fl->ctl && (fl->ctl[0] != '/' || strlen(fl->ctl) >= 108)) {
		fprintf(stderr,
			"dagger-nic: --ctl must be an absolute path of at "
			"most 107 bytes\n");
		return 2;
	}
	if (app.config) {
		rc = dg_deploy_load(app.config, app.label, &app.d, err,
				    sizeof(err));
		if (rc) {
			fprintf(stderr, "dagger-nic: %s\n", err);
			return 2;
		}
	}
	if (resolve(app.d, app.engine, fl, cf, err, sizeof(err))) {
		if (!strncmp(err, "nothing to listen", 17))
			usage(stderr);
		else
			fprintf(stderr, "dagger-nic: %s\n", err);
		goto bad;
	}
	/*
	 * The engine keeps these pointers; reload frees the description
	 * they point into (and refuses to change them): copies of our own.
	 */
	if ((cf->o.listen_addr &&
	     !(cf->o.listen_addr = strdup(cf->o.listen_addr))) ||
	    (cf->o.shm_path && !(cf->o.shm_path = strdup(cf->o.shm_path)))) {
		fprintf(stderr, "dagger-nic: out of memory\n");
		goto bad;
	}
	o = cf->o;
	what = cf->where;
	if (dry) {
		printf("listen %s\nshm %s\nport %u\nid %u\nbatch %u\ncpu %d\n"
		       "spin_us %u\nidle_us %u\nbusy_poll %d\n"
		       "peer_timeout_ms %u\n"
		       "poll_max_us %u\nhold_us %u\nverbose %d\nctl %s\n",
		       o.listen_addr ? o.listen_addr : "-",
		       o.shm_path ? o.shm_path : "-", o.port, o.engine_id,
		       o.read_batch ? o.read_batch : 16, cf->cpu, o.spin_us,
		       o.idle_us, o.busy_poll,
		       o.peer_timeout_ms ? o.peer_timeout_ms : 3000u,
		       o.poll_max_us ? o.poll_max_us : 1000u,
		       o.hold_us ? o.hold_us : 100000u, o.verbose,
		       cf->ctl[0] ? cf->ctl : "-");
		dg_deploy_free(app.d);
		return 0;
	}
	/* The machine's device, unless --listen moved the engine off it. */
	if (cf->dev) {
		char path[PATH_MAX];
		struct stat st;

		snprintf(path, sizeof(path), "/sys/class/infiniband/%s",
			 cf->dev);
		if (stat(path, &st)) {
			fprintf(stderr,
				"dagger-nic: RDMA device \"%s\" of machine "
				"\"%s\" is not here (%s: %s)%s\n",
				cf->dev, cf->dev_machine, path, strerror(errno),
				what);
			dg_deploy_free(app.d);
			return 1;
		}
	}
	if (cf->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cf->cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			fprintf(stderr,
				"dagger-nic: cannot pin to CPU %d: %s%s\n",
				cf->cpu, strerror(errno), what);
			dg_deploy_free(app.d);
			return 1;
		}
	}
	rc = dg_nic_create(&o, &the_nic);
	if (rc && o.shm_path &&
	    (!o.listen_addr || rc == -EADDRINUSE || rc == -ENAMETOOLONG ||
	     rc == -EACCES)) {
		/* Which of the two failed: try the socket alone. */
		struct dg_nic_opts so = o;
		struct dg_nic *probe;

		so.listen_addr = NULL;
		if (dg_nic_create(&so, &probe) == 0) {
			dg_nic_destroy(probe);
		} else {
			fprintf(stderr,
				"dagger-nic: cannot listen on unix:%s: "
				"%s%s%s\n",
				o.shm_path, strerror(-rc),
				rc == -EADDRINUSE
					? " (another engine serves it)"
					: "",
				what);
			dg_deploy_free(app.d);
			return 1;
		}
	}
	if (rc) {
		fprintf(stderr,
			"dagger-nic: cannot listen on %s port %u: %s%s%s\n",
			o.listen_addr, o.port, strerror(-rc), listen_hint(-rc),
			what);
		dg_deploy_free(app.d);
		return 1;
	}
	if (cf->ctl[0]) {
		rc = dg_nic_ctl_listen(the_nic, cf->ctl);
		if (rc && !cf->ctl_default) {
			fprintf(stderr,
				"dagger-nic: cannot open the control socket "
				"%s: %s%s%s\n",
				cf->ctl, strerror(-rc),
				rc == -EADDRINUSE ? " (another engine's)" : "",
				what);
			dg_nic_destroy(the_nic);
			dg_deploy_free(app.d);
			return 1;
		}
		if (rc) {
			/* The default place: go on without it, say so. */
			fprintf(stderr,
				"dagger-nic: no control socket: %s: %s%s "
				"(give one with --ctl PATH)\n",
				cf->ctl, strerror(-rc),
				rc == -EADDRINUSE ? " (another engine's)" : "");
			cf->ctl[0] = 0;
		}
	}
	dg_nic_set_reload(the_nic, reload, NULL);
	apply_policies(NULL, app.d, NULL, 0);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	if (o.listen_addr)
		fprintf(stderr, "dagger-nic: listening on %s:%u%s\n",
			o.listen_addr, dg_nic_port(the_nic), what);
	if (o.shm_path)
		fprintf(stderr, "dagger-nic: listening on unix:%s%s\n",
			o.shm_path, what);
	if (cf->ctl[0])
		fprintf(stderr, "dagger-nic: control socket %s\n", cf->ctl);
	for (;;) {
		dg_nic_run(the_nic);
		if (!want_stats && !want_reload)
			break;
		if (want_stats) {
			want_stats = 0;
			dg_nic_stats_print(the_nic, stdout);
			fflush(stdout);
		}
		if (want_reload) {
			char msg[2048];

			want_reload = 0;
			rc = reload(NULL, msg, sizeof(msg));
			fprintf(stderr, "dagger-nic: reload%s: %s\n",
				rc ? " refused" : "", msg);
		}
		dg_nic_resume(the_nic);
	}
	dg_nic_stats_print(the_nic, stdout);
	dg_nic_destroy(the_nic);
	dg_deploy_free(app.d);
	return 0;
bad:
	dg_deploy_free(app.d);
	return 2;
}
