// SPDX-License-Identifier: MIT
/*
 * dagger-soak: calls of mixed sizes over many connections, for minutes,
 * while servers, engines and the peer engine are killed and restarted, and
 * an account of every call: each must end exactly once, with the bytes it
 * carried (or with an error the API promises for what happened).
 *
 *   dagger-soak run --minutes M --nic PATH [--addr0 A --addr1 B]
 *   dagger-soak server --engine ADDR:PORT       (started by run)
 *
 * run (deploy/soak runs it through deploy/rxe-run) starts engine A on
 * addr0 and engine B on addr1 (dagger-nic processes), an echo server
 * process behind each, and client threads in this process, attached to A:
 * each has a flow with connections to A's server and, through a peer
 * link, to B's. Every call's payload carries its number and a stream
 * derived from it (tests/common/dg_track.h). Every PERIOD seconds one of
 * these is killed (SIGKILL) and started again: A's server, engine B (the
 * peer engine, with its server), engine A (the clients' own engine, with
 * its server).
 *
 * How a call can end, and how it is counted:
 *   ok            status OK, its own length and bytes;
 *   corrupt       status OK, other length or bytes;
 *   failed[st]    an error status (UNREACHABLE while a server or a link is
 *                 gone, BUSY, NO_CONN...);
 *   engine gone   in flight when the client's own engine died: the API
 *                 reports that through dg_host_check (-ENOTCONN), not per
 *                 call;
 *   lost          no answer within CALL_MS while the engine was alive, or
 *                 still unanswered at the end;
 *   duplicated    an answer to a call not in flight (late answers to calls
 *                 counted lost are told apart: late).
 * Exit status 1 when anything was lost, duplicated or corrupt, or when the
 * accounting does not add up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dagger/dagger.h"
#include "dg_track.h"

extern char **environ;

enum { FN_ECHO = 1 };

#define PERIOD_S   15	 /* one kill every PERIOD_S */
#define DOWN_MS	   2000	 /* how long a killed process stays down */
#define CALL_MS	   15000 /* an answer later than this: lost */
#define WINDOW	   16	 /* calls in flight per flow */
#define NCLIENTS   3	 /* client threads (one host, one flow each) */
#define NCONNS	   6	 /* connections per flow: half local, half remote */
#define SLOTS	   4096u /* rpc ids tracked per flow (power of two) */
#define LATE_RING  1024u
#define MAX_STATUS 256
#define PORT_A	   7481
#define PORT_B	   7482
#define ST_TIMEOUT (MAX_STATUS - 1) /* failed[]: unused */

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void msleep(uint32_t ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

/* ---- the server process ------------------------------------------------ */

static int echo(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	(void)arg;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

static const struct dg_handler handlers[] = {{FN_ECHO, echo}};
static const struct dg_service_def svc = {
	.name = "echo", .handlers = handlers, .nhandlers = 1};

/* Serves until its engine is gone, then exits (run starts it again). */
static int server_main(const char *spec)
{
	struct dg_host_opts o = {.nflows = 2, .slots = 2048};
	char addr[64];
	struct dg_server *s;
	struct dg_host *h;
	int rc;

	if (dg_host_opts_engine(&o, spec, addr, sizeof(addr)))
		return 2;
	rc = dg_host_attach(&o, &h);
	if (rc) {
		fprintf(stderr, "soak server: attach %s: %s\n", spec,
			strerror(-rc));
		return 1;
	}
	rc = dg_server_start(h, &svc, 0, 2, &s);
	if (rc) {
		fprintf(stderr, "soak server: serve: %s\n", strerror(-rc));
		dg_host_detach(h);
		return 1;
	}
	while (dg_host_check(h) == 0)
		msleep(100);
	/* The engine is gone: the dispatch threads have nothing to serve. */
	dg_server_stop(s);
	dg_host_detach(h);
	return 0;
}

/* ---- the clients -------------------------------------------------------- */

struct slot {
	bool live, remote;
	uint32_t rpc, seq, len, conn;
	uint64_t sent_ms;
};

struct counts {
	uint64_t calls, ok, corrupt, engine_gone, lost, dup, late;
	uint64_t lost_remote; /* of lost: on connections through the link */
	uint64_t failed[MAX_STATUS];
	uint64_t reattach, reconnect;
	uint64_t answers; /* every answer taken, for the progress lines */
};

struct client {
	int idx;
	pthread_t thr;
	struct dg_host *h;
	struct dg_flow *f;
	int conn[NCONNS];
	bool reconnect[NCONNS];
	struct slot slot[SLOTS];
	uint32_t inflight, next_seq, rr;
	bool draining;	    /* no new calls: connections to open anew */
	uint64_t next_open; /* when to try those again */
	uint32_t late[LATE_RING], nlate;
	struct counts c;
	uint8_t buf[DG_MAX_MSG];
};

static struct {
	const char *addr0, *addr1;
	volatile int stop;
	struct client cl[NCLIENTS];
} G;

static uint32_t pick_len(uint32_t *s)
{
	uint32_t r;

	*s = *s * 1664525u + 1013904223u;
	r = (*s >> 8) % 100;
	*s = *s * 1664525u + 1013904223u;
	if (r < 70)
		return 1 + (*s >> 8) % 256;
	if (r < 95)
		return 257 + (*s >> 8) % 3840;
	return 4097 + (*s >> 8) % (DG_MAX_MSG - 4096);
}

static void remember_late(struct client *c, uint32_t rpc)
{
	c->late[c->nlate++ % LATE_RING] = rpc;
}

static bool was_late(struct client *c, uint32_t rpc)
{
	uint32_t i, n = c->nlate < LATE_RING ? c->nlate : LATE_RING;

	for (i = 0; i < n; i++)
		if (c->late[i] == rpc)
			return true;
	return false;
}

/* Every call in flight ends now, counted as cat (engine gone or lost). */
static void end_inflight(struct client *c, uint64_t *cat)
{
	uint32_t i;

	for (i = 0; i < SLOTS; i++)
		if (c->slot[i].live) {
			c->slot[i].live = false;
			(*cat)++;
			if (cat == &c->c.lost) {
				remember_late(c, c->slot[i].rpc);
				c->c.lost_remote += c->slot[i].remote;
			}
		}
	c->inflight = 0;
}

static void open_conns(struct client *c)
{
	uint32_t k;

	for (k = 0; k < NCONNS; k++) {
		bool remote = k % 2;

		if (c->conn[k] >= 0 && !c->reconnect[k])
			continue;
		if (c->conn[k] >= 0)
			dg_close(c->f, c->conn[k]);
		c->conn[k] = dg_connect(c->f, remote ? G.addr1 : NULL,
					remote ? PORT_B : 0, "echo", 5000);
		c->reconnect[k] = false;
		if (c->conn[k] >= 0)
			c->c.reconnect++;
	}
}

static int attach(struct client *c)
{
	struct dg_host_opts o = {.engine_addr = G.addr0,
				 .engine_port = PORT_A,
				 .nflows = 1,
				 .slots = 2048,
				 .timeout_ms = 5000};
	uint32_t k;
	int rc = dg_host_attach(&o, &c->h);

	if (rc)
		return rc;
	c->f = dg_host_flow(c->h, 0);
	for (k = 0; k < NCONNS; k++) {
		c->conn[k] = -1;
		c->reconnect[k] = false;
	}
	c->c.reattach++;
	open_conns(c);
	return 0;
}

static void answer(struct client *c, const struct dg_completion *a)
{
	struct slot *s = &c->slot[a->rpc_id % SLOTS];
	uint32_t k;

	if (!s->live || s->rpc != a->rpc_id) {
		if (was_late(c, a->rpc_id))
			c->c.late++;
		else
			c->c.dup++;
		return;
	}
	s->live = false;
	c->inflight--;
	__atomic_add_fetch(&c->c.answers, 1, __ATOMIC_RELAXED);
	if (a->status == DG_ST_OK) {
		if (a->len == s->len && dg_track_check(a->data, a->len, s->seq))
			c->c.ok++;
		else
			c->c.corrupt++;
		return;
	}
	c->c.failed[a->status < MAX_STATUS ? a->status : MAX_STATUS - 2]++;
	/* A connection that answers UNREACHABLE or NO_CONN: open it anew. */
	if (a->status == DG_ST_UNREACHABLE || a->status == DG_ST_NO_CONN)
		for (k = 0; k < NCONNS; k++)
			if ((uint32_t)c->conn[k] == s->conn)
				c->reconnect[k] = true;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct dg_completion comp[16];
	uint32_t lens = 7u + (uint32_t)c->idx, i;
	uint64_t next_check = 0;

	uint64_t drain_until = 0;

	while (!G.stop && attach(c))
		msleep(200);
	/*
	 * Until the end; then no new calls, and what is in flight gets
	 * CALL_MS to be answered (on this thread: the flow is its own).
	 */
	while (c->h) {
		uint64_t now = now_ms();
		bool need = false;
		int k;

		if (G.stop && !drain_until)
			drain_until = now + CALL_MS;
		if (G.stop && (!c->inflight || now > drain_until))
			break;

		/*
		 * Connections that failed (or never opened) are opened anew
		 * once nothing is in flight (dg_connect wants that): calls
		 * stop for it, every 500 ms at most.
		 */
		for (i = 0; i < NCONNS; i++)
			need |= c->reconnect[i] || c->conn[i] < 0;
		if (need && now >= c->next_open)
			c->draining = true;
		if (c->draining && !c->inflight) {
			open_conns(c);
			c->draining = false;
			c->next_open = now + 500;
		}
		/* Calls, round robin over the connections that work. */
		if (c->inflight < WINDOW && !c->draining && !G.stop) {
			uint32_t kk = c->rr++ % NCONNS, len = pick_len(&lens);
			uint32_t seq = c->next_seq, id;

			dg_track_fill(c->buf, len, seq);
			if (c->conn[kk] >= 0 && !c->reconnect[kk] &&
			    dg_call(c->f, c->conn[kk], FN_ECHO, c->buf, len,
				    &id) == 0) {
				struct slot *s = &c->slot[id % SLOTS];

				if (s->live) { /* cannot be: WINDOW < SLOTS */
					fprintf(stderr, "soak: slot reuse\n");
					exit(3);
				}
				*s = (struct slot){
					.live = true,
					.remote = kk % 2 == 1,
					.rpc = id,
					.seq = seq,
					.len = len,
					.conn = (uint32_t)c->conn[kk],
					.sent_ms = now};
				c->inflight++;
				c->next_seq++;
				c->c.calls++;
			}
		}
		k = dg_poll(c->f, comp, 16);
		for (i = 0; i < (uint32_t)(k > 0 ? k : 0); i++)
			answer(c, &comp[i]);
		if (now < next_check)
			continue;
		next_check = now + 100;
		/* Calls without an answer for CALL_MS: lost. */
		for (i = 0; i < SLOTS; i++)
			if (c->slot[i].live &&
			    now - c->slot[i].sent_ms > CALL_MS) {
				c->slot[i].live = false;
				c->inflight--;
				c->c.lost++;
				c->c.lost_remote += c->slot[i].remote;
				remember_late(c, c->slot[i].rpc);
				fprintf(stderr,
					"soak: client %d: rpc %u (%s conn %#x, "
					"%u bytes) unanswered for %u ms\n",
					c->idx, c->slot[i].rpc,
					c->slot[i].remote ? "remote" : "local",
					c->slot[i].conn, c->slot[i].len,
					CALL_MS);
			}
		if (dg_host_check(c->h) == 0)
			continue;
		/* Our engine is gone: what was in flight ends with it. */
		end_inflight(c, &c->c.engine_gone);
		dg_host_detach(c->h);
		c->h = NULL;
		c->draining = false;
		while (!G.stop && attach(c))
			msleep(200);
	}
	/* Unanswered at the end, with the engine alive: lost. */
	end_inflight(c, &c->c.lost);
	if (c->h)
		dg_host_detach(c->h);
	c->h = NULL;
	return NULL;
}

/* ---- run: engines, servers, kills ------------------------------------- */

struct proc {
	const char *name;
	pid_t pid;
	char *argv[16];
};

static const char *nic_bin, *self_bin;

static pid_t spawn(char *const argv[])
{
	pid_t pid;

	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ)) {
		fprintf(stderr, "soak: cannot start %s\n", argv[0]);
		exit(2);
	}
	return pid;
}

static void kill_proc(struct proc *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
}

/* Starts p if it is not running (a server that exited is restarted). */
static void ensure(struct proc *p)
{
	if (p->pid > 0 && waitpid(p->pid, NULL, WNOHANG) == 0)
		return;
	p->pid = spawn(p->argv);
}

static void print_counts(const struct counts *t, uint32_t kills[3], double secs)
{
	uint64_t failed = 0, ended;
	uint32_t i;

	for (i = 0; i < MAX_STATUS; i++)
		failed += t->failed[i];
	ended = t->ok + t->corrupt + failed + t->engine_gone + t->lost;
	printf("\n== soak: %.0f s, %u server kills, %u peer engine kills, %u "
	       "engine kills\n",
	       secs, kills[0], kills[1], kills[2]);
	printf("calls        %12llu\n", (unsigned long long)t->calls);
	printf("ok           %12llu\n", (unsigned long long)t->ok);
	for (i = 0; i < MAX_STATUS; i++)
		if (t->failed[i])
			printf("failed %-5s %12llu  (%s)\n",
			       i == DG_ST_UNREACHABLE ? "UNRCH"
			       : i == DG_ST_BUSY      ? "BUSY"
			       : i == DG_ST_NO_CONN   ? "NOCON"
						      : "other",
			       (unsigned long long)t->failed[i],
			       dg_status_str((int)i));
	printf("engine gone  %12llu  (in flight when the clients' engine "
	       "died: -ENOTCONN)\n",
	       (unsigned long long)t->engine_gone);
	printf("lost         %12llu  (no answer in %u ms, engine alive; %llu "
	       "through the peer link)\n",
	       (unsigned long long)t->lost, CALL_MS,
	       (unsigned long long)t->lost_remote);
	printf("late         %12llu  (answers to calls counted lost)\n",
	       (unsigned long long)t->late);
	printf("duplicated   %12llu\n", (unsigned long long)t->dup);
	printf("corrupt      %12llu\n", (unsigned long long)t->corrupt);
	printf("accounted    %12llu of %llu calls\n", (unsigned long long)ended,
	       (unsigned long long)t->calls);
	printf("re-attaches %llu, connections opened %llu\n",
	       (unsigned long long)t->reattach,
	       (unsigned long long)t->reconnect);
}

static int run_main(double minutes)
{
	char pa[8], pb[8], ea[80], eb[80];
	struct proc nic_a = {.name = "engine A"}, nic_b = {.name = "engine B"};
	struct proc srv_a = {.name = "server A"}, srv_b = {.name = "server B"};
	uint64_t t0, end, next_kill;
	uint32_t kills[3] = {0}, i, turn = 0, s;
	struct counts tot = {0};
	int rc = 0;

	snprintf(pa, sizeof(pa), "%u", PORT_A);
	snprintf(pb, sizeof(pb), "%u", PORT_B);
	snprintf(ea, sizeof(ea), "%s:%u", G.addr0, PORT_A);
	snprintf(eb, sizeof(eb), "%s:%u", G.addr1, PORT_B);
	nic_a.argv[0] = (char *)nic_bin;
	nic_a.argv[1] = "--listen";
	nic_a.argv[2] = (char *)G.addr0;
	nic_a.argv[3] = "--port";
	nic_a.argv[4] = pa;
	nic_a.argv[5] = "--verbose";
	nic_b = nic_a;
	nic_b.name = "engine B";
	nic_b.argv[2] = (char *)G.addr1;
	nic_b.argv[4] = pb;
	nic_b.argv[6] = "--id";
	nic_b.argv[7] = "2";
	srv_a.argv[0] = (char *)self_bin;
	srv_a.argv[1] = "server";
	srv_a.argv[2] = "--engine";
	srv_a.argv[3] = ea;
	srv_b = srv_a;
	srv_b.name = "server B";
	srv_b.argv[3] = eb;

	ensure(&nic_a);
	ensure(&nic_b);
	msleep(1000); /* the engines listen; servers retry anyway */
	ensure(&srv_a);
	ensure(&srv_b);
	for (i = 0; i < NCLIENTS; i++) {
		G.cl[i].idx = (int)i;
		pthread_create(&G.cl[i].thr, NULL, client_main, &G.cl[i]);
	}
	t0 = now_ms();
	end = t0 + (uint64_t)(minutes * 60000);
	next_kill = t0 + PERIOD_S * 1000;
	while (now_ms() < end) {
		msleep(200);
		/*
		 * Progress, once a second when answers stop, every 10 s
		 * otherwise: where a stall starts and ends next to the kills.
		 */
		{
			static uint64_t last_n, last_t, last_print;
			uint64_t n = 0, t = now_ms();

			for (i = 0; i < NCLIENTS; i++)
				n += __atomic_load_n(&G.cl[i].c.answers,
						     __ATOMIC_RELAXED);
			if (t - last_t >= 1000) {
				if (n == last_n || t - last_print >= 10000) {
					printf("# %.1f s: %llu answers in the "
					       "last %.1f s\n",
					       (t - t0) / 1e3,
					       (unsigned long long)(n - last_n),
					       (t - last_t) / 1e3);
					last_print = t;
				}
				last_n = n;
				last_t = t;
			}
		}
		/* Servers exit when their engine dies; start them again. */
		ensure(&srv_a);
		ensure(&srv_b);
		if (now_ms() < next_kill || now_ms() + 5000 > end)
			continue;
		switch (turn++ % 3) {
		case 0:
			printf("# %.1f s: kill server A\n",
			       (now_ms() - t0) / 1e3);
			kill_proc(&srv_a);
			kills[0]++;
			msleep(DOWN_MS);
			break;
		case 1:
			printf("# %.1f s: kill engine B (peer)\n",
			       (now_ms() - t0) / 1e3);
			kill_proc(&nic_b);
			kills[1]++;
			msleep(DOWN_MS);
			ensure(&nic_b);
			break;
		default:
			printf("# %.1f s: kill engine A (the clients')\n",
			       (now_ms() - t0) / 1e3);
			kill_proc(&nic_a);
			kills[2]++;
			msleep(DOWN_MS);
			ensure(&nic_a);
			break;
		}
		fflush(stdout);
		next_kill = now_ms() + PERIOD_S * 1000;
	}
	/* The end: no new calls; what is in flight gets CALL_MS to end. */
	G.stop = 1;
	/* The engines' counters, on their stderr, for the record. */
	if (nic_a.pid > 0)
		kill(nic_a.pid, SIGUSR1);
	if (nic_b.pid > 0)
		kill(nic_b.pid, SIGUSR1);
	for (i = 0; i < NCLIENTS; i++)
		pthread_join(G.cl[i].thr, NULL);
	for (i = 0; i < NCLIENTS; i++) {
		struct client *c = &G.cl[i];

		tot.calls += c->c.calls;
		tot.ok += c->c.ok;
		tot.corrupt += c->c.corrupt;
		tot.engine_gone += c->c.engine_gone;
		tot.lost += c->c.lost;
		tot.lost_remote += c->c.lost_remote;
		tot.dup += c->c.dup;
		tot.late += c->c.late;
		tot.reattach += c->c.reattach;
		tot.reconnect += c->c.reconnect;
		for (s = 0; s < MAX_STATUS; s++)
			tot.failed[s] += c->c.failed[s];
	}
	kill_proc(&srv_a);
	kill_proc(&srv_b);
	kill_proc(&nic_a);
	kill_proc(&nic_b);
	print_counts(&tot, kills, (now_ms() - t0) / 1e3);
	{
		uint64_t failed = 0;

		for (s = 0; s < MAX_STATUS; s++)
			failed += tot.failed[s];
		if (tot.ok + tot.corrupt + failed + tot.engine_gone +
			    tot.lost !=
		    tot.calls) {
			printf("soak: FAIL: the accounting does not add up\n");
			rc = 1;
		}
	}
	if (tot.lost || tot.dup || tot.corrupt || !tot.ok) {
		printf("soak: FAIL: %s\n",
		       !tot.ok ? "no call succeeded"
			       : "calls lost, duplicated or corrupt");
		rc = 1;
	} else {
		printf("soak: every call ended exactly once\n");
	}
	return rc;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: dagger-soak run --minutes M --nic PATH [--addr0 A "
		"--addr1 B]\n"
		"       dagger-soak server --engine ADDR:PORT\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"minutes", required_argument, NULL, 'm'},
		{"nic", required_argument, NULL, 'n'},
		{"addr0", required_argument, NULL, 'a'},
		{"addr1", required_argument, NULL, 'b'},
		{"engine", required_argument, NULL, 'e'},
		{NULL, 0, NULL, 0},
	};
	const char *engine = NULL;
	double minutes = 1;
	int c;

	if (argc < 2) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	G.addr0 = getenv("DG_RXE_ADDR0");
	G.addr1 = getenv("DG_RXE_ADDR1");
	optind = 2;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			minutes = strtod(optarg, NULL);
			break;
		case 'n':
			nic_bin = optarg;
			break;
		case 'a':
			G.addr0 = optarg;
			break;
		case 'b':
			G.addr1 = optarg;
			break;
		case 'e':
			engine = optarg;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (!strcmp(argv[1], "server") && engine)
		return server_main(engine);
	if (strcmp(argv[1], "run") || !nic_bin || !G.addr0 || !G.addr1 ||
	    minutes <= 0) {
		usage();
		return 2;
	}
	self_bin = "/proc/self/exe";
	{
		static char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n > 0) {
			self[n] = 0;
			self_bin = self;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	return run_main(minutes);
}
