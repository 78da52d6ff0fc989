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
static volatile sig_atomic_t want_stats;

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
		"                      poll_max_us, verbose, and the\n"
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
		"                      flow's TX ring (default 100)\n"
		"      --spin-us N     spin this long without work before "
		"sleeping\n"
		"                      until there is some (default 50)\n"
		"      --idle-us N     sleep at most this long at a time "
		"(default 100000)\n"
		"      --busy-poll     never sleep (a dedicated core)\n"
		"  -v, --verbose       log tenants and services\n"
		"  -n, --dry-run       print the resolved settings and exit\n"
		"Flags given on the command line override FILE.\n"
		"Signals: SIGUSR1 prints counters; SIGINT/SIGTERM stop.\n"
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
	if (!*s || *end || errno || *s == '-' || *out < min || *out > max) {
		fprintf(stderr, "dagger-nic: bad %s \"%s\" (%lu..%lu)\n", flag,
			s, min, max);
		return -EINVAL;
	}
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
		*poll_max, *spin, *idle;
	bool verbose, busy_poll;
};

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
		{"spin-us", required_argument, NULL, 'S'},
		{"idle-us", required_argument, NULL, 'I'},
		{"busy-poll", no_argument, NULL, 'B'},
		{"verbose", no_argument, NULL, 'v'},
		{"dry-run", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct dg_nic_opts o = {.port = 7471, .engine_id = 1};
	const char *config = NULL, *engine = NULL, *what = "", *label = NULL;
	const char *dev = NULL, *dev_machine = NULL;
	struct dg_deploy *d = NULL;
	struct sigaction sa = {0};
	struct flags fl = {0};
	bool dry = false;
	char err[1024], where[256] = "";
	unsigned long v;
	int c, rc, cpu = -1;

	while ((c = getopt_long(argc, argv, "c:e:l:s:p:b:i:C:vnh", lo, NULL)) !=
	       -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'e':
			engine = optarg;
			break;
		case 'L':
			label = optarg;
			break;
		case 'l':
			fl.listen = optarg;
			break;
		case 's':
			fl.shm = optarg;
			break;
		case 'p':
			fl.port = optarg;
			break;
		case 'b':
			fl.batch = optarg;
			break;
		case 'i':
			fl.id = optarg;
			break;
		case 'C':
			fl.cpu = optarg;
			break;
		case 'T':
			fl.peer_timeout = optarg;
			break;
		case 'M':
			fl.poll_max = optarg;
			break;
		case 'S':
			fl.spin = optarg;
			break;
		case 'I':
			fl.idle = optarg;
			break;
		case 'B':
			fl.busy_poll = true;
			break;
		case 'v':
			fl.verbose = true;
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
	if (engine && !config) {
		fprintf(stderr, "dagger-nic: --engine needs --config FILE\n");
		return 2;
	}
	if (config) {
		const struct dg_deploy_engine *e;
		const struct dg_deploy_machine *m;
		long i;

		rc = dg_deploy_load(config, label, &d, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "dagger-nic: %s\n", err);
			return 2;
		}
		if (!engine && d->nengines != 1) {
			fprintf(stderr,
				"dagger-nic: %s names %zu engines: choose one "
				"with --engine NAME\n",
				config, d->nengines);
			dg_deploy_free(d);
			return 2;
		}
		i = engine ? dg_deploy_find_engine(d, engine) : 0;
		if (i < 0) {
			fprintf(stderr, "dagger-nic: %s: no engine \"%s\"\n",
				config, engine);
			dg_deploy_free(d);
			return 2;
		}
		e = &d->engines[i];
		m = &d->machines[e->machine];
		snprintf(where, sizeof(where), " (engine \"%s\", %s:%d)",
			 e->name, d->path, e->line);
		what = where;
		o.listen_addr = e->listen;
		o.shm_path = e->shm;
		o.port = e->port;
		o.engine_id = e->id;
		o.read_batch = e->batch;
		o.spin_us = e->spin_us;
		o.idle_us = e->idle_us;
		o.peer_timeout_ms = e->peer_timeout_ms;
		o.poll_max_us = e->poll_max_us;
		o.busy_poll = e->busy_poll;
		o.verbose = e->verbose;
		cpu = e->cpu;
		if (!fl.listen) {
			dev = m->rdma_device;
			dev_machine = m->name;
		}
	}
	if (fl.listen)
		o.listen_addr = fl.listen;
	if (fl.shm)
		o.shm_path = fl.shm;
	if (fl.verbose)
		o.verbose = true;
	if (fl.port) {
		if (num("--port", fl.port, 0, 65535, &v))
			goto bad;
		o.port = (uint16_t)v;
	}
	if (fl.batch) {
		if (num("--batch", fl.batch, 1, 1024, &v))
			goto bad;
		o.read_batch = (uint32_t)v;
	}
	if (fl.id) {
		if (num("--id", fl.id, 1, UINT32_MAX, &v))
			goto bad;
		o.engine_id = (uint32_t)v;
	}
	if (fl.peer_timeout) {
		if (num("--peer-timeout", fl.peer_timeout, 60, 300000, &v))
			goto bad;
		o.peer_timeout_ms = (uint32_t)v;
	}
	if (fl.busy_poll)
		o.busy_poll = true;
	if (fl.spin) {
		if (num("--spin-us", fl.spin, 1, 10000000, &v))
			goto bad;
		o.spin_us = (uint32_t)v;
	}
	if (fl.idle) {
		if (num("--idle-us", fl.idle, 1, 10000000, &v))
			goto bad;
		o.idle_us = (uint32_t)v;
	}
	if (fl.poll_max) {
		if (num("--poll-max-us", fl.poll_max, 1, 1000000, &v))
			goto bad;
		o.poll_max_us = (uint32_t)v;
	}
	if (fl.cpu) {
		if (num("--cpu", fl.cpu, 0, CPU_SETSIZE - 1, &v))
			goto bad;
		cpu = (int)v;
	}
	if (!o.listen_addr && !o.shm_path) {
		usage(stderr);
		goto bad;
	}
	if (dry) {
		printf("listen %s\nshm %s\nport %u\nid %u\nbatch %u\ncpu %d\n"
		       "spin_us %u\nidle_us %u\nbusy_poll %d\npeer_timeout_ms "
		       "%u\n"
		       "poll_max_us %u\nverbose %d\n",
		       o.listen_addr ? o.listen_addr : "-",
		       o.shm_path ? o.shm_path : "-", o.port, o.engine_id,
		       o.read_batch ? o.read_batch : 16, cpu, o.spin_us,
		       o.idle_us, o.busy_poll,
		       o.peer_timeout_ms ? o.peer_timeout_ms : 3000u,
		       o.poll_max_us ? o.poll_max_us : 100u, o.verbose);
		dg_deploy_free(d);
		return 0;
	}
	/* The machine's device, unless --listen moved the engine off it. */
	if (dev) {
		char path[PATH_MAX];
		struct stat st;

		snprintf(path, sizeof(path), "/sys/class/infiniband/%s", dev);
		if (stat(path, &st)) {
			fprintf(stderr,
				"dagger-nic: RDMA device \"%s\" of machine "
				"\"%s\" is not here (%s: %s)%s\n",
				dev, dev_machine, path, strerror(errno), what);
			dg_deploy_free(d);
			return 1;
		}
	}
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			fprintf(stderr,
				"dagger-nic: cannot pin to CPU %d: %s%s\n", cpu,
				strerror(errno), what);
			dg_deploy_free(d);
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
			dg_deploy_free(d);
			return 1;
		}
	}
	if (rc) {
		fprintf(stderr,
			"dagger-nic: cannot listen on %s port %u: %s%s%s\n",
			o.listen_addr, o.port, strerror(-rc), listen_hint(-rc),
			what);
		dg_deploy_free(d);
		return 1;
	}
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	if (o.listen_addr)
		fprintf(stderr, "dagger-nic: listening on %s:%u%s\n",
			o.listen_addr, dg_nic_port(the_nic), what);
	if (o.shm_path)
		fprintf(stderr, "dagger-nic: listening on unix:%s%s\n",
			o.shm_path, what);
	for (;;) {
		dg_nic_run(the_nic);
		if (!want_stats)
			break;
		want_stats = 0;
		dg_nic_stats_print(the_nic, stdout);
		fflush(stdout);
		dg_nic_resume(the_nic);
	}
	dg_nic_stats_print(the_nic, stdout);
	dg_nic_destroy(the_nic);
	dg_deploy_free(d);
	return 0;
bad:
	dg_deploy_free(d);
	return 2;
}
