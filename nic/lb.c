// SPDX-License-Identifier: MIT
/*
 * lb.c - services and load balancing: the service table (name -> server flows),
 * the policies that pick a server flow, registration.
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

static struct service *svc_find(struct dg_nic *n, const char *name)
{
	uint32_t i;

	for (i = 0; i < MAX_SERVICES; i++)
		if (n->services[i].used &&
		    !strncmp(n->services[i].name, name, DG_NAME_MAX))
			return &n->services[i];
	return NULL;
}

/*
 * A service callers can open: one with a server flow now. An entry whose
 * servers all left stays (its connections answer UNREACHABLE, and work
 * again when a server registers the name anew) but takes no new callers.
 */
struct service *nic_svc_open(struct dg_nic *n, const char *name)
{
	struct service *s = svc_find(n, name);

	return s && s->nservers ? s : NULL;
}

/* A free service slot, or one no server and no connection uses any more. */
static struct service *svc_slot(struct dg_nic *n)
{
	uint32_t i, c;

	for (i = 0; i < MAX_SERVICES; i++)
		if (!n->services[i].used)
			return &n->services[i];
	for (i = 0; i < MAX_SERVICES; i++) {
		if (n->services[i].nservers)
			continue;
		for (c = 0; c < MAX_CONNS; c++)
			if ((n->conns[c].state == CONN_OPEN ||
			     n->conns[c].state == CONN_INBOUND) &&
			    n->conns[c].svc == i)
				break;
		if (c == MAX_CONNS)
			return &n->services[i];
	}
	return NULL;
}

/*
 * Load-balancing policies: pick the server flow for a new request. The
 * policy is per service, chosen by the server at registration.
 */
static const struct server_ref *lb_pick(struct dg_nic *n, struct service *s,
					uint32_t conn_id)
{
	uint32_t i;

	if (!s->nservers)
		return NULL;
	switch (s->lb) {
	case DG_LB_STATIC:
		i = DG_CONN_IDX(conn_id) % s->nservers;
		break;
	case DG_LB_RANDOM:
		i = (uint32_t)(rng_next(n) % s->nservers);
		break;
	default:
		i = s->rr++ % s->nservers;
		break;
	}
	return &s->servers[i];
}

int nic_ctrl_register(struct dg_nic *n, uint32_t tid, uint32_t f,
		      const struct dg_ctrl_msg *m)
{
	struct service *s = svc_find(n, m->service);
	uint32_t i;

	if (!m->service[0] || memchr(m->service, 0, DG_NAME_MAX) == NULL ||
	    !strcmp(m->service, DG_LOOPBACK_SERVICE))
		return DG_ST_BAD_FRAME;
	if (!s) {
		s = svc_slot(n);
		if (!s)
			return DG_ST_BUSY;
		memset(s, 0, sizeof(*s));
		s->used = true;
		memcpy(s->name, m->service, DG_NAME_MAX);
		s->lb = m->lb <= DG_LB_RANDOM ? m->lb : DG_LB_ROUND_ROBIN;
	}
	for (i = 0; i < s->nservers; i++)
		if (s->servers[i].tenant == tid && s->servers[i].flow == f)
			return DG_ST_OK;
	if (s->nservers == MAX_SERVERS)
		return DG_ST_BUSY;
	s->servers[s->nservers++] =
		(struct server_ref){(uint16_t)tid, (uint16_t)f};
	if (n->o.verbose)
		fprintf(stderr, "dagger-nic: tenant %u flow %u serves %s\n",
			tid, f, s->name);
	return DG_ST_OK;
}

/*
 * Delivers a request to a server flow of service svc, chosen by its load
 * balancer. 0: delivered; DG_ST_*: the status to answer the caller with;
 * -EAGAIN: try again (the server's credits are being refreshed).
 */
int nic_svc_deliver(struct dg_nic *n, struct busy *b, uint16_t svc,
		    const struct msg *m, uint32_t cid)
{
	const struct server_ref *srv;
	struct tenant *st;
	uint32_t flow;
	bool armed;
	int rc;

	if (svc == NO_IDX || !n->services[svc].used)
		return DG_ST_NO_SERVICE;
	/*
	 * Before answering BUSY, learn the server's real credits: a request
	 * that found the ring full is retried, on the same server flow, once
	 * the rx_head READ that the failed delivery posted has come back, and
	 * only then refused. (A fresh pick would hit another flow whose
	 * cached credits may be as stale, and refuse without asking it.)
	 */
	armed = b->armed && b->rpc == m->h.rpc_id;
	if (armed) {
		st = &n->tenants[b->tenant];
		flow = b->flow;
	} else {
		srv = lb_pick(n, &n->services[svc], cid);
		st = srv ? &n->tenants[srv->tenant] : NULL;
		flow = srv ? srv->flow : 0;
	}
	if (!st || !st->used || st->dead || flow >= st->nflows) {
		b->armed = false;
		return DG_ST_UNREACHABLE;
	}
	if (armed && st->flows[flow].rx_head_pending)
		return -EAGAIN;
	/* A server holding 2 x slots unanswered requests takes no more. */
	rc = nic_pend_full(&st->flows[flow]) ? -ENOSPC
					     : rx_put(st, flow, m, cid, 0);
	if (rc && !armed) {
		b->armed = true;
		b->rpc = m->h.rpc_id;
		b->tenant = (uint16_t)(st - n->tenants);
		b->flow = (uint16_t)flow;
		return -EAGAIN;
	}
	b->armed = false;
	if (rc) {
		st->flows[flow].st.busy++;
		return DG_ST_BUSY;
	}
	nic_pend_push(&st->flows[flow], &m->h, cid);
	return 0;
}
