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

/*
 * A response for client flow cf found no room in its RX ring: whether it
 * may be dropped now (the client is then owed DG_ST_DROPPED). Not before
 * the hold that *since times (the server flow's, or the peer link's) has
 * lasted hold_us, unless cf owes answers already: it is known not to
 * read, so nobody waits for it again. The first call starts the hold;
 * the loop must not sleep past its end.
 */
bool nic_hold_over(struct dg_nic *n, uint64_t *since, const struct flow *cf)
{
	uint64_t now = nic_clock(n), end;

	if (cf->owed_tail != cf->owed_head)
		return true;
	if (!*since)
		*since = now;
	end = *since + (uint64_t)n->o.hold_us * 1000u;
	if (now >= end)
		return true;
	/* In mono_us terms (the same clock), rounded up. */
	if (end / 1000u + 1 < n->next_due_us)
		n->next_due_us = end / 1000u + 1;
	return false;
}

/*
 * Owes client flow cf a status for a call whose response it cannot take
 * now. -ENOSPC when cf owes as many as it may have calls tracked.
 */
static int owe(struct dg_nic *n, struct flow *cf, const struct owed *o)
{
	if (cf->owed_tail - cf->owed_head > cf->pend_mask)
		return -ENOSPC;
	if (cf->owed_tail == cf->owed_head)
		n->nowing++;
	cf->owed[cf->owed_tail++ & cf->pend_mask] = *o;
	return 0;
}

int nic_owe(struct dg_nic *n, struct flow *cf, uint32_t rpc, uint32_t conn,
	    uint16_t fn, uint8_t status)
{
	const struct owed o = {.rpc = rpc,
			       .conn = conn,
			       .fn = fn,
			       .status = status,
			       .flags = DG_FF_RESP};

	return owe(n, cf, &o);
}

/*
 * A control reply: an OPEN's, answered by a peer engine's BIND_ACK while
 * cf's ring was full. Only while the queue keeps room for every call cf
 * has tracked (each may have to be owed too, and a call's answer must
 * never find the queue full of replies); otherwise -ENOSPC.
 */
int nic_owe_reply(struct dg_nic *n, struct flow *cf, uint32_t rpc,
		  uint32_t conn, uint8_t status)
{
	const struct owed o = {.rpc = rpc,
			       .conn = conn,
			       .status = status,
			       .flags = DG_FF_CTRL};

	if ((cf->owed_tail - cf->owed_head) + (cf->pend_tail - cf->pend_head) >
	    cf->pend_mask)
		return -ENOSPC;
	return owe(n, cf, &o);
}

/*
 * Sends owed answers, in order, as far as each client's RX ring has room
 * (rx_put asks for a fresh rx_head when it has none), and counts the
 * flows that still owe. A host does not tell the engine when it reads:
 * while some flow owes, a sleeping loop looks again after 1 ms, and after
 * twice as long each time nothing could be sent, up to idle_us (a client
 * that never reads again costs no busy engine).
 */
void nic_owed_flush(struct dg_nic *n)
{
	uint32_t tid, f, owing = 0;
	bool sent = false;
	uint64_t now;

	for (tid = 0; tid < MAX_TENANTS; tid++) {
		struct tenant *t = &n->tenants[tid];

		if (!t->used || t->dead)
			continue;
		for (f = 0; f < t->nflows; f++) {
			struct flow *fl = &t->flows[f];

			while (fl->owed_head != fl->owed_tail) {
				const struct owed *o = &fl->owed[fl->owed_head &
								 fl->pend_mask];

				if (nic_rx_status(t, f, o->flags, o->rpc,
						  o->conn, o->fn, o->status))
					break;
				fl->owed_head++;
				sent = true;
			}
			owing += fl->owed_head != fl->owed_tail;
		}
	}
	n->nowing = owing;
	if (!owing)
		return;
	now = mono_us();
	if (sent || !n->owed_wait_us) {
		n->owed_wait_us = 1000;
		n->owed_next_us = now + 1000;
	} else if (now >= n->owed_next_us) {
		if (n->owed_wait_us < n->o.idle_us)
			n->owed_wait_us *= 2;
		n->owed_next_us = now + n->owed_wait_us;
	}
	if (n->owed_next_us < n->next_due_us)
		n->next_due_us = n->owed_next_us;
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
				 &n->tenants[c->tenant] != t &&
				 nic_rx_status(&n->tenants[c->tenant], c->flow,
					       DG_FF_RESP, p->rpc, p->conn,
					       p->fn, DG_ST_UNREACHABLE))
				/* No room: owed (nic_owed_flush). */
				(void)nic_owe(
					n,
					&n->tenants[c->tenant].flows[c->flow],
					p->rpc, p->conn, p->fn,
					DG_ST_UNREACHABLE);
		}
		fl->pend_head = fl->pend_tail;
	}
}
