// SPDX-License-Identifier: MIT
/*
 * conn.c - the connection table and pending-call tracking: connection ids, the
 * requests each flow holds unanswered, answering them when a server goes away.
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

/*
 * A free entry, its generation bumped: an id handed out before (closed,
 * or of a dead tenant) names another generation and matches no more.
 */
struct conn *nic_conn_alloc(struct dg_nic *n)
{
	uint32_t i, c;

	for (i = 0; i < MAX_CONNS; i++) {
		c = (n->conn_hint + i) % MAX_CONNS;
		if (n->conns[c].state == CONN_FREE) {
			n->conn_hint = c + 1;
			n->conns[c].gen =
				(uint16_t)((n->conns[c].gen + 1) & 0x7fffu);
			return &n->conns[c];
		}
	}
	return NULL;
}

/* Drops the answered entries at the head. */
void nic_pend_advance(struct flow *fl)
{
	while (fl->pend_head != fl->pend_tail &&
	       fl->pend[fl->pend_head & fl->pend_mask].conn == NO_CONN)
		fl->pend_head++;
}

/*
 * Full when the flow holds 2 x slots requests unanswered: a server flow
 * then takes no more (BUSY, svc_deliver), a client flow is held back
 * (do_request). So every request handed on is tracked, and a response
 * is taken only from the flow that holds its request.
 */
bool nic_pend_full(const struct flow *fl)
{
	return fl->pend_tail - fl->pend_head > fl->pend_mask;
}

void nic_pend_push(struct flow *fl, const struct dg_frame *h, uint32_t cid)
{
	fl->pend[fl->pend_tail++ & fl->pend_mask] =
		(struct pending){.rpc = h->rpc_id, .conn = cid, .fn = h->fn_id};
}

/*
 * The client closed conn: its calls still in flight are no longer
 * waited for (their late responses are dropped), so stop tracking them.
 */
void nic_pend_forget(struct flow *fl, uint32_t conn)
{
	uint32_t i;

	for (i = fl->pend_head; i != fl->pend_tail; i++)
		if (fl->pend[i & fl->pend_mask].conn == conn)
			fl->pend[i & fl->pend_mask].conn = NO_CONN;
	nic_pend_advance(fl);
}

/*
 * The request this flow holds that h (a response) answers: same connection
 * and rpc id. NULL when it holds none (nobody asked this flow). Responses
 * mostly come in order: the head usually matches.
 */
struct pending *nic_pend_find(struct flow *fl, const struct dg_frame *h)
{
	uint32_t i;

	for (i = fl->pend_head; i != fl->pend_tail; i++) {
		struct pending *p = &fl->pend[i & fl->pend_mask];

		if (p->conn == h->conn && p->rpc == h->rpc_id)
			return p;
	}
	return NULL;
}

/* The request p was answered: forget it. */
void nic_pend_done(struct flow *fl, struct pending *p)
{
	p->conn = NO_CONN;
	nic_pend_advance(fl);
}

/* nic_pend_find, then nic_pend_done; false when nothing matched. */
bool nic_pend_pop(struct flow *fl, const struct dg_frame *h)
{
	struct pending *p = nic_pend_find(fl, h);

	if (p)
		nic_pend_done(fl, p);
	return p != NULL;
}

/*
 * A server tenant is gone: every request it was handed and had not answered
 * is answered UNREACHABLE, so its callers get an error now rather than at
 * their deadline.
 */
void nic_pend_fail(struct dg_nic *n, struct tenant *t)
{
	uint32_t f, i;

	for (f = 0; t->flows && f < t->nflows; f++) {
		struct flow *fl = &t->flows[f];

		for (i = fl->pend_head; i != fl->pend_tail; i++) {
			struct pending *p = &fl->pend[i & fl->pend_mask];
			struct conn *c = conn_get(n, p->conn);

			if (!c)
				continue;
			if (c->state == CONN_INBOUND)
				nic_peer_status(n, c->peer, DG_FF_RESP, p->rpc,
						c->remote, p->fn,
						DG_ST_UNREACHABLE, 0);
			else if (c->state == CONN_OPEN &&
				 n->tenants[c->tenant].used &&
				 !n->tenants[c->tenant].dead &&
				 &n->tenants[c->tenant] != t)
				nic_rx_status(&n->tenants[c->tenant], c->flow,
					      DG_FF_RESP, p->rpc, p->conn,
					      p->fn, DG_ST_UNREACHABLE);
		}
		fl->pend_head = fl->pend_tail;
	}
}
