// SPDX-License-Identifier: MIT
/*
 * stats.c - statistics: the per-peer, per-tenant and per-flow counters as text.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_impl.h"

static const char *const drop_names[DROP_NREASONS] = {
	"bad_len", "bad_flags",	 "bad_conn", "bad_ctrl",
	"too_big", "no_request", "bad_pay",
};

static void stats_take(struct dg_nic *n, void *arg);

/* Called with the engine stopped (or from its own thread). */
void dg_nic_stats_print(struct dg_nic *n, FILE *f)
{
	struct dg_nic_stats tot;
	uint32_t i, j, r;

	stats_take(n, &tot);
	fprintf(f, "# dagger-nic statistics\n");
	fprintf(f, "engine: sleeps %llu missed_wakes %llu\n",
		(unsigned long long)n->sleeps,
		(unsigned long long)n->missed_wakes);
	/* Every tenant's, those gone included: what a failed run asks. */
	fprintf(f,
		"totals: rpcs_tx %llu rpcs_rx %llu busy %llu stalled %llu "
		"dropped %llu denied %llu quota_refused %llu attach_refused "
		"%llu peer_drops %llu",
		(unsigned long long)tot.rpcs_tx,
		(unsigned long long)tot.rpcs_rx, (unsigned long long)tot.busy,
		(unsigned long long)tot.stalled,
		(unsigned long long)tot.dropped, (unsigned long long)tot.denied,
		(unsigned long long)tot.quota_refused,
		(unsigned long long)tot.attach_refused,
		(unsigned long long)tot.peer_drops);
	for (r = 0; r < DROP_NREASONS; r++)
		if (tot.drops[r])
			fprintf(f, " drop_%s %llu", drop_names[r],
				(unsigned long long)tot.drops[r]);
	fputc('\n', f);
	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];
		struct dg_peer_stats ls;

		if (!p->used)
			continue;
		dg_peer_stats(p->link, &ls);
		fprintf(f,
			"peer %u %s%s: rpcs_tx %llu frames_tx %llu rpcs_rx "
			"%llu frames_rx %llu busy %llu drops %llu keepalives "
			"%llu\n",
			i, p->outbound ? p->addr : "inbound",
			p->dead ? " (down)" : "",
			(unsigned long long)p->st.rpcs_tx,
			(unsigned long long)p->st.frames_tx,
			(unsigned long long)p->st.rpcs_rx,
			(unsigned long long)p->st.frames_rx,
			(unsigned long long)p->st.busy,
			(unsigned long long)p->st.drops,
			(unsigned long long)ls.keepalives);
	}
	for (i = 0; i < MAX_TENANTS; i++) {
		struct tenant *t = &n->tenants[i];

		if (!t->used)
			continue;
		for (j = 0; j < t->nflows; j++) {
			struct flow_stats *s = &t->flows[j].st;

			if (!s->frames_tx && !s->frames_rx && !s->reads)
				continue;
			fprintf(f,
				"tenant %u flow %u: rpcs_tx %llu frames_tx "
				"%llu bytes_tx %llu rpcs_rx %llu frames_rx "
				"%llu reads %llu avg_batch %.1f writes %llu "
				"busy %llu stalled %llu",
				i, j, (unsigned long long)s->rpcs_tx,
				(unsigned long long)s->frames_tx,
				(unsigned long long)s->bytes_tx,
				(unsigned long long)s->rpcs_rx,
				(unsigned long long)s->frames_rx,
				(unsigned long long)s->reads,
				s->reads ? (double)s->frames_tx / s->reads : 0,
				(unsigned long long)s->writes,
				(unsigned long long)s->busy,
				(unsigned long long)s->stalled);
			if (s->doorbells || s->wakes)
				fprintf(f, " doorbells %llu wakes %llu",
					(unsigned long long)s->doorbells,
					(unsigned long long)s->wakes);
			if (s->pay_tx || s->pay_rx)
				fprintf(f, " pay_tx %llu pay_rx %llu",
					(unsigned long long)s->pay_tx,
					(unsigned long long)s->pay_rx);
			for (r = 0; r < DROP_NREASONS; r++)
				if (s->drops[r])
					fprintf(f, " drop_%s %llu",
						drop_names[r],
						(unsigned long long)
							s->drops[r]);
			fputc('\n', f);
		}
	}
}

static void stats_take(struct dg_nic *n, void *arg)
{
	struct dg_nic_stats *s = arg;
	/* Tenants that left count on: the totals only grow. */
	struct flow_stats tot = n->gone;
	uint32_t i, j, r, c;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < MAX_TENANTS; i++) {
		struct tenant *t = &n->tenants[i];

		if (!t->used)
			continue;
		s->tenants++;
		s->shm_tenants += t->direct;
		for (j = 0; j < t->nflows; j++)
			nic_flow_stats_add(&tot, &t->flows[j].st);
	}
	s->rpcs_tx = tot.rpcs_tx;
	s->frames_tx = tot.frames_tx;
	s->rpcs_rx = tot.rpcs_rx;
	s->frames_rx = tot.frames_rx;
	s->reads = tot.reads;
	s->writes = tot.writes;
	s->busy = tot.busy;
	s->stalled = tot.stalled;
	s->doorbells = tot.doorbells;
	s->wakes = tot.wakes;
	s->dropped = tot.dropped;
	s->pay_tx = tot.pay_tx;
	s->pay_rx = tot.pay_rx;
	for (r = 0; r < DROP_NREASONS; r++)
		s->drops[r] = tot.drops[r];
	for (c = 0; c < MAX_CONNS; c++)
		s->conns += n->conns[c].state != CONN_FREE;
	for (i = 0; i < MAX_SERVICES; i++)
		s->services += n->services[i].used && n->services[i].nservers;
	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];

		if (!p->used)
			continue;
		s->peers += !p->dead;
		s->peer_rpcs_tx += p->st.rpcs_tx;
		s->peer_rpcs_rx += p->st.rpcs_rx;
		s->peer_drops += p->st.drops;
	}
	s->attach_refused = n->attach_refused;
	s->quota_refused = n->quota_refused;
	s->denied = n->denied;
	s->pay_bytes = n->pay_bytes;
	s->stage_used = n->ar[ARENA_LOCAL].used + n->ar[ARENA_PEER].used;
	s->xfers = n->xf_used;
	s->sleeps = n->sleeps;
	s->missed_wakes = n->missed_wakes;
	s->trace_server_n = n->trace_server.n;
	s->trace_server_p50_ns = dg_hist_quantile(
		n->trace_server.b, n->trace_server.n, n->trace_server.max, 0.5);
	s->trace_server_p99_ns =
		dg_hist_quantile(n->trace_server.b, n->trace_server.n,
				 n->trace_server.max, 0.99);
	s->trace_remote_n = n->trace_remote.n;
	s->trace_remote_p50_ns = dg_hist_quantile(
		n->trace_remote.b, n->trace_remote.n, n->trace_remote.max, 0.5);
	s->trace_remote_p99_ns =
		dg_hist_quantile(n->trace_remote.b, n->trace_remote.n,
				 n->trace_remote.max, 0.99);
}

int dg_nic_stats(struct dg_nic *n, struct dg_nic_stats *s, int timeout_ms)
{
	return nic_call(n, stats_take, s, timeout_ms);
}
