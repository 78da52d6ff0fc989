// SPDX-License-Identifier: MIT
/*
 * dagger-ctl: talks to a running dagger-nic through its control socket
 * (nic/ctl.c, protocol in docs/DEPLOY.md): statistics (as tables, JSON
 * or the Prometheus text format), live rates (top), live settings,
 * tenants and services, reload.
 *
 *   dagger-ctl (--ctl PATH | --config FILE [--engine NAME]) [--json]
 *              [--timeout MS] COMMAND [ARGS]
 *
 * Every command takes --json (the engine's answer as it sent it, one
 * line). Errors are one line on stderr and exit status 1 (2: bad usage).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dagger/deploy.h"
#include "dg_hist.h"
#include "dg_json.h"

static struct {
	const char *ctl, *config, *engine;
	bool json;
	int timeout_ms;
	char path[256];
} G = {.timeout_ms = 5000};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dagger-ctl (--ctl PATH | --config FILE [--engine "
		"NAME]) [options] COMMAND\n"
		"Talks to a running dagger-nic through its control socket.\n"
		"  --ctl PATH          the engine's control socket\n"
		"  --config FILE       a deployment description: the socket of "
		"its engine\n"
		"  --engine NAME       which engine of FILE (default: the only "
		"one)\n"
		"  --json              the engine's answer as JSON (one line)\n"
		"  --timeout MS        how long to wait for an answer (5000)\n"
		"commands:\n"
		"  stats [--prometheus] [--hist]  counters per tenant, flow, "
		"service,\n"
		"                      peer link; per-service latency "
		"(--prometheus: the\n"
		"                      Prometheus text format; --hist: with "
		"--json, the\n"
		"                      latency histograms' buckets)\n"
		"  top [--count N] [--interval S]  rates every S seconds (1), "
		"N times\n"
		"                      (default: until interrupted)\n"
		"  get                 the engine's settings\n"
		"  set NAME VALUE      batch, spin_us, idle_us, poll_max_us, "
		"peer_timeout_ms,\n"
		"                      verbose, hold_us\n"
		"  set policy SERVICE rr|static|random|key\n"
		"  set mode TENANT poll|doorbell|push  an RDMA tenant's "
		"interface mode\n"
		"  tenant list | tenant drain ID [--off] | tenant evict ID\n"
		"  service list\n"
		"  reload              re-read the engine's description (as "
		"SIGHUP)\n"
		"  hello               protocol version and commands\n"
		"Exit status: 0 done, 1 the engine refused or cannot be "
		"reached (the\n"
		"reason is printed), 2 bad usage.\n");
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("dagger-ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void bad_usage(const char *fmt, ...)
	__attribute__((format(printf, 1, 2))) __attribute__((noreturn));

static void bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("dagger-ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (dagger-ctl --help)\n", stderr);
	exit(2);
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* ---- the connection ------------------------------------------------------ */

static int sock = -1;
static char *rbuf;
static size_t rlen, rcap;

static void ctl_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	if (strlen(G.path) >= sizeof(a.sun_path))
		die("%s: path too long for a unix socket", G.path);
	strcpy(a.sun_path, G.path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		die("socket: %s", strerror(errno));
	if (connect(sock, (struct sockaddr *)&a, sizeof(a)))
		die("cannot reach the engine at %s: %s%s", G.path,
		    strerror(errno),
		    errno == ENOENT || errno == ECONNREFUSED
			    ? " (is dagger-nic running, with this control "
			      "socket?)"
		    : errno == EACCES ? " (the socket's mode and group, and "
					"its directory, decide who may)"
				      : "");
}

/*
 * Sends one request line and returns the answer, parsed (exits on any
 * failure, the engine's own errors included unless keep_err).
 */
static struct dg_json *request(const char *req, bool keep_err, char **raw)
{
	uint64_t until = now_ms() + (uint64_t)G.timeout_ms;
	size_t len = strlen(req), off = 0;
	struct dg_json *j;
	char err[200], *nl;

	if (sock < 0)
		ctl_connect();
	while (off < len) {
		ssize_t w = send(sock, req + off, len - off, MSG_NOSIGNAL);

		if (w < 0)
			die("sending to %s: %s", G.path, strerror(errno));
		off += (size_t)w;
	}
	if (send(sock, "\n", 1, MSG_NOSIGNAL) != 1)
		die("sending to %s: %s", G.path, strerror(errno));
	rlen = 0;
	for (;;) {
		struct pollfd p = {sock, POLLIN, 0};
		uint64_t now = now_ms();
		ssize_t r;

		if (rlen && (nl = memchr(rbuf, '\n', rlen)))
			break;
		if (now >= until)
			die("no answer from the engine at %s within %d ms",
			    G.path, G.timeout_ms);
		if (poll(&p, 1, (int)(until - now)) <= 0)
			continue;
		if (rcap - rlen < 65536) {
			rcap = rcap ? rcap * 2 : 1 << 20;
			rbuf = realloc(rbuf, rcap);
			if (!rbuf)
				die("out of memory");
		}
		r = recv(sock, rbuf + rlen, rcap - rlen, 0);
		if (r <= 0)
			die("the engine at %s closed the connection%s%s",
			    G.path, r < 0 ? ": " : "",
			    r < 0 ? strerror(errno) : "");
		rlen += (size_t)r;
	}
	*nl = 0;
	if (dg_json_parse(rbuf, (size_t)(nl - rbuf), &j, err, sizeof(err)))
		die("the engine's answer is not JSON: %s", err);
	if (raw)
		*raw = rbuf;
	if (!keep_err && dg_json_get(j, "ok") && !dg_json_get(j, "ok")->b) {
		const char *e = dg_json_str(j, "error");

		die("%s", e ? e : "the engine refused, giving no reason");
	}
	return j;
}

/* Sends req; --json prints the answer as it came; returns it parsed. */
static struct dg_json *simple(const char *req)
{
	char *raw;
	struct dg_json *j = request(req, false, &raw);

	if (G.json) {
		puts(raw);
		fflush(stdout);
	}
	return j;
}

/* ---- helpers over answers -------------------------------------------------
 */

#define U(o, k) ((unsigned long long)dg_json_uint((o), (k), 0))

static const struct dg_json *arr(const struct dg_json *o, const char *k)
{
	const struct dg_json *a = dg_json_get(o, k);

	return a && a->type == DG_JSON_ARR ? a : NULL;
}

/* The element of array a whose member key is v. */
static const struct dg_json *find(const struct dg_json *a, const char *key,
				  uint64_t v)
{
	const struct dg_json *e;

	for (e = a ? a->child : NULL; e; e = e->next)
		if (dg_json_uint(e, key, UINT64_MAX) == v)
			return e;
	return NULL;
}

static const char *b2s(const struct dg_json *o, const char *k)
{
	const struct dg_json *b = dg_json_get(o, k);

	return b && b->type == DG_JSON_BOOL && b->b ? "yes" : "no";
}

/* ---- stats -----------------------------------------------------------------
 */

static void print_flow_row(const struct dg_json *f)
{
	const struct dg_json *d = dg_json_get(f, "drops"), *r;
	unsigned long long drops = 0, reads = U(f, "reads");

	for (r = d ? d->child : NULL; r; r = r->next)
		drops += r->is_uint ? r->u : 0;
	printf("  %4llu %10llu %10llu %12llu %10llu %10llu %9llu %6.1f %8llu "
	       "%6llu %7llu %6llu %7llu %7llu\n",
	       U(f, "flow"), U(f, "rpcs_tx"), U(f, "frames_tx"),
	       U(f, "bytes_tx"), U(f, "rpcs_rx"), U(f, "frames_rx"), reads,
	       reads ? (double)U(f, "read_slots") / (double)reads : 0.0,
	       U(f, "writes"), U(f, "busy"), U(f, "stalled"), drops,
	       U(f, "pending"), U(f, "rx_credits"));
}

static void print_stats(const struct dg_json *j)
{
	const struct dg_json *e = dg_json_get(j, "engine"), *t, *s, *p, *c;
	const struct dg_json *cs = dg_json_get(e, "conns");

	printf("engine %llu: up %.1f s, %llu tenants (%llu shared memory), "
	       "%llu services, %llu peer links, %llu connections (open %llu, "
	       "binding %llu, remote %llu, inbound %llu, dead %llu), %llu "
	       "attaches refused, %llu over a tenant's share, %llu REGISTERs "
	       "into another tenant's service\n",
	       U(e, "id"), dg_json_num(e, "uptime_s", 0), U(e, "tenants"),
	       U(e, "shm_tenants"), U(e, "services"), U(e, "peers"),
	       U(cs, "total"), U(cs, "open"), U(cs, "binding"), U(cs, "remote"),
	       U(cs, "inbound"), U(cs, "dead"), U(e, "attach_refused"),
	       U(e, "quota_refused"), U(e, "denied"));
	for (t = arr(j, "tenants") ? arr(j, "tenants")->child : NULL; t;
	     t = t->next) {
		printf("tenant %llu (%s, %llu flows x %llu slots%s%s): %llu "
		       "connections, %llu requests pending\n",
		       U(t, "id"), dg_json_str(t, "kind"), U(t, "flows"),
		       U(t, "slots"),
		       !strcmp(b2s(t, "draining"), "yes") ? ", draining" : "",
		       !strcmp(b2s(t, "dead"), "yes") ? ", dead" : "",
		       U(t, "conns"), U(t, "pending"));
		printf("  %4s %10s %10s %12s %10s %10s %9s %6s %8s %6s %7s "
		       "%6s %7s %7s\n",
		       "flow", "rpcs_tx", "frames_tx", "bytes_tx", "rpcs_rx",
		       "frames_rx", "reads", "batch", "writes", "busy",
		       "stalled", "drops", "pending", "credits");
		for (c = arr(t, "flow") ? arr(t, "flow")->child : NULL; c;
		     c = c->next)
			print_flow_row(c);
	}
	for (s = arr(j, "services") ? arr(j, "services")->child : NULL; s;
	     s = s->next) {
		const struct dg_json *l = dg_json_get(s, "latency"), *v;

		printf("service %s: policy %s%s, %llu server flows (%llu take "
		       "requests), %llu connections\n",
		       dg_json_str(s, "name"), dg_json_str(s, "policy"),
		       !strcmp(b2s(s, "policy_set"), "yes") ? " (set)" : "",
		       (unsigned long long)(arr(s, "servers")
						    ? arr(s, "servers")->n
						    : 0),
		       U(s, "active"), U(s, "conns"));
		printf("  requests %llu, responses %llu, busy %llu, "
		       "unreachable %llu; latency at the engine: p50 %.1f us, "
		       "p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
		       U(s, "requests"), U(s, "responses"), U(s, "busy"),
		       U(s, "unreachable"), dg_json_num(l, "p50_us", 0),
		       dg_json_num(l, "p99_us", 0),
		       dg_json_num(l, "p999_us", 0),
		       dg_json_num(l, "max_ns", 0) / 1e3);
		printf("  servers (tenant/flow):");
		for (v = arr(s, "servers") ? arr(s, "servers")->child : NULL; v;
		     v = v->next)
			printf(" %llu/%llu%s", U(v, "tenant"), U(v, "flow"),
			       !strcmp(b2s(v, "draining"), "yes")
				       ? " (draining)"
				       : "");
		printf("\n");
	}
	for (p = arr(j, "peers") ? arr(j, "peers")->child : NULL; p;
	     p = p->next)
		printf("peer %llu %s:%llu (engine %llu, %s%s): rpcs tx %llu rx "
		       "%llu, frames tx %llu rx %llu, busy %llu, drops %llu, "
		       "credits %llu, credit stalls %llu, keepalives %llu\n",
		       U(p, "id"),
		       dg_json_str(p, "addr")[0] ? dg_json_str(p, "addr")
						 : "inbound",
		       U(p, "port"), U(p, "engine"),
		       !strcmp(b2s(p, "up"), "yes") ? "up" : "down",
		       !strcmp(b2s(p, "outbound"), "yes") ? ", outbound" : "",
		       U(p, "rpcs_tx"), U(p, "rpcs_rx"), U(p, "frames_tx"),
		       U(p, "frames_rx"), U(p, "busy"), U(p, "drops"),
		       U(p, "credits"), U(p, "credit_stalls"),
		       U(p, "keepalives"));
}

/* ---- Prometheus ------------------------------------------------------------
 */

/* A label value: \, " and newline escaped. */
static void plabel(const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			printf("\\%c", *s);
		else if (*s == '\n')
			printf("\\n");
		else
			putchar(*s);
	}
}

static void phead(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const flow_counters[][2] = {
	{"rpcs_tx", "messages (RPCs and control) the engine took from the "
		    "flow's TX ring"},
	{"frames_tx", "frames the engine took from the flow's TX ring"},
	{"bytes_tx", "payload bytes the engine took from the flow's TX ring"},
	{"rpcs_rx", "messages the engine delivered into the flow's RX ring"},
	{"frames_rx", "frames the engine delivered into the flow's RX ring"},
	{"reads", "RDMA READs of the flow's TX ring"},
	{"read_slots", "TX slots those READs covered (batch = read_slots / "
		       "reads)"},
	{"writes", "RDMA WRITEs into the flow's RX ring"},
	{"busy", "requests refused (BUSY) because the flow's RX ring was "
		 "full"},
	{"stalled", "times an RPC from the flow waited for room"},
	{"dropped", "answers to the flow dropped (DROPPED) because its RX "
		    "ring stayed full past the hold bound"},
};

static void print_prometheus(const struct dg_json *j)
{
	const struct dg_json *e = dg_json_get(j, "engine");
	const struct dg_json *ts = arr(j, "tenants"), *ss = arr(j, "services");
	const struct dg_json *ps = arr(j, "peers"), *t, *f, *s, *p, *c;
	unsigned long long id = U(e, "id");
	char name[128];
	size_t i;

	phead("dagger_engine_uptime_seconds", "gauge",
	      "Seconds since the engine started.");
	printf("dagger_engine_uptime_seconds{engine=\"%llu\"} %.3f\n", id,
	       dg_json_num(e, "uptime_s", 0));
	phead("dagger_engine_tenants", "gauge", "Attached tenants (hosts).");
	printf("dagger_engine_tenants{engine=\"%llu\"} %llu\n", id,
	       U(e, "tenants"));
	phead("dagger_engine_peers", "gauge", "Peer links up.");
	printf("dagger_engine_peers{engine=\"%llu\"} %llu\n", id,
	       U(e, "peers"));
	phead("dagger_engine_attach_refused_total", "counter",
	      "Attaches refused (RDMA and shared memory).");
	printf("dagger_engine_attach_refused_total{engine=\"%llu\"} %llu\n", id,
	       U(e, "attach_refused"));
	phead("dagger_engine_quota_refused_total", "counter",
	      "OPENs and REGISTERs refused over a tenant's share.");
	printf("dagger_engine_quota_refused_total{engine=\"%llu\"} %llu\n", id,
	       U(e, "quota_refused"));
	phead("dagger_engine_register_denied_total", "counter",
	      "REGISTERs refused: another tenant's service.");
	printf("dagger_engine_register_denied_total{engine=\"%llu\"} %llu\n",
	       id, U(e, "denied"));
	phead("dagger_engine_connections", "gauge",
	      "Connections in the engine's table, by state.");
	for (c = dg_json_get(e, "conns") ? dg_json_get(e, "conns")->child
					 : NULL;
	     c; c = c->next)
		if (strcmp(c->key, "total"))
			printf("dagger_engine_connections{engine=\"%llu\","
			       "state=\"%s\"} %llu\n",
			       id, c->key, (unsigned long long)c->u);
	for (i = 0; i < sizeof(flow_counters) / sizeof(flow_counters[0]); i++) {
		snprintf(name, sizeof(name), "dagger_flow_%s_total",
			 flow_counters[i][0]);
		phead(name, "counter", flow_counters[i][1]);
		for (t = ts ? ts->child : NULL; t; t = t->next)
			for (f = arr(t, "flow") ? arr(t, "flow")->child : NULL;
			     f; f = f->next)
				printf("%s{engine=\"%llu\",tenant=\"%llu\","
				       "flow=\"%llu\"} %llu\n",
				       name, id, U(t, "id"), U(f, "flow"),
				       U(f, flow_counters[i][0]));
	}
	phead("dagger_flow_drops_total", "counter",
	      "Frames or messages from the flow the engine dropped, by "
	      "reason.");
	for (t = ts ? ts->child : NULL; t; t = t->next)
		for (f = arr(t, "flow") ? arr(t, "flow")->child : NULL; f;
		     f = f->next)
			for (c = dg_json_get(f, "drops")
					 ? dg_json_get(f, "drops")->child
					 : NULL;
			     c; c = c->next)
				printf("dagger_flow_drops_total{engine=\"%"
				       "llu\","
				       "tenant=\"%llu\",flow=\"%llu\",reason="
				       "\"%s\"} %llu\n",
				       id, U(t, "id"), U(f, "flow"), c->key,
				       (unsigned long long)c->u);
	phead("dagger_flow_pending", "gauge",
	      "Requests the flow was handed (or sent through a peer link) and "
	      "has not had answered.");
	for (t = ts ? ts->child : NULL; t; t = t->next)
		for (f = arr(t, "flow") ? arr(t, "flow")->child : NULL; f;
		     f = f->next)
			printf("dagger_flow_pending{engine=\"%llu\",tenant="
			       "\"%llu\",flow=\"%llu\"} %llu\n",
			       id, U(t, "id"), U(f, "flow"), U(f, "pending"));
	phead("dagger_flow_rx_credits", "gauge",
	      "Free slots of the flow's RX ring as the engine last knew.");
	for (t = ts ? ts->child : NULL; t; t = t->next)
		for (f = arr(t, "flow") ? arr(t, "flow")->child : NULL; f;
		     f = f->next)
			printf("dagger_flow_rx_credits{engine=\"%llu\",tenant="
			       "\"%llu\",flow=\"%llu\"} %llu\n",
			       id, U(t, "id"), U(f, "flow"),
			       U(f, "rx_credits"));
	{
		static const char *const sc[][2] = {
			{"requests", "Requests delivered to a server flow."},
			{"busy", "Requests answered BUSY (server ring full, or "
				 "every server draining)."},
			{"unreachable", "Requests answered UNREACHABLE (no "
					"server there)."},
		};

		for (i = 0; i < 3; i++) {
			snprintf(name, sizeof(name), "dagger_service_%s_total",
				 sc[i][0]);
			phead(name, "counter", sc[i][1]);
			for (s = ss ? ss->child : NULL; s; s = s->next) {
				printf("%s{engine=\"%llu\",service=\"", name,
				       id);
				plabel(dg_json_str(s, "name"));
				printf("\"} %llu\n", U(s, sc[i][0]));
			}
		}
	}
	phead("dagger_service_servers", "gauge",
	      "Server flows of the service that take requests.");
	for (s = ss ? ss->child : NULL; s; s = s->next) {
		printf("dagger_service_servers{engine=\"%llu\",service=\"", id);
		plabel(dg_json_str(s, "name"));
		printf("\"} %llu\n", U(s, "active"));
	}
	phead("dagger_service_latency_seconds", "summary",
	      "Time from the engine seeing a request to it seeing the "
	      "response.");
	for (s = ss ? ss->child : NULL; s; s = s->next) {
		const struct dg_json *l = dg_json_get(s, "latency");
		static const char *const q[][2] = {{"0.5", "p50_us"},
						   {"0.99", "p99_us"},
						   {"0.999", "p999_us"}};

		for (i = 0; i < 3; i++) {
			printf("dagger_service_latency_seconds{engine=\"%llu\","
			       "service=\"",
			       id);
			plabel(dg_json_str(s, "name"));
			printf("\",quantile=\"%s\"} %.9f\n", q[i][0],
			       dg_json_num(l, q[i][1], 0) / 1e6);
		}
		printf("dagger_service_latency_seconds_sum{engine=\"%llu\","
		       "service=\"",
		       id);
		plabel(dg_json_str(s, "name"));
		printf("\"} %.9f\n", (double)U(l, "sum_ns") / 1e9);
		printf("dagger_service_latency_seconds_count{engine=\"%llu\","
		       "service=\"",
		       id);
		plabel(dg_json_str(s, "name"));
		printf("\"} %llu\n", U(l, "count"));
	}
	{
		static const char *const pc[][2] = {
			{"rpcs_tx", "Messages sent on the peer link."},
			{"rpcs_rx", "Messages received on the peer link."},
			{"frames_tx", "Frames sent on the peer link."},
			{"frames_rx", "Frames received on the peer link."},
			{"busy", "Requests from the peer answered BUSY."},
			{"drops", "Frames from the peer dropped."},
			{"credit_stalls", "Batches ready that had no credit."},
			{"keepalives", "Keepalive messages sent."},
		};

		for (i = 0; i < sizeof(pc) / sizeof(pc[0]); i++) {
			snprintf(name, sizeof(name), "dagger_peer_%s_total",
				 pc[i][0]);
			phead(name, "counter", pc[i][1]);
			for (p = ps ? ps->child : NULL; p; p = p->next)
				printf("%s{engine=\"%llu\",peer=\"%llu\","
				       "remote_engine=\"%llu\"} %llu\n",
				       name, id, U(p, "id"), U(p, "engine"),
				       U(p, pc[i][0]));
		}
	}
	phead("dagger_peer_up", "gauge", "1 while the peer link is up.");
	for (p = ps ? ps->child : NULL; p; p = p->next)
		printf("dagger_peer_up{engine=\"%llu\",peer=\"%llu\","
		       "remote_engine=\"%llu\"} %d\n",
		       id, U(p, "id"), U(p, "engine"),
		       !strcmp(b2s(p, "up"), "yes"));
	phead("dagger_peer_credits", "gauge",
	      "The peer's receive buffers this engine may still fill.");
	for (p = ps ? ps->child : NULL; p; p = p->next)
		printf("dagger_peer_credits{engine=\"%llu\",peer=\"%llu\","
		       "remote_engine=\"%llu\"} %llu\n",
		       id, U(p, "id"), U(p, "engine"), U(p, "credits"));
}

/* ---- top
 * --------------------------------------------------------------------- */

static volatile sig_atomic_t stop;

static void on_int(int sig)
{
	(void)sig;
	stop = 1;
}

/* A counter's growth from a to b (0 when it went down: a restart). */
static double delta(const struct dg_json *a, const struct dg_json *b,
		    const char *k)
{
	uint64_t x = a ? dg_json_uint(a, k, 0) : 0, y = dg_json_uint(b, k, 0);

	return y >= x ? (double)(y - x) : 0;
}

/* Bucket counts of a latency object ("buckets": [[i, n]...]). */
static void buckets(const struct dg_json *l, uint64_t *b)
{
	const struct dg_json *a = l ? dg_json_get(l, "buckets") : NULL, *e;

	memset(b, 0, DG_HIST_BUCKETS * sizeof(*b));
	for (e = a && a->type == DG_JSON_ARR ? a->child : NULL; e; e = e->next)
		if (e->type == DG_JSON_ARR && e->n == 2 && e->child->is_uint &&
		    e->child->next->is_uint && e->child->u < DG_HIST_BUCKETS)
			b[e->child->u] = e->child->next->u;
}

static void top_once(const struct dg_json *a, const struct dg_json *b,
		     double secs, uint64_t round)
{
	static uint64_t ba[DG_HIST_BUCKETS], bb[DG_HIST_BUCKETS];
	const struct dg_json *ta =
		dg_json_get(dg_json_get(a, "engine"), "totals");
	const struct dg_json *tb =
		dg_json_get(dg_json_get(b, "engine"), "totals");
	const struct dg_json *s, *t, *f, *p;
	double reads = delta(ta, tb, "reads");
	bool first;
	uint32_t i;

	if (G.json) {
		printf("{\"round\":%llu,\"seconds\":%.3f,\"totals\":{"
		       "\"rpcs_tx_s\":%.1f,\"rpcs_rx_s\":%.1f,"
		       "\"bytes_tx_s\":%.1f,\"reads_s\":%.1f,\"batch\":%.2f,"
		       "\"busy_s\":%.1f},\"services\":[",
		       (unsigned long long)round, secs,
		       delta(ta, tb, "rpcs_tx") / secs,
		       delta(ta, tb, "rpcs_rx") / secs,
		       delta(ta, tb, "bytes_tx") / secs, reads / secs,
		       reads ? delta(ta, tb, "read_slots") / reads : 0,
		       delta(ta, tb, "busy") / secs);
	} else {
		if (isatty(STDOUT_FILENO))
			printf("\033[H\033[2J");
		printf("dagger-ctl top: engine %llu at %s, every %.1f s "
		       "(round %llu)\n\n",
		       U(dg_json_get(b, "engine"), "id"), G.path, secs,
		       (unsigned long long)round);
		printf("%-24s %10s %10s %10s %9s %7s %8s\n", "total",
		       "rpcs_in/s", "rpcs_out/s", "MB_in/s", "reads/s", "batch",
		       "busy/s");
		printf("%-24s %10.0f %10.0f %10.2f %9.0f %7.1f %8.0f\n\n", "",
		       delta(ta, tb, "rpcs_tx") / secs,
		       delta(ta, tb, "rpcs_rx") / secs,
		       delta(ta, tb, "bytes_tx") / secs / 1e6, reads / secs,
		       reads ? delta(ta, tb, "read_slots") / reads : 0,
		       delta(ta, tb, "busy") / secs);
		printf("%-24s %10s %8s %10s %10s %10s %8s\n", "service",
		       "req/s", "busy/s", "p50_us", "p99_us", "p99.9_us",
		       "servers");
	}
	first = true;
	for (s = arr(b, "services") ? arr(b, "services")->child : NULL; s;
	     s = s->next) {
		const struct dg_json *sa = find(arr(a, "services"), "id",
						dg_json_uint(s, "id", 0));
		uint64_t n = 0, mx = 0;
		double q[3];

		if (sa &&
		    strcmp(dg_json_str(sa, "name"), dg_json_str(s, "name")))
			sa = NULL; /* the slot was reused */
		buckets(sa ? dg_json_get(sa, "latency") : NULL, ba);
		buckets(dg_json_get(s, "latency"), bb);
		for (i = 0; i < DG_HIST_BUCKETS; i++) {
			bb[i] = bb[i] >= ba[i] ? bb[i] - ba[i] : 0;
			n += bb[i];
			if (bb[i])
				mx = (uint64_t)dg_hist_value(i);
		}
		q[0] = dg_hist_quantile(bb, n, mx, 0.5) / 1e3;
		q[1] = dg_hist_quantile(bb, n, mx, 0.99) / 1e3;
		q[2] = dg_hist_quantile(bb, n, mx, 0.999) / 1e3;
		if (G.json) {
			printf("%s{\"name\":", first ? "" : ",");
			first = false;
			{
				struct dg_buf o;

				dg_buf_init(&o, 0);
				dg_buf_jstr(&o, dg_json_str(s, "name"));
				fputs(o.p ? o.p : "\"\"", stdout);
				dg_buf_free(&o);
			}
			printf(",\"requests_s\":%.1f,\"busy_s\":%.1f,"
			       "\"responses\":%llu,\"p50_us\":%.3f,"
			       "\"p99_us\":%.3f,\"p999_us\":%.3f,"
			       "\"active\":%llu}",
			       delta(sa, s, "requests") / secs,
			       delta(sa, s, "busy") / secs,
			       (unsigned long long)n, q[0], q[1], q[2],
			       U(s, "active"));
		} else {
			printf("%-24.24s %10.0f %8.0f %10.1f %10.1f %10.1f "
			       "%8llu\n",
			       dg_json_str(s, "name"),
			       delta(sa, s, "requests") / secs,
			       delta(sa, s, "busy") / secs, q[0], q[1], q[2],
			       U(s, "active"));
		}
	}
	if (G.json)
		printf("],\"flows\":[");
	else
		printf("\n%-6s %-5s %-5s %10s %10s %9s %7s %8s %8s\n", "tenant",
		       "kind", "flow", "rpcs_tx/s", "rpcs_rx/s", "reads/s",
		       "batch", "busy/s", "pending");
	first = true;
	for (t = arr(b, "tenants") ? arr(b, "tenants")->child : NULL; t;
	     t = t->next) {
		const struct dg_json *tp =
			find(arr(a, "tenants"), "id", dg_json_uint(t, "id", 0));

		for (f = arr(t, "flow") ? arr(t, "flow")->child : NULL; f;
		     f = f->next) {
			const struct dg_json *fa =
				tp ? find(arr(tp, "flow"), "flow",
					  dg_json_uint(f, "flow", 0))
				   : NULL;
			double r = delta(fa, f, "reads");
			double tx = delta(fa, f, "rpcs_tx"),
			       rx = delta(fa, f, "rpcs_rx");

			if (!G.json && !tx && !rx && !U(f, "pending"))
				continue; /* idle flows: not worth a line */
			if (G.json) {
				printf("%s{\"tenant\":%llu,\"flow\":%llu,"
				       "\"rpcs_tx_s\":%.1f,\"rpcs_rx_s\":%.1f,"
				       "\"reads_s\":%.1f,\"busy_s\":%.1f,"
				       "\"pending\":%llu}",
				       first ? "" : ",", U(t, "id"),
				       U(f, "flow"), tx / secs, rx / secs,
				       r / secs, delta(fa, f, "busy") / secs,
				       U(f, "pending"));
				first = false;
				continue;
			}
			printf("%-6llu %-5s %-5llu %10.0f %10.0f %9.0f %7.1f "
			       "%8.0f %8llu\n",
			       U(t, "id"), dg_json_str(t, "kind"), U(f, "flow"),
			       tx / secs, rx / secs, r / secs,
			       r ? delta(fa, f, "read_slots") / r : 0,
			       delta(fa, f, "busy") / secs, U(f, "pending"));
		}
	}
	if (G.json)
		printf("],\"peers\":[");
	else if (arr(b, "peers") && arr(b, "peers")->n)
		printf("\n%-5s %-22s %-5s %10s %10s %8s %8s\n", "peer",
		       "address", "up", "rpcs_tx/s", "rpcs_rx/s", "busy/s",
		       "credits");
	first = true;
	for (p = arr(b, "peers") ? arr(b, "peers")->child : NULL; p;
	     p = p->next) {
		const struct dg_json *pa =
			find(arr(a, "peers"), "id", dg_json_uint(p, "id", 0));

		if (G.json) {
			printf("%s{\"peer\":%llu,\"up\":%s,\"rpcs_tx_s\":%.1f,"
			       "\"rpcs_rx_s\":%.1f,\"credits\":%llu}",
			       first ? "" : ",", U(p, "id"),
			       !strcmp(b2s(p, "up"), "yes") ? "true" : "false",
			       delta(pa, p, "rpcs_tx") / secs,
			       delta(pa, p, "rpcs_rx") / secs, U(p, "credits"));
			first = false;
			continue;
		}
		printf("%-5llu %-22.22s %-5s %10.0f %10.0f %8.0f %8llu\n",
		       U(p, "id"),
		       dg_json_str(p, "addr")[0] ? dg_json_str(p, "addr")
						 : "inbound",
		       b2s(p, "up"), delta(pa, p, "rpcs_tx") / secs,
		       delta(pa, p, "rpcs_rx") / secs,
		       delta(pa, p, "busy") / secs, U(p, "credits"));
	}
	if (G.json)
		printf("]}\n");
	fflush(stdout);
}

static int cmd_top(int argc, char **argv)
{
	static const struct option lo[] = {{"count", 1, 0, 'c'},
					   {"interval", 1, 0, 'i'},
					   {"json", 0, 0, 'j'},
					   {0, 0, 0, 0}};
	unsigned long count = 0;
	double iv = 1;
	struct dg_json *a, *b;
	uint64_t t0, t1, round = 0;
	char *end;
	int o;

	optind = 0;
	while ((o = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			count = strtoul(optarg, &end, 10);
			if (*end || !count)
				bad_usage("top: --count must be a number > 0");
			break;
		case 'i':
			iv = strtod(optarg, &end);
			if (*end || iv < 0.05 || iv > 3600)
				bad_usage("top: --interval must be 0.05..3600 "
					  "seconds");
			break;
		case 'j':
			G.json = true;
			break;
		default:
			bad_usage("top: unknown option");
		}
	}
	if (optind < argc)
		bad_usage("top: unexpected \"%s\"", argv[optind]);
	signal(SIGINT, on_int);
	signal(SIGTERM, on_int);
	a = request("{\"v\":1,\"cmd\":\"stats\",\"hist\":true}", false, NULL);
	t0 = now_ms();
	while (!stop && (!count || round < count)) {
		struct timespec d = {(time_t)iv,
				     (long)((iv - (double)(time_t)iv) * 1e9)};

		/* A pause between samples, interrupted by a signal. */
		nanosleep(&d, NULL);
		if (stop)
			break;
		b = request("{\"v\":1,\"cmd\":\"stats\",\"hist\":true}", false,
			    NULL);
		t1 = now_ms();
		top_once(a, b, t1 > t0 ? (double)(t1 - t0) / 1e3 : iv, ++round);
		dg_json_free(a);
		a = b;
		t0 = t1;
	}
	dg_json_free(a);
	return 0;
}

/* ---- the other commands
 * ------------------------------------------------------ */

static void print_tenants(const struct dg_json *j)
{
	const struct dg_json *t;

	printf("%-6s %-6s %6s %6s %9s %8s %5s %6s\n", "tenant", "kind", "flows",
	       "slots", "draining", "pending", "conns", "dead");
	for (t = arr(j, "tenants") ? arr(j, "tenants")->child : NULL; t;
	     t = t->next)
		printf("%-6llu %-6s %6llu %6llu %9s %8llu %5llu %6s\n",
		       U(t, "id"), dg_json_str(t, "kind"), U(t, "flows"),
		       U(t, "slots"), b2s(t, "draining"), U(t, "pending"),
		       U(t, "conns"), b2s(t, "dead"));
}

static void print_services(const struct dg_json *j)
{
	const struct dg_json *s, *v;

	printf("%-32s %-7s %5s %7s %6s  %s\n", "service", "policy", "set",
	       "active", "conns", "servers (tenant/flow)");
	for (s = arr(j, "services") ? arr(j, "services")->child : NULL; s;
	     s = s->next) {
		printf("%-32s %-7s %5s %7llu %6llu ", dg_json_str(s, "name"),
		       dg_json_str(s, "policy"), b2s(s, "policy_set"),
		       U(s, "active"), U(s, "conns"));
		for (v = arr(s, "servers") ? arr(s, "servers")->child : NULL; v;
		     v = v->next)
			printf(" %llu/%llu%s", U(v, "tenant"), U(v, "flow"),
			       !strcmp(b2s(v, "draining"), "yes") ? "(d)" : "");
		printf("\n");
	}
}

static unsigned long tenant_id(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (!*s || *end || errno || v > 1000000)
		bad_usage("\"%s\" is not a tenant id (tenant list shows them)",
			  s);
	return v;
}

/* A JSON request with a string member value, escaped. */
static char *req_str(const char *fmt_head, const char *key, const char *val,
		     const char *tail)
{
	struct dg_buf b;

	dg_buf_init(&b, 0);
	dg_buf_printf(&b, "%s,\"%s\":", fmt_head, key);
	dg_buf_jstr(&b, val);
	dg_buf_printf(&b, "%s}", tail);
	if (b.err)
		die("out of memory");
	return b.p;
}

static int run(int argc, char **argv)
{
	const char *cmd = argv[0];
	struct dg_json *j;

	if (!strcmp(cmd, "stats")) {
		static const struct option lo[] = {{"prometheus", 0, 0, 'p'},
						   {"hist", 0, 0, 'H'},
						   {"json", 0, 0, 'j'},
						   {0, 0, 0, 0}};
		bool prom = false, hist = false;
		int o;

		optind = 0;
		while ((o = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
			if (o == 'p')
				prom = true;
			else if (o == 'H')
				hist = true;
			else if (o == 'j')
				G.json = true;
			else
				bad_usage("stats: unknown option");
		}
		if (optind < argc)
			bad_usage("stats: unexpected \"%s\"", argv[optind]);
		if (prom && G.json)
			bad_usage("stats: --prometheus or --json, not both");
		j = simple(hist ? "{\"v\":1,\"cmd\":\"stats\",\"hist\":true}"
				: "{\"v\":1,\"cmd\":\"stats\"}");
		if (prom)
			print_prometheus(j);
		else if (!G.json)
			print_stats(j);
		dg_json_free(j);
		return 0;
	}
	if (!strcmp(cmd, "top"))
		return cmd_top(argc, argv);
	/* The rest take --json anywhere, and positional arguments. */
	{
		int i, k = 0;
		bool off = false;

		for (i = 1; i < argc; i++) {
			if (!strcmp(argv[i], "--json"))
				G.json = true;
			else if (!strcmp(argv[i], "--off"))
				off = true;
			else if (argv[i][0] == '-' && argv[i][1] == '-')
				bad_usage("%s: unknown option %s", cmd,
					  argv[i]);
			else
				argv[++k] = argv[i];
		}
		argc = k + 1;
		if (off && (strcmp(cmd, "tenant") || argc < 2 ||
			    strcmp(argv[1], "drain")))
			bad_usage("--off goes with tenant drain");
		if (!strcmp(cmd, "hello") && argc == 1) {
			const struct dg_json *c;

			j = simple("{\"v\":1,\"cmd\":\"hello\"}");
			if (!G.json) {
				printf("engine %llu, protocol %llu; commands:",
				       U(j, "engine_id"), U(j, "protocol"));
				for (c = arr(j, "commands")
						 ? arr(j, "commands")->child
						 : NULL;
				     c; c = c->next)
					printf(" %s", c->str);
				printf("\n");
			}
		} else if (!strcmp(cmd, "get") && argc == 1) {
			const struct dg_json *c;

			j = simple("{\"v\":1,\"cmd\":\"get\"}");
			if (!G.json) {
				for (c = dg_json_get(j, "settings")->child; c;
				     c = c->next)
					printf("%s %llu\n", c->key,
					       (unsigned long long)c->u);
				for (c = dg_json_get(j, "fixed")->child; c;
				     c = c->next)
					if (c->type == DG_JSON_STR)
						printf("%s %s (fixed)\n",
						       c->key,
						       c->str[0] ? c->str
								 : "-");
					else
						printf("%s %llu (fixed)\n",
						       c->key,
						       (unsigned long long)
							       c->u);
				for (c = dg_json_get(j, "policies")->child; c;
				     c = c->next)
					printf("policy %s %s\n", c->key,
					       c->str);
			}
		} else if (!strcmp(cmd, "set") && argc == 4 &&
			   !strcmp(argv[1], "policy")) {
			char *r1 = req_str("{\"v\":1,\"cmd\":\"set\","
					   "\"name\":\"policy\"",
					   "service", argv[2], "");
			char *r2;

			r1[strlen(r1) - 1] = 0; /* reopen the object */
			r2 = req_str(r1, "value", argv[3], "");
			j = simple(r2);
			if (!G.json)
				printf("service %s: policy %s%s\n",
				       dg_json_str(j, "service"),
				       dg_json_str(j, "policy"),
				       !strcmp(b2s(j, "registered"), "yes")
					       ? ""
					       : " (applies when it "
						 "registers)");
			free(r1);
			free(r2);
		} else if (!strcmp(cmd, "set") && argc == 4 &&
			   !strcmp(argv[1], "mode")) {
			char buf[64];
			char *r;

			snprintf(buf, sizeof(buf),
				 "{\"v\":1,\"cmd\":\"set\",\"name\":\"mode\","
				 "\"tenant\":%lu",
				 tenant_id(argv[2]));
			r = req_str(buf, "value", argv[3], "");
			j = simple(r);
			free(r);
		} else if (!strcmp(cmd, "set") && argc == 3) {
			char *r = req_str("{\"v\":1,\"cmd\":\"set\"", "name",
					  argv[1], "");
			char *r2;

			r[strlen(r) - 1] = 0;
			r2 = req_str(r, "value", argv[2], "");
			j = simple(r2);
			if (!G.json)
				printf("%s %llu\n", dg_json_str(j, "name"),
				       U(j, "value"));
			free(r);
			free(r2);
		} else if (!strcmp(cmd, "tenant") && argc == 2 &&
			   !strcmp(argv[1], "list")) {
			j = simple("{\"v\":1,\"cmd\":\"tenant.list\"}");
			if (!G.json)
				print_tenants(j);
		} else if (!strcmp(cmd, "tenant") && argc == 3 &&
			   (!strcmp(argv[1], "drain") ||
			    !strcmp(argv[1], "evict"))) {
			char buf[128];
			bool drain = !strcmp(argv[1], "drain");

			snprintf(
				buf, sizeof(buf),
				"{\"v\":1,\"cmd\":\"tenant.%s\",\"tenant\":"
				"%lu%s}",
				argv[1], tenant_id(argv[2]),
				drain ? (off ? ",\"on\":false" : ",\"on\":true")
				      : "");
			j = simple(buf);
			if (!G.json && drain)
				printf("tenant %s: %s, %llu requests "
				       "pending\n",
				       argv[2],
				       off ? "takes requests again"
					   : "draining",
				       U(dg_json_get(j, "tenant"), "pending"));
			else if (!G.json)
				printf("tenant %s evicted\n", argv[2]);
		} else if (!strcmp(cmd, "service") && argc == 2 &&
			   !strcmp(argv[1], "list")) {
			j = simple("{\"v\":1,\"cmd\":\"service.list\"}");
			if (!G.json)
				print_services(j);
		} else if (!strcmp(cmd, "reload") && argc == 1) {
			j = simple("{\"v\":1,\"cmd\":\"reload\"}");
			if (!G.json)
				printf("reloaded: %s\n",
				       dg_json_str(j, "changed"));
		} else {
			bad_usage("unknown command or wrong arguments: %s",
				  cmd);
		}
	}
	dg_json_free(j);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"ctl", 1, 0, 'k'},
					   {"config", 1, 0, 'c'},
					   {"engine", 1, 0, 'e'},
					   {"json", 0, 0, 'j'},
					   {"timeout", 1, 0, 't'},
					   {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	char *end;
	int o, rc;

	while ((o = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (o) {
		case 'k':
			G.ctl = optarg;
			break;
		case 'c':
			G.config = optarg;
			break;
		case 'e':
			G.engine = optarg;
			break;
		case 'j':
			G.json = true;
			break;
		case 't':
			G.timeout_ms = (int)strtol(optarg, &end, 10);
			if (*end || G.timeout_ms < 1)
				bad_usage("--timeout must be milliseconds > 0");
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc)
		bad_usage("no command");
	if (G.ctl && G.config)
		bad_usage("--ctl or --config, not both");
	if (G.engine && !G.config)
		bad_usage("--engine needs --config FILE");
	if (G.ctl) {
		snprintf(G.path, sizeof(G.path), "%s", G.ctl);
	} else if (G.config) {
		struct dg_deploy *d;
		char err[1024];
		long i;

		if (dg_deploy_load(G.config, NULL, &d, err, sizeof(err))) {
			fprintf(stderr, "dagger-ctl: %s\n", err);
			return 2;
		}
		if (!G.engine && d->nengines != 1) {
			fprintf(stderr,
				"dagger-ctl: %s names %zu engines: choose one "
				"with --engine NAME\n",
				G.config, d->nengines);
			dg_deploy_free(d);
			return 2;
		}
		i = G.engine ? dg_deploy_find_engine(d, G.engine) : 0;
		if (i < 0) {
			fprintf(stderr, "dagger-ctl: %s: no engine \"%s\"\n",
				G.config, G.engine);
			dg_deploy_free(d);
			return 2;
		}
		rc = dg_deploy_ctl_path(&d->engines[i], false, G.path,
					sizeof(G.path));
		dg_deploy_free(d);
		if (rc)
			die("engine's control socket path: %s", strerror(-rc));
	} else {
		bad_usage("which engine? --ctl PATH, or --config FILE "
			  "[--engine NAME]");
	}
	rc = run(argc - optind, argv + optind);
	if (sock >= 0)
		close(sock);
	free(rbuf);
	return rc;
}
