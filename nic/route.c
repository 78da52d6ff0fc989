// SPDX-License-Identifier: MIT
/*
 * route.c - peer routing: links to other engines, BIND/UNBIND of connections
 * across them, requests and responses that arrive from them, liveness.
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

int nic_peer_add(struct dg_nic *n, struct dg_peer *link, bool outbound,
		 const char *addr, uint16_t port)
{
	struct peer_ref *p;
	uint32_t i;

	for (i = 0; i < MAX_PEERS && n->peers[i].used; i++)
		;
	if (i == MAX_PEERS)
		return -EUSERS;
	p = &n->peers[i];
	memset(p, 0, sizeof(*p));
	p->inmap = malloc(65536 * sizeof(*p->inmap));
	p->fifo = aligned_alloc(DG_SLOT_SIZE, PEER_FIFO * DG_SLOT_SIZE);
	if (!p->inmap || !p->fifo) {
		free(p->inmap);
		free(p->fifo);
		return -ENOMEM;
	}
	memset(p->inmap, 0xff, 65536 * sizeof(*p->inmap));
	p->used = true;
	p->link = link;
	p->outbound = outbound;
	if (addr)
		snprintf(p->addr, sizeof(p->addr), "%s", addr);
	p->port = port;
	nic_pay_peer_init(n, i);
	nic_lists_update(n);
	/* A peer with few or small buffers: say what it cannot carry. */
	if (dg_peer_capacity(link) < DG_MAX_FRAMES)
		fprintf(stderr,
			"dagger-nic: peer link %u (%s): its buffers carry "
			"RPCs of at most %u bytes; longer ones are answered "
			"TOO_BIG\n",
			i, addr ? addr : "inbound",
			DG_FRAME_PAYLOAD +
				(dg_peer_capacity(link) - 1) * DG_CONT_PAYLOAD);
	return (int)i;
}

/*
 * Answers UNREACHABLE to every request that some client flow sent through
 * peer link pi (pi == NO_IDX: through any link already down) and that is
 * still unanswered. An answer that finds the client's RX ring full is
 * left pending and retried by the next sweep (dg_nic_poll), so no caller
 * is left waiting. Returns false while some answer is still due.
 */
static bool remote_fail(struct dg_nic *n, uint32_t pi)
{
	bool done = true;
	uint32_t tid, f, i;

	for (tid = 0; tid < MAX_TENANTS; tid++) {
		struct tenant *t = &n->tenants[tid];

		if (!t->used || t->dead)
			continue;
		for (f = 0; f < t->nflows; f++) {
			struct flow *fl = &t->flows[f];

			for (i = fl->pend_head; i != fl->pend_tail; i++) {
				struct pending *p =
					&fl->pend[i & fl->pend_mask];
				struct conn *c = conn_get(n, p->conn);

				if (!c || c->tenant != tid || c->flow != f ||
				    (pi == NO_IDX ? c->state != CONN_DEAD
						  : c->state != CONN_REMOTE ||
							    c->peer != pi))
					continue;
				if (nic_rx_status(t, f, DG_FF_RESP, p->rpc,
						  p->conn, p->fn,
						  DG_ST_UNREACHABLE)) {
					done = false;
					continue;
				}
				p->conn = NO_CONN;
			}
			nic_pend_advance(fl);
		}
	}
	return done;
}

/*
 * Marks a peer link dead: its inbound connections go away; client
 * connections through it answer UNREACHABLE from now on.
 */
void nic_peer_kill(struct dg_nic *n, uint32_t pi, int why)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t i;

	if (p->dead)
		return;
	p->dead = true;
	fprintf(stderr, "dagger-nic: peer link %u (%s, engine %u) down: %s\n",
		pi, p->addr[0] ? p->addr : "inbound",
		dg_peer_remote_engine(p->link), strerror(-why));
	/* Before the states change below; what is left, the sweep retries. */
	if (!remote_fail(n, pi))
		n->remote_sweep = true;
	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		if (c->peer != pi)
			continue;
		if (c->state == CONN_INBOUND) {
			c->state = CONN_FREE;
		} else if (c->state == CONN_REMOTE) {
			c->state = CONN_DEAD;
		} else if (c->state == CONN_BINDING) {
			/* Best effort; without room the host's OPEN times
			 * out instead. */
			nic_rx_status(&n->tenants[c->tenant], c->flow,
				      DG_FF_CTRL, c->rpc, conn_id(n, c), 0,
				      DG_ST_UNREACHABLE);
			c->state = CONN_FREE;
		}
	}
}

void nic_peer_free(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];

	nic_peer_kill(n, pi, -ECONNRESET);
	dg_peer_destroy(p->link);
	/* Its queue pair is gone: no READ of ours or theirs can run now. */
	nic_pay_peer_free(n, pi);
	free(p->inmap);
	free(p->fifo);
	memset(p, 0, sizeof(*p));
	nic_lists_update(n);
}

/*
 * Puts one whole message on peer link pi with its connection id set to
 * conn, or nothing: -EAGAIN without room (credits), -EMSGSIZE for a
 * message longer than the link can ever take at once (the peer's buffers
 * are few or small: dg_peer_capacity), -ENOTCONN once the link is dead.
 * Frames travel without stamps or checksums (the link's own message
 * header and the transport's CRC cover them).
 */
int nic_peer_send(struct dg_nic *n, uint32_t pi, const struct msg *m,
		  uint32_t conn)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t cnt = m->h.cnt, i;

	if (UNLIKELY(m->h.flags & DG_FF_PAY))
		return nic_pay_peer_send(n, pi, m, conn); /* payload.c */
	if (p->dead)
		return -ENOTCONN;
	if (dg_peer_room(p->link) < cnt)
		return UNLIKELY(cnt > dg_peer_capacity(p->link)) ? -EMSGSIZE
								 : -EAGAIN;
	for (i = 0; i < cnt; i++) {
		struct dg_frame *slot;
		int rc = dg_peer_reserve(p->link, 1, &slot);

		if (!rc) {
			if (i == 0) {
				*slot = m->h;
				slot->conn = conn;
				slot->stamp = 0;
				slot->csum = 0;
			} else {
				struct dg_frame_cont *c = (void *)slot;

				memcpy(c->data, msg_cont(m, i)->data,
				       DG_CONT_PAYLOAD);
				c->csum = 0;
				c->stamp = 0;
			}
			rc = dg_peer_commit(p->link, 1);
		}
		if (rc) {
			/* room said yes: only a dead link gets here */
			nic_peer_kill(n, pi, rc);
			return -ENOTCONN;
		}
	}
	p->st.rpcs_tx++;
	p->st.frames_tx += cnt;
	return 0;
}

int nic_peer_status(struct dg_nic *n, uint32_t pi, uint8_t flags,
		    uint32_t rpc_id, uint32_t conn, uint16_t fn_id,
		    uint8_t status, uint8_t op)
{
	struct msg m;

	nic_status_msg(&m, flags, rpc_id, fn_id, status, op);
	return nic_peer_send(n, pi, &m, conn);
}

void nic_peer_unbind(struct dg_nic *n, uint32_t pi, uint32_t conn)
{
	struct peer_ref *p = &n->peers[pi];

	if (p->dead)
		return;
	if (!p->nunbind &&
	    !nic_peer_status(n, pi, DG_FF_CTRL, 0, conn, 0, 0, PEER_UNBIND))
		return;
	/*
	 * As many as the table has entries; beyond that (ids closed, reused
	 * and closed again while the link stays full) the peer rebinds a
	 * reused id on its BIND anyway.
	 */
	if (p->nunbind < PEER_UNBIND_Q)
		p->unbind[p->nunbind++] = conn;
}

/* Sends queued UNBINDs, oldest first, while the link has room. */
static void peer_unbind_flush(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t i = 0;

	while (i < p->nunbind &&
	       !nic_peer_status(n, pi, DG_FF_CTRL, 0, p->unbind[i], 0, 0,
				PEER_UNBIND))
		i++;
	memmove(p->unbind, p->unbind + i, (p->nunbind - i) * sizeof(uint32_t));
	p->nunbind -= i;
}

int nic_peer_find(struct dg_nic *n, const char *addr, uint16_t port)
{
	uint32_t i;

	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];

		if (p->used && p->outbound && !p->dead && p->port == port &&
		    !strcmp(p->addr, addr))
			return (int)i;
	}
	return -ENOENT;
}

static void peer_rx(void *arg, const struct dg_frame *f)
{
	struct peer_ref *p = arg;

	/*
	 * The credits returned (dg_peer_set_backlog) leave room for all a
	 * peer may send; a peer that sent more broke the protocol.
	 */
	if (p->tail - p->head >= PEER_FIFO) {
		p->overflow = true;
		return;
	}
	p->fifo[p->tail++ & (PEER_FIFO - 1)] = *f;
}

/* The INBOUND entry peer pi's client connection x is bound to, or NULL. */
static struct conn *inbound(struct dg_nic *n, struct peer_ref *p, uint32_t x)
{
	uint16_t i = p->inmap[DG_CONN_IDX(x)];
	struct conn *c = i == NO_IDX ? NULL : &n->conns[i];

	return c && c->state == CONN_INBOUND && c->remote == x &&
			       c->peer == (uint16_t)(p - n->peers)
		       ? c
		       : NULL;
}

/* Engine-to-engine control: BIND, BIND_ACK, UNBIND. */
static enum verdict peer_ctrl(struct dg_nic *n, uint32_t pi,
			      const struct msg *m)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t x = m->h.conn;
	uint16_t *slot = &p->inmap[DG_CONN_IDX(x)];
	struct dg_ctrl_msg cm;
	struct service *s;
	struct tenant *ct;
	struct flow *cf;
	struct conn *c;

	nic_ctrl_gather(&cm, m);
	switch (cm.op) {
	case PEER_BIND: {
		uint8_t st = DG_ST_OK;

		if (dg_peer_room(p->link) < 1)
			return V_RETRY;
		s = memchr(cm.service, 0, DG_NAME_MAX)
			    ? nic_svc_open(n, cm.service)
			    : NULL;
		/*
		 * An index still mapped to an older connection (its UNBIND
		 * was lost) is rebound: the peer reused it, so the old one
		 * is gone there.
		 */
		if (*slot != NO_IDX && !inbound(n, p, x)) {
			if (n->conns[*slot].state == CONN_INBOUND &&
			    n->conns[*slot].peer == pi)
				n->conns[*slot].state = CONN_FREE;
			*slot = NO_IDX;
		}
		if (!s) {
			st = DG_ST_NO_SERVICE;
		} else if (*slot == NO_IDX) {
			c = nic_conn_alloc(n);
			if (!c) {
				st = DG_ST_BUSY;
			} else {
				c->state = CONN_INBOUND;
				c->svc = (uint16_t)(s - n->services);
				c->peer = (uint16_t)pi;
				c->remote = x;
				*slot = (uint16_t)(c - n->conns);
			}
		}
		nic_peer_status(n, pi, DG_FF_CTRL, m->h.rpc_id, x, 0, st,
				PEER_BIND_ACK);
		return V_DONE;
	}
	case PEER_BIND_ACK:
		c = conn_get(n, x);
		if (!c || c->state != CONN_BINDING || c->peer != pi) {
			p->st.drops++;
			return V_DONE;
		}
		/*
		 * The host's OPEN gets its answer now. A host whose ring
		 * stays full holds the link no longer than a response
		 * (peer_response): past the bound its answer is owed, and
		 * if even that queue is full, the connection is given up
		 * (unbound at the peer) and its OPEN times out.
		 */
		ct = &n->tenants[c->tenant];
		cf = &ct->flows[c->flow];
		if (nic_rx_status(ct, c->flow, DG_FF_CTRL, c->rpc, x, 0,
				  m->h.status)) {
			if (!nic_hold_over(n, &p->hold_ns, cf))
				return V_RETRY;
			if (nic_owe_reply(n, cf, c->rpc, x, m->h.status)) {
				if (m->h.status == DG_ST_OK)
					nic_peer_unbind(n, pi, x);
				c->state = CONN_FREE;
				cf->st.dropped++;
				return V_DONE;
			}
		}
		c->state = m->h.status == DG_ST_OK ? CONN_REMOTE : CONN_FREE;
		return V_DONE;
	case PEER_UNBIND:
		c = inbound(n, p, x);
		if (c) {
			c->state = CONN_FREE;
			*slot = NO_IDX;
		}
		return V_DONE;
	case PEER_PAY_DONE:
		/* The peer has READ a payload we sent: it goes back. */
		nic_pay_peer_done(n, pi, x, m->h.rpc_id);
		return V_DONE;
	default:
		p->st.drops++;
		return V_DONE;
	}
}

/* A request from a client behind peer engine pi. */
static enum verdict peer_request(struct dg_nic *n, uint32_t pi,
				 const struct msg *m)
{
	struct peer_ref *p = &n->peers[pi];
	struct conn *c = inbound(n, p, m->h.conn);
	int st;

	if (dg_peer_room(p->link) < 1)
		return V_RETRY; /* keep room for an error answer */
	if (!c)
		st = DG_ST_NO_CONN;
	else
		st = nic_svc_deliver(n, &p->busy, c->svc, m, conn_id(n, c));
	if (st == -EAGAIN)
		return V_RETRY;
	if (st == DG_ST_BUSY)
		p->st.busy++;
	if (st)
		nic_peer_status(n, pi, DG_FF_RESP, m->h.rpc_id, m->h.conn,
				m->h.fn_id, (uint8_t)st, 0);
	return V_DONE;
}

/*
 * A response for one of our client connections through peer pi: taken
 * only when the client flow still waits for it (its call is tracked).
 */
static enum verdict peer_response(struct dg_nic *n, uint32_t pi,
				  const struct msg *m)
{
	struct conn *c = conn_get(n, m->h.conn);
	struct pending *pd;
	struct tenant *ct;
	struct flow *cf;
	int rc;

	if (!c || c->state != CONN_REMOTE || c->peer != pi) {
		n->peers[pi].st.drops++; /* closed meanwhile */
		return V_DONE;
	}
	ct = &n->tenants[c->tenant];
	pd = ct->used && !ct->dead ? nic_pend_find(&ct->flows[c->flow], &m->h)
				   : NULL;
	if (!pd) {
		n->peers[pi].st.drops++;
		return V_DONE;
	}
	/*
	 * No room: the FIFO holds it, then the link's credits stop; not past
	 * the hold bound: then the answer is dropped and the client owed
	 * DG_ST_DROPPED, and the link carries on for everyone else.
	 */
	cf = &ct->flows[c->flow];
	rc = nic_rx_put(ct, c->flow, m, m->h.conn, 0);
	if (rc == -EMSGSIZE) /* never fits: the client learns why */
		rc = nic_rx_status(ct, c->flow, DG_FF_RESP, m->h.rpc_id,
				   m->h.conn, m->h.fn_id, DG_ST_TOO_BIG);
	if (rc) {
		if (!nic_hold_over(n, &n->peers[pi].hold_ns, cf) ||
		    nic_owe(n, cf, m->h.rpc_id, m->h.conn, m->h.fn_id,
			    DG_ST_DROPPED))
			return V_RETRY;
		cf->st.dropped++;
	} else if (UNLIKELY(m->h.flags & DG_FF_TRACE) && pd->t_ns) {
		dg_hist_add(&n->trace_remote, nic_clock(n) - pd->t_ns);
	}
	nic_pend_done(cf, pd);
	return V_DONE;
}

enum verdict nic_peer_route(struct dg_nic *n, uint32_t pi, const struct msg *m)
{
	return m->h.flags & DG_FF_REQ ? peer_request(n, pi, m)
				      : peer_response(n, pi, m);
}

/* Routes whole messages from peer pi's FIFO; returns frames consumed. */
static uint32_t peer_process(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t done = 0;
	struct msg m;

	m.ring = p->fifo;
	m.mask = PEER_FIFO - 1;
	while (p->tail != p->head) {
		uint32_t cnt;
		enum verdict v;

		m.h = p->fifo[p->head & (PEER_FIFO - 1)];
		cnt = m.h.cnt;
		if (nic_frame_check(&m.h) >= 0) {
			p->st.drops++; /* a broken peer: skip the frame */
			p->head++;
			continue;
		}
		if (p->tail - p->head < cnt)
			break; /* the rest is still on its way */
		m.pos = p->head;
		if (UNLIKELY(m.h.flags & DG_FF_PAY))
			v = nic_pay_peer_rx(n, pi, &m); /* payload.c */
		else if (m.h.flags & DG_FF_CTRL)
			v = peer_ctrl(n, pi, &m);
		else if (m.h.flags & DG_FF_REQ)
			v = peer_request(n, pi, &m);
		else
			v = peer_response(n, pi, &m);
		if (v == V_RETRY)
			break;
		p->hold_ns = 0; /* whatever waited at the head went */
		p->st.rpcs_rx++;
		p->st.frames_rx += cnt;
		p->head += cnt;
		done += cnt;
	}
	return done;
}

int nic_peer_poll(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t done;
	int rc = 0;

	/*
	 * Always polled, also with a full FIFO: the peer's credits must keep
	 * coming, or answers that wait for room on the link never leave and
	 * the FIFO never drains. What the peer may send is bounded by the
	 * credits we return against the FIFO's room instead.
	 */
	if (!p->dead) {
		dg_peer_set_backlog(p->link, p->tail - p->head, PEER_FIFO);
		rc = dg_peer_poll(p->link, peer_rx, p, 0);
		if (rc >= 0 && p->overflow)
			rc = -EPROTO;
		if (rc < 0)
			nic_peer_kill(n, pi, rc);
	}
	done = peer_process(n, pi);
	if (!p->dead && p->nunbind)
		peer_unbind_flush(n, pi);
	/* Payloads READ from the peer's send area: it may reuse them. */
	if (!p->dead && p->dq_head != p->dq_tail)
		nic_pay_peer_flush(n, pi);
	if (!p->dead)
		dg_peer_set_backlog(p->link, p->tail - p->head, PEER_FIFO);
	return (int)done + (rc > 0 ? rc : 0);
}

/*
 * Peer link liveness, a few times per keepalive interval (the clock is
 * read here, once in 64 loop iterations, never per frame), and answers
 * still owed for calls through links that went down.
 */
void nic_peer_timers(struct dg_nic *n)
{
	uint64_t now = mono_us() / 1000u;
	uint32_t i;

	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];
		int rc;

		if (p->used && !p->dead && (rc = dg_peer_tick(p->link, now)))
			nic_peer_kill(n, i, rc);
	}
	if (n->remote_sweep)
		n->remote_sweep = !remote_fail(n, NO_IDX);
}
