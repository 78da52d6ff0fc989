// SPDX-License-Identifier: MIT
/*
 * dagger-launch: starts, stops and reports the NIC engines and tenants a
 * deployment description (include/dagger/deploy.h, docs/DEPLOY.md) names.
 *
 *   dagger-launch up|down|status|check FILE [--machine NAME]
 *
 * Without --machine it acts on every machine of the description: on a
 * machine without "host" directly, on the others by running itself there
 * over ssh ("ssh HOST dagger-launch up - --machine NAME", the description
 * on standard input). With --machine it acts only on what is placed on
 * that machine, locally.
 *
 * up starts in three phases, each on every machine before the next: the
 * engines (waiting for each to print that it listens), the long-running
 * tenants (waiting for their "ready" text when they have one), then the
 * oneshot tenants (waiting for each to finish, then printing its log).
 * Anything that fails stops the launch: its error and the tail of its
 * log are printed and everything already started is stopped again.
 *
 * State lives in RUN_DIR/MACHINE/: KIND.NAME.pid ("pid starttime", the
 * start time guards against a recycled pid), KIND.NAME.exit (a finished
 * oneshot's status), log/KIND.NAME.log, and deployment.yaml (the copy the
 * engines read with --config). Every process runs in its own session;
 * down signals its whole process group: SIGTERM, then SIGKILL after
 * stop_timeout seconds, and waits until no member of the group is left.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dagger/dagger.h"
#include "dagger/deploy.h"

#define PROG	   "dagger-launch"
#define TAIL_LINES 15

enum phase { PH_ENGINES = 1, PH_TENANTS = 2, PH_ONESHOT = 4, PH_ALL = 7 };

struct launch {
	struct dg_deploy *d;
	const char *file;  /* as given ("-": stdin) */
	const char *label; /* name in messages */
	char *text;	   /* the description's bytes */
	size_t len;
	char run_dir[1024];
	char **ssh;    /* DG_SSH, or the description's ssh, or the default */
	bool *touched; /* per machine: up acted (or tried to) there */
	bool *unreachable; /* per machine: ssh could not reach it */
};

#define UNREACHABLE 255 /* run_remote(): ssh failed, the cause is printed */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void nap(void)
{
	struct timespec t = {0, 20 * 1000 * 1000};

	nanosleep(&t, NULL);
}

/* ---- processes ---------------------------------------------------------- */

/* State, process group and start time of pid from /proc; -ENOENT if none. */
static int proc_stat(pid_t pid, char *state, pid_t *pgrp,
		     unsigned long long *start)
{
	char path[64], buf[1024], *p;
	ssize_t k;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return -ENOENT;
	buf[k] = 0;
	/* The command name may hold anything: fields follow the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -ENOENT;
	int pg = 0;
	if (sscanf(p + 1,
		   " %c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
		   "%*d %*d %*d %*d %llu",
		   state, &pg, start) != 3)
		return -ENOENT;
	*pgrp = pg;
	return 0;
}

/* The process we started as pid (same start time) is alive. */
static bool leader_alive(pid_t pid, unsigned long long start)
{
	unsigned long long s;
	pid_t g;
	char st;

	return !proc_stat(pid, &st, &g, &s) && s == start && st != 'Z';
}

/* Some live process is in process group pgid. */
static bool group_alive(pid_t pgid)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	bool found = false;

	if (!dir)
		return kill(-pgid, 0) == 0;
	while (!found && (e = readdir(dir))) {
		unsigned long long s;
		pid_t g;
		char st;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		if (!proc_stat((pid_t)atoi(e->d_name), &st, &g, &s) &&
		    g == pgid && st != 'Z')
			found = true;
	}
	closedir(dir);
	return found;
}

static void reap(pid_t pid, int *status)
{
	int st;

	if (waitpid(pid, &st, WNOHANG) == pid && status)
		*status = st;
}

static int mkdirs(const char *path)
{
	char buf[PATH_MAX], *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

struct proc {
	const char *kind; /* "engine" or "tenant" */
	const char *name;
	char pidfile[PATH_MAX];
	char exitfile[PATH_MAX];
	char log[PATH_MAX];
};

static void proc_paths(const struct launch *l, size_t m, const char *kind,
		       const char *name, struct proc *p)
{
	const char *md = l->d->machines[m].name;

	p->kind = kind;
	p->name = name;
	snprintf(p->pidfile, sizeof(p->pidfile), "%s/%s/%s.%s.pid", l->run_dir,
		 md, kind, name);
	snprintf(p->exitfile, sizeof(p->exitfile), "%s/%s/%s.%s.exit",
		 l->run_dir, md, kind, name);
	snprintf(p->log, sizeof(p->log), "%s/%s/log/%s.%s.log", l->run_dir, md,
		 kind, name);
}

static int read_pidfile(const char *path, pid_t *pid, unsigned long long *start)
{
	FILE *f = fopen(path, "r");
	int p, n;

	*pid = 0;
	if (!f)
		return errno ? -errno : -EIO;
	n = fscanf(f, "%d %llu", &p, start);
	fclose(f);
	if (n != 2 || p <= 1)
		return -EINVAL;
	*pid = p;
	return 0;
}

static int write_file(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX + 8];
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len)
		rc = -EIO;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* Prints the last n lines of file path, indented. */
static void print_tail(FILE *out, const char *path, int n)
{
	FILE *f = fopen(path, "r");
	char *lines[TAIL_LINES] = {0}, *line = NULL;
	size_t cap = 0, k = 0, i;

	if (!f) {
		fprintf(out, "  | (no log: %s)\n", strerror(errno));
		return;
	}
	if (n > TAIL_LINES)
		n = TAIL_LINES;
	while (getline(&line, &cap, f) > 0) {
		free(lines[k % (size_t)n]);
		lines[k++ % (size_t)n] = strdup(line);
	}
	free(line);
	fclose(f);
	if (!k)
		fprintf(out, "  | (log %s is empty)\n", path);
	for (i = k > (size_t)n ? k - (size_t)n : 0; i < k; i++) {
		const char *s = lines[i % (size_t)n];

		fprintf(out, "  | %s%s", s ? s : "",
			s && s[strlen(s) - 1] != '\n' ? "\n" : "");
	}
	for (i = 0; i < (size_t)n; i++)
		free(lines[i]);
}

static void print_file(FILE *out, const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[4096];
	size_t k;

	if (!f)
		return;
	while ((k = fread(buf, 1, sizeof(buf), f)))
		fwrite(buf, 1, k, out);
	fclose(f);
	fflush(out);
}

static bool log_has(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0)
		found = strstr(line, text) != NULL;
	free(line);
	fclose(f);
	return found;
}

/*
 * What a process may want to know of the description, in its environment
 * (in the child, before exec): the machine's RDMA device and GID index,
 * and a tenant's service settings.
 */
static void export_settings(const struct launch *l, size_t m,
			    const struct proc *p)
{
	const struct dg_deploy_machine *mc = &l->d->machines[m];
	char buf[32];
	long t, s;

	if (mc->rdma_device)
		setenv("DG_RDMA_DEVICE", mc->rdma_device, 1);
	if (mc->gid_index >= 0) {
		snprintf(buf, sizeof(buf), "%d", mc->gid_index);
		setenv("DG_GID_INDEX", buf, 1);
	}
	if (strcmp(p->kind, "tenant"))
		return;
	t = dg_deploy_find_tenant(l->d, p->name);
	if (t < 0)
		return;
	if (l->d->tenants[t].mode)
		setenv("DG_MODE", dg_mode_name(l->d->tenants[t].mode), 1);
	if (l->d->tenants[t].spin_us) {
		snprintf(buf, sizeof(buf), "%u", l->d->tenants[t].spin_us);
		setenv("DG_SPIN_US", buf, 1);
	}
	if (l->d->tenants[t].busy_poll)
		setenv("DG_BUSY_POLL", "1", 1);
	if (!l->d->tenants[t].service_name)
		return;
	setenv("DG_SERVICE", l->d->tenants[t].service_name, 1);
	s = l->d->tenants[t].service;
	setenv("DG_LB_POLICY",
	       dg_deploy_policy_name(s >= 0 ? l->d->services[s].policy : 0), 1);
	snprintf(buf, sizeof(buf), "%u",
		 s >= 0 ? l->d->services[s].threads : 1);
	setenv("DG_THREADS", buf, 1);
}

/*
 * Starts argv in its own session, output to p->log, and writes the pid
 * file. Returns the pid or a negative errno.
 */
static pid_t start_proc(const struct launch *l, size_t m, const struct proc *p,
			char **argv, const char *engine_ep)
{
	char old[PATH_MAX + 8];
	unsigned long long start;
	char st, buf[64];
	pid_t pid, g;
	int fd, rc;

	snprintf(old, sizeof(old), "%s.prev", p->log);
	rename(p->log, old);
	unlink(p->exitfile);
	fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (!pid) {
		int nul = open("/dev/null", O_RDONLY);

		setsid();
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 ||
		    dup2(fd, 2) < 0)
			_exit(127);
		closefrom(3);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		setenv("DG_DEPLOYMENT", l->d->name, 1);
		setenv("DG_MACHINE", l->d->machines[m].name, 1);
		setenv(!strcmp(p->kind, "engine") ? "DG_ENGINE_NAME"
						  : "DG_TENANT",
		       p->name, 1);
		if (engine_ep)
			setenv("DG_ENGINE", engine_ep, 1);
		export_settings(l, m, p);
		execvp(argv[0], argv);
		fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	close(fd);
	if (proc_stat(pid, &st, &g, &start))
		start = 0;
	snprintf(buf, sizeof(buf), "%d %llu\n", (int)pid, start);
	rc = write_file(p->pidfile, buf, strlen(buf));
	if (rc) {
		err("cannot write %s: %s", p->pidfile, strerror(-rc));
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return rc;
	}
	return pid;
}

enum { ST_STOPPED, ST_RUNNING, ST_DEAD, ST_EXITED };

/* What the pid/exit files of p say; *pid and *code when they apply. */
static int proc_state(const struct proc *p, pid_t *pid, int *code)
{
	unsigned long long start;
	FILE *f;

	if (!read_pidfile(p->pidfile, pid, &start))
		return leader_alive(*pid, start) ? ST_RUNNING : ST_DEAD;
	f = fopen(p->exitfile, "r");
	if (f) {
		int n = fscanf(f, "%d", code);

		fclose(f);
		if (n == 1)
			return ST_EXITED;
	}
	return ST_STOPPED;
}

/*
 * Stops what pid file path names (its whole process group): SIGTERM,
 * SIGKILL after timeout_s, then waits for the group to be gone. Removes
 * the pid file. Returns 0, or -ETIME if something could not be stopped.
 */
static int stop_pidfile(const char *path, const char *what, uint32_t timeout_s)
{
	unsigned long long start;
	uint64_t until;
	bool ours;
	pid_t pid;
	int rc = read_pidfile(path, &pid, &start);

	if (rc) {
		unlink(path);
		return 0;
	}
	/* A live leader with another start time is a recycled pid. */
	ours = leader_alive(pid, start);
	if (!ours) {
		unsigned long long s;
		pid_t g;
		char st;

		if (!proc_stat(pid, &st, &g, &s) && s != start && st != 'Z') {
			unlink(path);
			printf("  %s: not running\n", what);
			return 0;
		}
	}
	reap(pid, NULL);
	if (!ours && !group_alive(pid)) {
		unlink(path);
		printf("  %s: not running (had exited)\n", what);
		return 0;
	}
	kill(-pid, SIGTERM);
	until = now_ms() + (uint64_t)timeout_s * 1000;
	while (group_alive(pid) && now_ms() < until) {
		reap(pid, NULL);
		nap();
	}
	if (group_alive(pid)) {
		kill(-pid, SIGKILL);
		until = now_ms() + 5000;
		while (group_alive(pid) && now_ms() < until) {
			reap(pid, NULL);
			nap();
		}
		if (group_alive(pid)) {
			err("%s (pid %d) survives SIGKILL", what, (int)pid);
			return -ETIME;
		}
		printf("  %s: killed (pid %d, no exit %u s after SIGTERM)\n",
		       what, (int)pid, timeout_s);
	} else {
		printf("  %s: stopped (pid %d)\n", what, (int)pid);
	}
	reap(pid, NULL);
	unlink(path);
	return 0;
}

/* ---- local actions on one machine -------------------------------------- */

static bool on_machine_engine(const struct launch *l, size_t e, size_t m)
{
	return l->d->engines[e].machine == m;
}

static void engine_ep(const struct launch *l, size_t e, char *buf, size_t len)
{
	const struct dg_deploy_engine *en = &l->d->engines[e];
	const char *a = dg_deploy_engine_addr(l->d, en);

	snprintf(buf, len, strchr(a, ':') ? "[%s]:%u" : "%s:%u", a, en->port);
}

static int down_local(struct launch *l, size_t m);

/* A program from bin_dir (or PATH) on machine m. */
static void program(const struct launch *l, size_t m, const char *name,
		    char *buf, size_t len)
{
	const char *bin = dg_deploy_bin_dir(l->d, m);

	if (bin)
		snprintf(buf, len, "%s/%s", bin, name);
	else
		snprintf(buf, len, "%s", name);
}

/*
 * Waits until the process p (pid) is ready: ready text in its log (NULL:
 * only that it is still alive after a short grace period) or, when
 * oneshot, until it exits (within timeout_s, unless 0). Returns 0 or -1
 * after printing why.
 */
static int wait_proc(struct launch *l, size_t m, const struct proc *p,
		     pid_t pid, const char *ready, bool oneshot,
		     uint32_t timeout_s)
{
	const char *mn = l->d->machines[m].name;
	uint64_t until =
		now_ms() + (ready ? l->d->start_timeout_s * 1000ull : 300);
	uint64_t deadline = timeout_s ? now_ms() + timeout_s * 1000ull : 0;
	int st = 0;
	char buf[32];

	for (;;) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		if (interrupted) {
			err("interrupted while starting %s \"%s\" on machine "
			    "\"%s\"",
			    p->kind, p->name, mn);
			return -1;
		}
		if (!oneshot && ready && log_has(p->log, ready))
			return 0;
		if (oneshot && deadline && now_ms() >= deadline) {
			err("%s \"%s\" on machine \"%s\" did not finish within "
			    "%u s (its timeout); log tail (%s):",
			    p->kind, p->name, mn, timeout_s, p->log);
			print_tail(stderr, p->log, TAIL_LINES);
			return -1;
		}
		if (!oneshot && now_ms() >= until) {
			if (!ready)
				return 0;
			err("%s \"%s\" on machine \"%s\" is not ready after "
			    "%u s (waiting for \"%s\" in %s); log tail:",
			    p->kind, p->name, mn, l->d->start_timeout_s, ready,
			    p->log);
			print_tail(stderr, p->log, TAIL_LINES);
			return -1;
		}
		nap();
	}
	/* It exited. */
	if (oneshot) {
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);

		snprintf(buf, sizeof(buf), "%d\n", code);
		write_file(p->exitfile, buf, strlen(buf));
		unlink(p->pidfile);
		printf("== %s \"%s\" on machine \"%s\" (log %s):\n", p->kind,
		       p->name, mn, p->log);
		fflush(stdout);
		print_file(stdout, p->log);
		if (!code)
			return 0;
		err("%s \"%s\" on machine \"%s\" failed (exit status %d)",
		    p->kind, p->name, mn, code);
		return -1;
	}
	unlink(p->pidfile);
	if (WIFEXITED(st))
		err("%s \"%s\" on machine \"%s\" failed to start (exit status "
		    "%d); log tail (%s):",
		    p->kind, p->name, mn, WEXITSTATUS(st), p->log);
	else
		err("%s \"%s\" on machine \"%s\" failed to start (killed by "
		    "signal %d); log tail (%s):",
		    p->kind, p->name, mn, WTERMSIG(st), p->log);
	print_tail(stderr, p->log, TAIL_LINES);
	return -1;
}

static int launch_one(struct launch *l, size_t m, const struct proc *p,
		      char **argv, const char *ready, bool oneshot,
		      uint32_t timeout_s, const char *ep)
{
	pid_t pid;
	int code, rc;

	if (!oneshot && proc_state(p, &pid, &code) == ST_RUNNING) {
		printf("  %s %s: already running (pid %d)\n", p->kind, p->name,
		       (int)pid);
		return 0;
	}
	pid = start_proc(l, m, p, argv, ep);
	if (pid < 0) {
		err("cannot start %s \"%s\" on machine \"%s\": %s", p->kind,
		    p->name, l->d->machines[m].name, strerror(-pid));
		return -1;
	}
	rc = wait_proc(l, m, p, pid, ready, oneshot, timeout_s);
	if (!rc && !oneshot)
		printf("  %s %s: running (pid %d, log %s)\n", p->kind, p->name,
		       (int)pid, p->log);
	if (oneshot) {
		/*
		 * Done, failed, timed out or interrupted: nothing of it may
		 * outlive it (its group has no pid file any more).
		 */
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		unlink(p->pidfile);
	}
	return rc;
}

static int up_local(struct launch *l, size_t m, int phases)
{
	const struct dg_deploy *d = l->d;
	char dir[PATH_MAX + 16], cfg[PATH_MAX + 32], prog[PATH_MAX];
	char ep[128];
	size_t i;
	int rc;

	snprintf(dir, sizeof(dir), "%s/%s/log", l->run_dir,
		 d->machines[m].name);
	rc = mkdirs(dir);
	if (rc) {
		err("machine \"%s\": cannot create %s: %s", d->machines[m].name,
		    dir, strerror(-rc));
		return 1;
	}
	snprintf(cfg, sizeof(cfg), "%s/%s/deployment.yaml", l->run_dir,
		 d->machines[m].name);
	rc = write_file(cfg, l->text, l->len);
	if (rc) {
		err("cannot write %s: %s", cfg, strerror(-rc));
		return 1;
	}
	for (i = 0; (phases & PH_ENGINES) && i < d->nengines; i++) {
		struct proc p;
		char *argv[] = {prog,
				"--config",
				cfg,
				"--config-label",
				(char *)l->label,
				"--engine",
				d->engines[i].name,
				NULL};

		if (!on_machine_engine(l, i, m))
			continue;
		program(l, m, "dagger-nic", prog, sizeof(prog));
		proc_paths(l, m, "engine", d->engines[i].name, &p);
		if (launch_one(l, m, &p, argv, "listening on", false, 0, NULL))
			goto fail;
	}
	for (int ph = PH_TENANTS; ph <= PH_ONESHOT; ph <<= 1) {
		if (!(phases & ph))
			continue;
		for (i = 0; i < d->ntenants; i++) {
			const struct dg_deploy_tenant *t = &d->tenants[i];
			bool os = ph == PH_ONESHOT;
			char **argv;
			struct proc p;

			if (t->machine != m || t->oneshot != os)
				continue;
			rc = dg_deploy_tenant_argv(d, i, &argv);
			if (rc) {
				err("tenant \"%s\": %s", t->name,
				    strerror(-rc));
				goto fail;
			}
			proc_paths(l, m, "tenant", t->name, &p);
			engine_ep(l, t->engine, ep, sizeof(ep));
			rc = launch_one(l, m, &p, argv, t->ready, os,
					t->timeout_s, ep);
			dg_deploy_argv_free(argv);
			if (rc)
				goto fail;
		}
	}
	return 0;
fail:
	fprintf(stderr, PROG ": stopping what runs on machine \"%s\"\n",
		d->machines[m].name);
	fflush(stdout);
	down_local(l, m);
	return 1;
}

/* Stops tenants (last first), then engines, then any pid file left. */
static int down_local(struct launch *l, size_t m)
{
	const struct dg_deploy *d = l->d;
	char dir[PATH_MAX + 8], what[128], path[PATH_MAX * 2];
	struct dirent *e;
	struct proc p;
	size_t i;
	DIR *dd;
	int bad = 0;

	for (i = d->ntenants; i-- > 0;) {
		if (d->tenants[i].machine != m)
			continue;
		proc_paths(l, m, "tenant", d->tenants[i].name, &p);
		snprintf(what, sizeof(what), "tenant %s", p.name);
		bad |= stop_pidfile(p.pidfile, what, d->stop_timeout_s);
		unlink(p.exitfile);
	}
	for (i = d->nengines; i-- > 0;) {
		if (d->engines[i].machine != m)
			continue;
		proc_paths(l, m, "engine", d->engines[i].name, &p);
		snprintf(what, sizeof(what), "engine %s", p.name);
		bad |= stop_pidfile(p.pidfile, what, d->stop_timeout_s);
	}
	/* Started under an older version of the description. */
	snprintf(dir, sizeof(dir), "%s/%s", l->run_dir, d->machines[m].name);
	dd = opendir(dir);
	while (dd && (e = readdir(dd))) {
		size_t n = strlen(e->d_name);

		if (n > 4 && !strcmp(e->d_name + n - 4, ".pid")) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			snprintf(what, sizeof(what), "%.*s", (int)(n - 4),
				 e->d_name);
			bad |= stop_pidfile(path, what, d->stop_timeout_s);
		} else if (n > 5 && !strcmp(e->d_name + n - 5, ".exit")) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	}
	if (dd)
		closedir(dd);
	return bad ? 1 : 0;
}

/* Program prog can be run here: a path, or found in PATH. */
static int findable(const char *prog, char *why, size_t len)
{
	const char *path = getenv("PATH"), *p, *q;
	char buf[PATH_MAX];

	if (strchr(prog, '/')) {
		if (!access(prog, X_OK))
			return 0;
		snprintf(why, len, "%s: %s", prog, strerror(errno));
		return -1;
	}
	for (p = path ? path : "/usr/bin:/bin"; *p; p = *q ? q + 1 : q) {
		q = strchrnul(p, ':');
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)(q - p), p, prog);
		if (!access(buf, X_OK))
			return 0;
	}
	snprintf(why, len, "%s: not found in PATH", prog);
	return -1;
}

/* Machine m has the programs its part of the description runs. */
static int check_local(struct launch *l, size_t m)
{
	const struct dg_deploy *d = l->d;
	char prog[PATH_MAX], why[PATH_MAX + 64];
	size_t i;
	int bad = 0;

	for (i = 0; i < d->nengines; i++) {
		if (d->engines[i].machine != m)
			continue;
		program(l, m, "dagger-nic", prog, sizeof(prog));
		if (findable(prog, why, sizeof(why))) {
			err("machine \"%s\": engine \"%s\" cannot run: %s",
			    d->machines[m].name, d->engines[i].name, why);
			bad = 1;
		}
		break;
	}
	for (i = 0; i < d->ntenants; i++) {
		char **argv;

		if (d->tenants[i].machine != m)
			continue;
		if (dg_deploy_tenant_argv(d, i, &argv))
			return 1;
		if (findable(argv[0], why, sizeof(why))) {
			err("machine \"%s\": tenant \"%s\" cannot run: %s",
			    d->machines[m].name, d->tenants[i].name, why);
			bad = 1;
		}
		dg_deploy_argv_free(argv);
	}
	return bad;
}

static int status_local(struct launch *l, size_t m)
{
	const struct dg_deploy *d = l->d;
	const char *mn = d->machines[m].name;
	static const char *const names[] = {"stopped", "running", "dead",
					    "exited"};
	size_t k;
	int bad = 0;

	for (k = 0; k < d->nengines + d->ntenants; k++) {
		bool eng = k < d->nengines;
		const char *name = eng ? d->engines[k].name
				       : d->tenants[k - d->nengines].name;
		size_t pm = eng ? d->engines[k].machine
				: d->tenants[k - d->nengines].machine;
		char st[32], pid_s[16] = "-";
		struct proc p;
		pid_t pid = 0;
		int code = 0, s;

		if (pm != m)
			continue;
		proc_paths(l, m, eng ? "engine" : "tenant", name, &p);
		s = proc_state(&p, &pid, &code);
		if (s == ST_RUNNING || s == ST_DEAD)
			snprintf(pid_s, sizeof(pid_s), "%d", (int)pid);
		if (s == ST_EXITED)
			snprintf(st, sizeof(st), "exited %d", code);
		else
			snprintf(st, sizeof(st), "%s", names[s]);
		if (s == ST_DEAD || s == ST_STOPPED || (s == ST_EXITED && code))
			bad = 1;
		printf("%-12s %-7s %-16s %-10s %-8s %s\n", mn, p.kind, name, st,
		       pid_s, p.log);
	}
	return bad ? 3 : 0;
}

/* ---- remote actions, over ssh ------------------------------------------ */

/* Writes " 's'": s single-quoted for the remote shell. */
static void quote(FILE *f, const char *s)
{
	fputs(" '", f);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	}
	fputc('\'', f);
}

/*
 * Runs "dagger-launch CMD - --machine M [--phase P]" on machine m over
 * ssh, the description on its standard input. Its standard output
 * passes through; its standard error is collected, printed, and read for
 * the cause when ssh itself fails (exit status 255).
 */
static int run_remote(struct launch *l, size_t m, const char *cmd, int phases)
{
	const struct dg_deploy_machine *mc = &l->d->machines[m];
	char launcher[PATH_MAX], phase_s[8], *rcmd = NULL, **argv;
	char errbuf[8192];
	size_t rlen = 0, n = 0, k, elen = 0;
	int pfd[2], in, st;
	FILE *f;
	pid_t pid;

	if (mc->launcher)
		snprintf(launcher, sizeof(launcher), "%s", mc->launcher);
	else
		program(l, m, PROG, launcher, sizeof(launcher));
	f = open_memstream(&rcmd, &rlen);
	if (!f)
		return 1;
	fputs("exec", f);
	quote(f, launcher);
	quote(f, cmd);
	quote(f, "-");
	quote(f, "--machine");
	quote(f, mc->name);
	quote(f, "--as");
	quote(f, l->label);
	if (phases != PH_ALL) {
		snprintf(phase_s, sizeof(phase_s), "%d", phases);
		quote(f, "--phase");
		quote(f, phase_s);
	}
	if (fclose(f))
		return 1;
	while (l->ssh[n])
		n++;
	argv = calloc(n + 3, sizeof(*argv));
	if (!argv) {
		free(rcmd);
		return 1;
	}
	for (k = 0; k < n; k++)
		argv[k] = l->ssh[k];
	argv[n] = mc->host;
	argv[n + 1] = rcmd;
	in = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (l->text) {
		/* The description through a pipe: it is in memory already. */
		int tp[2];

		if (in >= 0)
			close(in);
		in = -1;
		if (!pipe2(tp, O_CLOEXEC)) {
			pid_t w = fork();

			if (w == 0) {
				size_t off = 0;

				close(tp[0]);
				signal(SIGPIPE, SIG_IGN);
				while (off < l->len) {
					ssize_t x = write(tp[1], l->text + off,
							  l->len - off);
					if (x <= 0)
						break;
					off += (size_t)x;
				}
				_exit(0);
			}
			close(tp[1]);
			in = w > 0 ? tp[0] : -1;
			if (w < 0)
				close(tp[0]);
		}
	}
	if (in < 0 || pipe2(pfd, O_CLOEXEC)) {
		err("machine \"%s\": cannot run ssh: %s", mc->name,
		    strerror(errno));
		free(argv);
		free(rcmd);
		return 1;
	}
	fflush(stdout);
	pid = fork();
	if (!pid) {
		dup2(in, 0);
		dup2(pfd[1], 2);
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(255);
	}
	close(in);
	close(pfd[1]);
	for (;;) {
		ssize_t x =
			read(pfd[0], errbuf + elen, sizeof(errbuf) - 1 - elen);

		if (x > 0) {
			elen += (size_t)x;
			if (elen == sizeof(errbuf) - 1) {
				/* Keep the end: the cause is printed last. */
				fwrite(errbuf, 1, elen / 2, stderr);
				memmove(errbuf, errbuf + elen / 2,
					elen - elen / 2);
				elen -= elen / 2;
			}
			continue;
		}
		if (x < 0 && errno == EINTR)
			continue;
		break;
	}
	close(pfd[0]);
	errbuf[elen] = 0;
	while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		; /* the description writer */
	free(argv);
	free(rcmd);
	if (pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 255) {
		char *last;

		while (elen &&
		       (errbuf[elen - 1] == '\n' || errbuf[elen - 1] == '\r'))
			errbuf[--elen] = 0;
		last = strrchr(errbuf, '\n');
		err("machine \"%s\" is unreachable: %s %s failed: %s", mc->name,
		    l->ssh[0], mc->host,
		    elen ? (last ? last + 1 : errbuf) : "exit status 255");
		l->unreachable[m] = true;
		return UNREACHABLE;
	}
	fputs(errbuf, stderr);
	if (pid < 0 || !WIFEXITED(st))
		return 1;
	return WEXITSTATUS(st);
}

static int act(struct launch *l, size_t m, const char *cmd, int phases)
{
	if (l->d->machines[m].host)
		return run_remote(l, m, cmd, phases);
	if (!strcmp(cmd, "up"))
		return up_local(l, m, phases);
	if (!strcmp(cmd, "down"))
		return down_local(l, m);
	if (!strcmp(cmd, "check"))
		return check_local(l, m);
	return status_local(l, m);
}

/* Machine m has something for the phases. */
static bool has_work(const struct launch *l, size_t m, int phases)
{
	size_t i;

	for (i = 0; (phases & PH_ENGINES) && i < l->d->nengines; i++)
		if (l->d->engines[i].machine == m)
			return true;
	for (i = 0; i < l->d->ntenants; i++)
		if (l->d->tenants[i].machine == m &&
		    (phases &
		     (l->d->tenants[i].oneshot ? PH_ONESHOT : PH_TENANTS)))
			return true;
	return false;
}

/* Stops every machine (only those up touched, when only_touched). */
static int down_all(struct launch *l, bool only_touched)
{
	int rc = 0;

	for (size_t m = l->d->nmachines; m-- > 0;) {
		int r;

		if (l->unreachable[m] || (only_touched && !l->touched[m]))
			continue;
		printf("machine %s:\n", l->d->machines[m].name);
		fflush(stdout);
		r = act(l, m, "down", PH_ALL);
		if (r)
			rc = 1;
	}
	return rc;
}

static int up_all(struct launch *l)
{
	static const char *const what[] = {"", "engines", "tenants", "",
					   "oneshot tenants"};

	/*
	 * First reach every machine and check that its programs are there,
	 * so that an unreachable machine or a missing install stops the
	 * launch before anything runs.
	 */
	for (size_t m = 0; m < l->d->nmachines; m++) {
		if (has_work(l, m, PH_ALL) && act(l, m, "check", PH_ALL)) {
			err("machine \"%s\" is not ready to run its part; "
			    "nothing was started",
			    l->d->machines[m].name);
			return 1;
		}
	}
	for (int ph = PH_ENGINES; ph <= PH_ONESHOT; ph <<= 1) {
		for (size_t m = 0; m < l->d->nmachines; m++) {
			if (!has_work(l, m, ph))
				continue;
			printf("machine %s: starting %s\n",
			       l->d->machines[m].name, what[ph]);
			fflush(stdout);
			l->touched[m] = true;
			if (!act(l, m, "up", ph) && !interrupted)
				continue;
			err("up failed on machine \"%s\"; stopping what was "
			    "started",
			    l->d->machines[m].name);
			down_all(l, true);
			return 1;
		}
	}
	return 0;
}

/* ---- main -----------------------------------------------------------------
 */

static char *read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	char *buf = NULL;
	size_t cap = 0, k;

	*len = 0;
	if (!f)
		return NULL;
	for (;;) {
		if (*len + 1 >= cap) {
			char *nb = cap > (4u << 20)
					   ? NULL
					   : realloc(buf, cap ? cap * 2 : 8192);

			if (!nb) {
				free(buf);
				errno = cap > (4u << 20) ? EFBIG : ENOMEM;
				buf = NULL;
				break;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		k = fread(buf + *len, 1, cap - 1 - *len, f);
		*len += k;
		if (!k) {
			if (ferror(f)) {
				free(buf);
				buf = NULL;
				errno = EIO;
			}
			break;
		}
	}
	if (f != stdin)
		fclose(f);
	return buf;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " up|down|status|check FILE [--machine NAME]\n"
		"Starts, stops and reports the NIC engines and tenants that "
		"the\n"
		"deployment description FILE names (docs/DEPLOY.md).\n"
		"  up       start engines, then tenants, then oneshot "
		"tenants;\n"
		"           any failure stops everything and exits 1\n"
		"  down     stop everything started (SIGTERM, then SIGKILL\n"
		"           after stop_timeout); exits 1 if anything survives\n"
		"  status   one line per process: running, dead, stopped or\n"
		"           exited N; exits 3 if any is not running/exited 0\n"
		"  check    only parse FILE (errors as FILE:LINE: reason)\n"
		"  -m, --machine NAME   act only on machine NAME, locally\n"
		"FILE \"-\" reads standard input. Machines with a \"host\" "
		"are\n"
		"reached with ssh (the description's \"ssh\", or $DG_SSH, or\n"
		"\"ssh -o BatchMode=yes -o ConnectTimeout=10\"), running\n"
		"\"" PROG " CMD - --machine NAME\" there.\n");
}

static char **split_ws(const char *s)
{
	char *copy = strdup(s), *tok, *save, **v;
	size_t n = 0;

	if (!copy)
		return NULL;
	v = calloc(strlen(s) / 2 + 2, sizeof(*v));
	for (tok = v ? strtok_r(copy, " \t", &save) : NULL; tok;
	     tok = strtok_r(NULL, " \t", &save))
		v[n++] = strdup(tok);
	free(copy);
	if (v && !n) {
		free(v);
		return NULL;
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"machine", required_argument, NULL, 'm'},
		{"as", required_argument, NULL, 'a'},
		{"phase", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static char *def_ssh[] = {
		"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", NULL};
	struct launch l = {0};
	const char *cmd, *machine = NULL, *env;
	char errbuf[1024], self[PATH_MAX], **env_ssh = NULL;
	struct sigaction sa = {0};
	int c, phases = PH_ALL, rc;
	ssize_t k;
	long m = -1;

	while ((c = getopt_long(argc, argv, "+m:h", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			machine = optarg;
			break;
		case 'a':
			l.label = optarg;
			break;
		case 'P':
			phases = atoi(optarg);
			if (phases < 1 || phases > PH_ALL) {
				err("bad --phase %s", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	/* Options may also follow the command and the file. */
	if (argc - optind < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	l.file = argv[optind + 1];
	optind += 2;
	while ((c = getopt_long(argc, argv, "m:h", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			machine = optarg;
			break;
		case 'a':
			l.label = optarg;
			break;
		case 'P':
			phases = atoi(optarg);
			if (phases < 1 || phases > PH_ALL) {
				err("bad --phase %s", optarg);
				return 2;
			}
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		err("unexpected argument \"%s\"", argv[optind]);
		return 2;
	}
	if (strcmp(cmd, "up") && strcmp(cmd, "down") && strcmp(cmd, "status") &&
	    strcmp(cmd, "check")) {
		err("unknown command \"%s\" (up, down, status, check)", cmd);
		return 2;
	}
	if (!l.label)
		l.label = strcmp(l.file, "-") ? l.file : "<stdin>";
	l.text = read_all(l.file, &l.len);
	if (!l.text) {
		err("%s: %s", l.label, strerror(errno));
		return 2;
	}
	rc = dg_deploy_parse(l.text, l.len, l.label, &l.d, errbuf,
			     sizeof(errbuf));
	if (rc) {
		fprintf(stderr, "%s\n", errbuf);
		free(l.text);
		return 2;
	}
	if (!strcmp(cmd, "check") && !machine) {
		printf("%s: %zu machine(s), %zu engine(s), %zu service(s), "
		       "%zu tenant(s)\n",
		       l.label, l.d->nmachines, l.d->nengines, l.d->nservices,
		       l.d->ntenants);
		rc = 0;
		goto out;
	}
	if (machine) {
		m = dg_deploy_find_machine(l.d, machine);
		if (m < 0) {
			err("%s: no machine \"%s\"", l.label, machine);
			rc = 2;
			goto out;
		}
	}
	/*
	 * No bin_dir: the programs next to this one (as called, then as
	 * the link resolves), if they are there, else PATH.
	 */
	for (int i = 0; i < 2 && !l.d->bin_dir; i++) {
		char probe[PATH_MAX + 16], *slash;

		if (!i && strchr(argv[0], '/')) {
			snprintf(self, sizeof(self), "%s", argv[0]);
		} else if (i) {
			k = readlink("/proc/self/exe", self, sizeof(self) - 1);
			if (k <= 0)
				break;
			self[k] = 0;
		} else {
			continue;
		}
		slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		snprintf(probe, sizeof(probe), "%s/dagger-nic", self);
		if (!access(probe, X_OK))
			l.d->bin_dir = realpath(self, NULL);
	}
	l.touched = calloc(l.d->nmachines, sizeof(*l.touched));
	l.unreachable = calloc(l.d->nmachines, sizeof(*l.unreachable));
	if (!l.touched || !l.unreachable) {
		err("out of memory");
		rc = 1;
		goto out;
	}
	env = getenv("DG_SSH");
	if (env && *env)
		env_ssh = split_ws(env);
	l.ssh = env_ssh ? env_ssh : l.d->ssh ? l.d->ssh : def_ssh;
	if (l.d->run_dir && strlen(l.d->run_dir) >= sizeof(l.run_dir)) {
		err("%s: run_dir is longer than %zu characters", l.label,
		    sizeof(l.run_dir) - 1);
		rc = 2;
		goto out;
	}
	if (l.d->run_dir)
		snprintf(l.run_dir, sizeof(l.run_dir), "%s", l.d->run_dir);
	else
		snprintf(l.run_dir, sizeof(l.run_dir),
			 "/tmp/dagger-launch-%u/%s", (unsigned)getuid(),
			 l.d->name);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (m >= 0) {
		if (!strcmp(cmd, "check"))
			rc = check_local(&l, (size_t)m);
		else if (!strcmp(cmd, "up"))
			rc = up_local(&l, (size_t)m, phases);
		else if (!strcmp(cmd, "down"))
			rc = down_local(&l, (size_t)m);
		else
			rc = status_local(&l, (size_t)m);
	} else if (!strcmp(cmd, "up")) {
		rc = up_all(&l);
	} else if (!strcmp(cmd, "down")) {
		rc = down_all(&l, false);
	} else {
		rc = 0;
		printf("%-12s %-7s %-16s %-10s %-8s %s\n", "MACHINE", "KIND",
		       "NAME", "STATE", "PID", "LOG");
		fflush(stdout);
		for (size_t i = 0; i < l.d->nmachines; i++) {
			int r = act(&l, i, "status", PH_ALL);

			/* 1 (an error) outranks 3 (not all running). */
			if (r == UNREACHABLE)
				r = 1;
			if (r && rc != 1)
				rc = r;
		}
	}
out:
	if (env_ssh) {
		for (char **p = env_ssh; *p; p++)
			free(*p);
		free(env_ssh);
	}
	free(l.touched);
	free(l.unreachable);
	dg_deploy_free(l.d);
	free(l.text);
	return rc;
}
