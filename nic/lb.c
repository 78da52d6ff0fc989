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

/* splitmix64's finaliser: a well-mixed 64-bit value from any input. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The hash slot of a key: mixed first, so keys 0, 1, 2... spread too. */
static inline uint32_t key_slot(uint32_t key)
{
	return (uint32_t)(mix64(key) >> 52) & (KEY_SLOTS - 1);
}

/*
 * Key-based load balancing is rendezvous (highest random weight) hashing
 * over KEY_SLOTS slots: every slot belongs to the server flow, among
 * those that take requests, whose weight mix64(slot, flow) is highest.
 * A flow is named by (tenant, flow) for as long as it serves, so a flow
 * that joins takes about 1/N of the slots from the others and a flow that
 * leaves (or drains) hands only its own slots on, each to its second
 * best: the keys of every other flow stay where they were. The table is
 * rebuilt on the next keyed request after the set changed (nic_svc_rebuild
 * marks it), never on the request path otherwise.
 */
static void ktab_build(struct service *s)
{
	uint32_t slot, i;

	for (slot = 0; slot < KEY_SLOTS; slot++) {
		uint64_t best = 0, w;
		uint32_t pick = 0;

		for (i = 0; i < s->nact; i++) {
			const struct server_ref *r = &s->servers[s->act[i]];

			w = mix64((uint64_t)slot << 32 |
				  (uint32_t)r->tenant << 16 | r->flow);
			if (i == 0 || w > best) {
				best = w;
				pick = s->act[i];
			}
		}
		s->ktab[slot] = (uint8_t)pick;
	}
	s->ktab_dirty = false;
}

void nic_svc_rebuild(struct service *s, const struct dg_nic *n)
{
	uint32_t i;

	s->nact = 0;
	for (i = 0; i < s->nservers; i++)
		if (!n->tenants[s->servers[i].tenant].draining)
			s->act[s->nact++] = (uint8_t)i;
	s->ktab_dirty = true;
}

uint32_t nic_svc_key_pick(struct service *s, const struct dg_nic *n,
			  uint32_t key)
{
	(void)n;
	if (s->ktab_dirty)
		ktab_build(s);
	return s->ktab[key_slot(key)];
}

/*
 * Load-balancing policies: pick the server flow for a new request, among
 * the server flows that take requests (not draining). The policy is per
 * service: chosen by the first server at registration, unless the
 * description or the operator set one (dagger-ctl set policy).
 */
static const struct server_ref *lb_pick(struct dg_nic *n, struct service *s,
					const struct dg_frame *h,
					uint32_t conn_id)
{
	uint32_t i;

	if (!s->nact)
		return NULL;
	switch (s->lb) {
	case DG_LB_STATIC:
		i = s->act[DG_CONN_IDX(conn_id) % s->nact];
		break;
	case DG_LB_RANDOM:
		i = s->act[rng_next(n) % s->nact];
		break;
	case DG_LB_KEY:
		if (h->flags & DG_FF_KEY) {
			if (UNLIKELY(s->ktab_dirty))
				ktab_build(s);
			i = s->ktab[key_slot(h->key)];
			break;
		}
		/* Requests without a key go round-robin. */
		__attribute__((fallthrough));
	default:
		i = s->act[s->rr++ % s->nact];
		break;
	}
	return &s->servers[i];
}

int nic_svc_conf_policy(const struct dg_nic *n, const char *name)
{
	uint32_t i;

	for (i = 0; i < n->nsvc_conf; i++)
		if (!strcmp(n->svc_conf[i].name, name))
			return n->svc_conf[i].lb;
	return -1;
}

void nic_svc_drop_tenant(struct dg_nic *n, uint32_t tid)
{
	uint32_t i, j;

	for (i = 0; i < MAX_SERVICES; i++) {
		struct service *s = &n->services[i];
		uint32_t before = s->nservers;

		for (j = 0; j < s->nservers;) {
			if (s->servers[j].tenant == tid)
				s->servers[j] = s->servers[--s->nservers];
			else
				j++;
		}
		if (s->nservers != before)
			nic_svc_rebuild(s, n);
	}
}

/* Services tenant tid serves (a control path: a scan is fine). */
static uint32_t tenant_services(const struct dg_nic *n, uint32_t tid)
{
	uint32_t i, j, k = 0;

	for (i = 0; i < MAX_SERVICES; i++) {
		const struct service *s = &n->services[i];

		for (j = 0; s->used && j < s->nservers; j++)
			if (s->servers[j].tenant == tid) {
				k++;
				break;
			}
	}
	return k;
}

int nic_ctrl_register(struct dg_nic *n, uint32_t tid, uint32_t f,
		      const struct dg_ctrl_msg *m)
{
	struct service *s = svc_find(n, m->service);
	const struct tenant *t = &n->tenants[tid];
	uint32_t i;

	if (!m->service[0] || memchr(m->service, 0, DG_NAME_MAX) == NULL ||
	    !strcmp(m->service, DG_LOOPBACK_SERVICE))
		return DG_ST_BAD_FRAME;
	if (s && s->nservers) {
		/*
		 * Served already: a tenant that serves it, or shares the
		 * identity of the one that registered it, or knows its
		 * secret, may join; nobody else takes a share of its calls.
		 */
		for (i = 0; i < s->nservers && s->servers[i].tenant != tid; i++)
			;
		if (i == s->nservers &&
		    !(s->owner_uid != NO_UID && s->owner_uid == t->uid) &&
		    !(s->secret && s->secret == m->secret)) {
			n->denied++;
			if (n->o.verbose)
				fprintf(stderr,
					"dagger-nic: tenant %u may not serve "
					"%s (another tenant's)\n",
					tid, s->name);
			return DG_ST_DENIED;
		}
	}
	if (!s) {
		/* One tenant cannot take every service of the engine. */
		if (tenant_services(n, tid) >= TENANT_MAX_SERVICES) {
			n->quota_refused++;
			return DG_ST_QUOTA;
		}
		s = svc_slot(n);
		if (!s)
			return DG_ST_BUSY;
		int conf = nic_svc_conf_policy(n, m->service);

		memset(s, 0, sizeof(*s));
		s->used = true;
		memcpy(s->name, m->service, DG_NAME_MAX);
		s->lb = m->lb <= DG_LB_KEY ? m->lb : DG_LB_ROUND_ROBIN;
		if (conf >= 0) {
			s->lb = (uint8_t)conf;
			s->lb_fixed = true;
		}
	}
	for (i = 0; i < s->nservers; i++)
		if (s->servers[i].tenant == tid && s->servers[i].flow == f)
			return DG_ST_OK;
	if (s->nservers == MAX_SERVERS)
		return DG_ST_BUSY;
	/* Nobody serves it (new, or all left): it is this tenant's now. */
	if (!s->nservers) {
		s->owner_uid = t->uid;
		s->secret = m->secret;
	}
	s->servers[s->nservers++] =
		(struct server_ref){(uint16_t)tid, (uint16_t)f};
	nic_svc_rebuild(s, n);
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
	struct service *s;
	struct tenant *st;
	struct pending *p;
	uint32_t flow;
	bool armed;
	int rc;

	if (svc == NO_IDX || !n->services[svc].used)
		return DG_ST_NO_SERVICE;
	s = &n->services[svc];
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
		srv = lb_pick(n, s, &m->h, cid);
		st = srv ? &n->tenants[srv->tenant] : NULL;
		flow = srv ? srv->flow : 0;
		/* Servers there, all draining: none takes new requests. */
		if (!srv && s->nservers) {
			b->armed = false;
			s->st.busy++;
			return DG_ST_BUSY;
		}
	}
	if (!st || !st->used || st->dead || flow >= st->nflows) {
		b->armed = false;
		s->st.unreachable++;
		return DG_ST_UNREACHABLE;
	}
	if (armed && st->flows[flow].rx_head_pending)
		return -EAGAIN;
	/* A server holding 2 x slots unanswered requests takes no more. */
	rc = nic_pend_full(&st->flows[flow]) ? -ENOSPC
					     : rx_put(st, flow, m, cid, 0);
	/* Large: never fits this server, or the engine's staging is full. */
	if (rc == -EMSGSIZE || rc == -EAGAIN) {
		b->armed = false;
		return rc == -EAGAIN ? -EAGAIN : DG_ST_TOO_BIG;
	}
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
		s->st.busy++;
		return DG_ST_BUSY;
	}
	nic_pend_push(&st->flows[flow], &m->h, cid);
	/* For the service's latency: one clock read per loop iteration. */
	p = &st->flows[flow].pend[(st->flows[flow].pend_tail - 1) &
				  st->flows[flow].pend_mask];
	p->svc = svc;
	p->t_ns = nic_clock(n);
	s->st.requests++;
	return 0;
}
