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

int nic_conn_alloc(struct dg_nic *n)
{
	uint32_t i, c;

	for (i = 0; i < MAX_CONNS; i++) {
		c = (n->conn_hint + i) % MAX_CONNS;
		if (n->conns[c].state == CONN_FREE) {
			n->conn_hint = c + 1;
			return (int)c;
		}
	}
	return -1;
}

/* Drops the answered entries at the head. */
void nic_pend_advance(struct flow *fl)
{
	while (fl->pend_head != fl->pend_tail &&
	       fl->pend[fl->pend_head & fl->pend_mask].conn == NO_IDX)
		fl->pend_head++;
}

bool nic_pend_full(const struct flow *fl)
{
	return fl->pend_tail - fl->pend_head > fl->pend_mask;
}

/*
 * Full only if the flow holds 2 x slots requests unanswered: a server
 * flow's then stay untracked; a client flow is held back (do_request).
 */
void nic_pend_push(struct flow *fl, const struct dg_frame *f, uint16_t cid)
{
	if (nic_pend_full(fl))
		return;
	fl->pend[fl->pend_tail++ & fl->pend_mask] =
		(struct pending){f->rpc_id, cid, f->fn_id};
}

/*
 * The client closed conn: its calls still in flight are no longer
 * waited for (their late responses are dropped), so stop tracking them.
 */
void nic_pend_forget(struct flow *fl, uint16_t conn)
{
	uint32_t i;

	for (i = fl->pend_head; i != fl->pend_tail; i++)
		if (fl->pend[i & fl->pend_mask].conn == conn)
			fl->pend[i & fl->pend_mask].conn = NO_IDX;
	nic_pend_advance(fl);
}

/* The server answered (conn, rpc): forget it. */
void nic_pend_pop(struct flow *fl, const struct dg_frame *f)
{
	uint32_t i;

	for (i = fl->pend_head; i != fl->pend_tail; i++) {
		struct pending *p = &fl->pend[i & fl->pend_mask];

		if (p->conn == f->conn_id && p->rpc == f->rpc_id) {
			p->conn = NO_IDX;
			break;
		}
	}
	nic_pend_advance(fl);
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
			struct conn *c;

			if (p->conn >= MAX_CONNS)
				continue;
			c = &n->conns[p->conn];
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
