// SPDX-License-Identifier: MIT
/*
 * payload.c - large messages: payloads that travel outside the rings.
 *
 * A host sends a large message as one descriptor frame (DG_FF_PAY) that
 * says where its payload lies in the flow's TX payload area. The engine
 * routes it as any message, and moves the payload into the receiver's RX
 * payload area before the receiver's descriptor frame is published:
 *
 *   shared memory -> shared memory   one copy, by the engine
 *   RDMA host     -> RDMA host       one READ into the staging pool, one
 *                                    WRITE out of it (then the frame, on
 *                                    the receiver's QP after the WRITE)
 *   RDMA <-> shared memory           a READ and a copy, or a copy and a
 *                                    WRITE
 *   any host      -> a peer engine   into the pool's send area (a READ, or
 *                                    a copy); the peer READs it from there
 *                                    and says PAY_DONE
 *
 * The staging pool is one allocation in two arenas: the local one
 * (payloads between this engine's hosts, and those READ from peers) and
 * the send area (payloads on their way to peers, which may READ that part
 * only, through their link's key). It is registered with every RDMA
 * tenant's and every link's protection domain, for local access only
 * (and the send area for remote READ on links).
 *
 * Transfers (struct xfer) track each payload in the pool: who holds it
 * (the source flow while it is READ and routed, the destination while it
 * is WRITten, the link while a peer may READ it) and are freed by that
 * holder, or with it when a tenant or a link goes away (after its queue
 * pair is gone, so nothing moves bytes into or out of freed memory).
 *
 * Order. A flow's messages are routed in ring order: the flow stops at a
 * large message until its payload is in the pool (one READ in flight per
 * flow), so a small call made after a large one is never delivered
 * before it. Credits: the host learns how far its TX payload area was
 * consumed (pay_head, with tx_head); the engine allocates a receiver's
 * RX payload area in RX-ring order and takes a payload back when the
 * host's rx_head passes its frame. docs/ARCHITECTURE.md, "Large messages".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"

/* Live allocations per arena (each one is a message in flight). */
#define ARENA_ENTS 1024u
#define ENT_DONE   (1ull << 63)

/* ---- arenas ----------------------------------------------------------- */

static int arena_init(struct arena *a, uint8_t *base, uint64_t size)
{
	a->base = base;
	a->size = size;
	a->head = a->tail = a->used = 0;
	a->ehead = a->etail = 0;
	a->emask = ARENA_ENTS - 1;
	a->ent_end = calloc(ARENA_ENTS, sizeof(*a->ent_end));
	return a->ent_end ? 0 : -ENOMEM;
}

/* len contiguous bytes: their offset in *off and the allocation in *ent. */
static int arena_alloc(struct arena *a, uint32_t len, uint32_t *off,
		       uint32_t *ent)
{
	uint64_t start = a->head, o;

	if (!a->size || len > a->size)
		return -EMSGSIZE;
	o = start % a->size;
	if (o + len > a->size)
		start += a->size - o; /* never across the end: one piece */
	if (start + len - a->tail > a->size || a->etail - a->ehead > a->emask)
		return -ENOSPC;
	*ent = a->etail++;
	a->ent_end[*ent & a->emask] = start + len;
	a->head = start + len;
	a->used += len;
	*off = (uint32_t)(start % a->size);
	return 0;
}

static void arena_free(struct arena *a, uint32_t ent, uint32_t len)
{
	a->ent_end[ent & a->emask] |= ENT_DONE;
	a->used -= len;
	while (a->ehead != a->etail &&
	       (a->ent_end[a->ehead & a->emask] & ENT_DONE)) {
		a->tail = a->ent_end[a->ehead & a->emask] & ~ENT_DONE;
		a->ehead++;
	}
}

/* ---- the pool and transfers -------------------------------------------- */

int nic_pool_ensure(struct dg_nic *n)
{
	uint64_t local = (uint64_t)(n->o.stage_mb ? n->o.stage_mb : 64) << 20;
	uint64_t peer = (uint64_t)(n->o.peer_stage_mb ? n->o.peer_stage_mb : 32)
			<< 20;
	uint32_t i;

	if (n->pool)
		return 0;
	n->xf = calloc(MAX_XFERS, sizeof(*n->xf));
	n->pool = aligned_alloc(4096, local + peer);
	if (!n->xf || !n->pool ||
	    arena_init(&n->ar[ARENA_LOCAL], n->pool, local) ||
	    arena_init(&n->ar[ARENA_PEER], n->pool + local, peer)) {
		nic_pool_destroy(n);
		return -ENOMEM;
	}
	n->pool_len = local + peer;
	for (i = 0; i < MAX_XFERS; i++)
		n->xf[i].next = i + 1 < MAX_XFERS ? i + 1 : NO_XFER;
	n->xf_free = 0;
	n->xf_used = 0;
	return 0;
}

void nic_pool_destroy(struct dg_nic *n)
{
	free(n->ar[ARENA_LOCAL].ent_end);
	free(n->ar[ARENA_PEER].ent_end);
	free(n->pool);
	free(n->xf);
	n->pool = NULL;
	n->xf = NULL;
	memset(n->ar, 0, sizeof(n->ar));
}

/* A transfer of len bytes in arena ar; NO_XFER when there is no room. */
static uint32_t xfer_new(struct dg_nic *n, uint8_t ar, uint32_t len, int *why)
{
	struct xfer *x;
	uint32_t i = n->xf_free, off, ent;

	*why = n->pool ? -ENOSPC : -EMSGSIZE;
	if (!n->pool || i == NO_XFER)
		return NO_XFER;
	*why = arena_alloc(&n->ar[ar], len, &off, &ent);
	if (*why)
		return NO_XFER;
	x = &n->xf[i];
	n->xf_free = x->next;
	n->xf_used++;
	*x = (struct xfer){.state = X_READY,
			   .arena = ar,
			   .tenant = NO_IDX,
			   .peer = NO_IDX,
			   .qt = NO_IDX,
			   .off = off,
			   .len = len,
			   .ent = ent,
			   .next = NO_XFER};
	return i;
}

static void unquota(struct dg_nic *n, struct xfer *x);

static void xfer_free(struct dg_nic *n, uint32_t i)
{
	struct xfer *x = &n->xf[i];

	if (x->state == X_FREE)
		return;
	unquota(n, x);
	arena_free(&n->ar[x->arena], x->ent, x->len);
	x->state = X_FREE;
	x->next = n->xf_free;
	n->xf_free = i;
	n->xf_used--;
}

static uint8_t *xfer_buf(struct dg_nic *n, const struct xfer *x)
{
	return n->ar[x->arena].base + x->off;
}

/* The pool's registration with tenant t's protection domain (RDMA). */
int nic_pay_tenant_init(struct dg_nic *n, struct tenant *t)
{
	uint32_t f;

	t->nic = n;
	for (f = 0; f < t->nflows; f++) {
		t->flows[f].px = NO_XFER;
		t->flows[f].rxp_q = NULL;
	}
	if (!t->lay.pay_size)
		return 0;
	for (f = 0; f < t->nflows; f++) {
		t->flows[f].rxp_q = calloc(RXP_Q, sizeof(*t->flows[f].rxp_q));
		if (!t->flows[f].rxp_q)
			return -ENOMEM;
	}
	if (t->direct)
		return 0;
	/*
	 * Without a pool this tenant's large messages are answered
	 * TOO_BIG; its small ones work as before.
	 */
	if (nic_pool_ensure(n) || !t->hm->ops->reg ||
	    t->hm->ops->reg(t->hm, n->pool, n->pool_len, &t->pool_mr)) {
		t->pool_mr = NULL;
		fprintf(stderr, "dagger-nic: no staging pool for a tenant: "
				"its large messages are refused\n");
	}
	return 0;
}

/*
 * Tenant tid is gone, its queue pair too (nothing moves bytes any more):
 * every transfer it held goes back to the pool.
 */
void nic_pay_tenant_free(struct dg_nic *n, uint32_t tid)
{
	struct tenant *t = &n->tenants[tid];
	uint32_t i;

	for (i = 0; n->xf && i < MAX_XFERS; i++)
		if (n->xf[i].state != X_FREE && n->xf[i].tenant == tid)
			xfer_free(n, i);
	for (i = 0; t->flows && i < t->nflows; i++)
		free(t->flows[i].rxp_q);
}

/* Link pi is gone (its queue pair too): what it held goes back. */
void nic_pay_peer_free(struct dg_nic *n, uint32_t pi)
{
	uint32_t i;

	for (i = 0; n->xf && i < MAX_XFERS; i++)
		if (n->xf[i].state != X_FREE && n->xf[i].peer == pi)
			xfer_free(n, i);
	n->peers[pi].px = NO_XFER;
}

/* A payload READ or WRITE on tenant tid's queue pair completed. */
void nic_pay_complete(struct dg_nic *n, uint32_t tid, uint32_t xi, int status)
{
	struct xfer *x;

	if (!n->xf || xi >= MAX_XFERS)
		return;
	x = &n->xf[xi];
	/* A failed one: the tenant is dead, and its transfers go with it. */
	if (status || x->tenant != tid)
		return;
	if (x->state == X_READ)
		x->state = X_READY;
	else if (x->state == X_WRITE) {
		xfer_free(n, xi);
	}
}

/* ---- into a receiver -------------------------------------------------- */

/* Payloads whose frames the host has released (its rx_head) come back. */
static void rxp_release(struct flow *fl)
{
	while (fl->rxp_qh != fl->rxp_qt) {
		uint32_t *e = fl->rxp_q[fl->rxp_qh % RXP_Q];

		/* Released when rx_head passed the frame (e[0]: past it). */
		if ((int32_t)(fl->rx_head - e[0]) < 0)
			break;
		fl->rxp_free = e[1];
		fl->rxp_qh++;
	}
}

/* Where a payload of len bytes goes in fl's RX payload area, or -ENOSPC. */
static int rxp_place(struct tenant *t, struct flow *fl, uint32_t len,
		     uint32_t *pos)
{
	uint32_t size = (uint32_t)t->lay.pay_size, p = fl->rxp_tail;
	uint32_t off = p & (size - 1);

	rxp_release(fl);
	if (off > size - len)
		p += size - off; /* one piece: the next lap */
	/* All released: the whole area is free (skipped bytes too). */
	if ((p + len - fl->rxp_free > size && fl->rxp_free != fl->rxp_tail) ||
	    fl->rxp_qt - fl->rxp_qh >= RXP_Q)
		return -ENOSPC;
	*pos = p;
	return 0;
}

int nic_pay_rx_put(struct tenant *t, uint32_t f, const struct msg *m,
		   uint32_t conn, uint8_t flags)
{
	struct dg_nic *n = t->nic;
	struct flow *fl = &t->flows[f];
	uint32_t len = m->h.len, pos, xi = NO_XFER,
		 tid = (uint32_t)(t - n->tenants);
	uint64_t dst;
	struct msg d;
	int rc, why;

	if (!t->lay.pay_size || len > t->lay.pay_size ||
	    (!t->direct && !t->pool_mr))
		return -EMSGSIZE;
	/* Room for the frame and the payload (credits, as rx_frames). */
	if (nic_rx_room(t, fl) < 1 || rxp_place(t, fl, len, &pos)) {
		nic_rx_refresh(t, f);
		if (!t->direct || nic_rx_room(t, fl) < 1 ||
		    rxp_place(t, fl, len, &pos))
			return -ENOSPC;
	}
	dst = dg_pay_rx_off(&t->lay, f) + (pos & (t->lay.pay_size - 1));
	if (t->direct) {
		/*
		 * The payload first; rx_frames' release store of the frame's
		 * stamp then orders it before the frame for the host, whose
		 * acquire load of the stamp comes before its reads.
		 */
		memcpy(t->hm->shadow + dst, m->pay, len);
	} else {
		/* Out of the pool: the bytes must be there (or copied in). */
		if (m->px != NO_XFER) {
			xi = m->px;
		} else {
			xi = xfer_new(n, ARENA_LOCAL, len, &why);
			if (xi == NO_XFER)
				return why == -EMSGSIZE ? -EMSGSIZE : -EAGAIN;
			memcpy(xfer_buf(n, &n->xf[xi]), m->pay, len);
		}
		/*
		 * The WRITE is queued on this tenant's QP before the WRITE
		 * of the frame's RX slot (tenant_flush, later): RC executes
		 * them in order, so the host finds the payload in place when
		 * it finds the frame (docs/ARCHITECTURE.md).
		 */
		rc = t->hm->ops->pwrite(t->hm, dst, len,
					xfer_buf(n, &n->xf[xi]), t->pool_mr,
					mktag(TAG_PAY, f, xi));
		if (rc) {
			if (m->px == NO_XFER)
				xfer_free(n, xi);
			return -EAGAIN;
		}
		unquota(n, &n->xf[xi]);
		n->xf[xi].state = X_WRITE;
		n->xf[xi].tenant = (uint16_t)tid;
		n->xf[xi].peer = NO_IDX;
	}
	/* The frame: the sender's header, this area's descriptor. */
	d.h = m->h;
	memset(d.h.data, 0, sizeof(d.h.data));
	memcpy(d.h.data, &pos, sizeof(pos));
	d.ring = NULL;
	d.pos = d.mask = 0;
	rx_frames(t, f, &d, conn, flags ? flags | DG_FF_PAY : 0);
	fl->rxp_q[fl->rxp_qt % RXP_Q][0] = fl->rx_tail;
	fl->rxp_q[fl->rxp_qt % RXP_Q][1] = pos + len;
	fl->rxp_qt++;
	fl->rxp_tail = pos + len;
	fl->st.pay_rx++;
	n->pay_bytes += len;
	return 0;
}

/* ---- out of a sender ---------------------------------------------------- */

/* The descriptor's position. */
static uint32_t desc_pos(const struct dg_frame *h)
{
	uint32_t pos;

	memcpy(&pos, h->data, sizeof(pos));
	return pos;
}

/*
 * A large message from (tid, f) that cannot travel: its descriptor does not
 * lie in the sender's payload area (or it has none: counted as a bad
 * descriptor), or its payload is larger than the engine can stage. Its
 * caller is answered st: a request's at once, a response's through the
 * normal routing of an empty response with that status.
 */
static enum verdict refuse(struct dg_nic *n, uint32_t tid, uint32_t f,
			   struct msg *m, uint8_t st, bool bad)
{
	struct tenant *t = &n->tenants[tid];
	enum verdict v = V_DONE;

	if (m->h.flags & DG_FF_REQ) {
		if (nic_rx_status(t, f, DG_FF_RESP, m->h.rpc_id, m->h.conn,
				  m->h.fn_id, st))
			return V_RETRY;
	} else {
		m->h.flags = DG_FF_RESP;
		m->h.len = 0;
		m->h.cnt = 1;
		m->h.status = st;
		m->px = NO_XFER;
		v = nic_tx_route(n, tid, f, m);
		if (v == V_RETRY)
			return V_RETRY;
	}
	if (bad)
		t->flows[f].st.drops[DROP_BAD_PAY]++;
	return v;
}

/*
 * Whether a message from (tid, f) with this header goes to a peer engine:
 * its payload is then READ into the send area.
 */
static uint8_t arena_for(struct dg_nic *n, uint32_t tid, uint32_t f,
			 const struct dg_frame *h)
{
	struct conn *c = conn_get(n, h->conn);

	if (!c)
		return ARENA_LOCAL;
	if (h->flags & DG_FF_REQ)
		return c->state == CONN_REMOTE && c->tenant == tid &&
				       c->flow == f
			       ? ARENA_PEER
			       : ARENA_LOCAL;
	return c->state == CONN_INBOUND ? ARENA_PEER : ARENA_LOCAL;
}

/* The source tenant's quota no longer counts x (routed, or gone). */
static void unquota(struct dg_nic *n, struct xfer *x)
{
	if (x->qt != NO_IDX) {
		n->tenants[x->qt].stage_used -= x->len;
		x->qt = NO_IDX;
	}
}

/*
 * Starts the READ of the payload of the large message m at flow f's
 * tx_tail into the pool. V_RETRY: wait for it (or for room).
 */
static enum verdict fetch(struct dg_nic *n, uint32_t tid, uint32_t f,
			  struct msg *m, uint32_t pos)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	uint8_t ar = arena_for(n, tid, f, &m->h);
	uint32_t len = m->h.len, xi;
	int why;

	if (!t->pool_mr)
		return refuse(n, tid, f, m, DG_ST_TOO_BIG, false);
	/*
	 * What a tenant's messages hold of the local arena (READ, and
	 * waiting to be routed) is at most half of it, or one message:
	 * one tenant's slow receivers cannot take every tenant's staging.
	 */
	if (ar == ARENA_LOCAL && t->stage_used &&
	    t->stage_used + len > n->ar[ARENA_LOCAL].size / 2) {
		fl->st.stalled++;
		return V_RETRY;
	}
	xi = xfer_new(n, ar, len, &why);
	if (xi == NO_XFER) {
		if (why == -EMSGSIZE) /* larger than the engine can stage */
			return refuse(n, tid, f, m, DG_ST_TOO_BIG, false);
		fl->st.stalled++;
		return V_RETRY; /* the pool is full: wait */
	}
	if (t->hm->ops->pread(t->hm,
			      dg_pay_tx_off(&t->lay, f) +
				      (pos & (t->lay.pay_size - 1)),
			      len, xfer_buf(n, &n->xf[xi]), t->pool_mr,
			      mktag(TAG_PAY, f, xi))) {
		xfer_free(n, xi);
		return V_RETRY; /* the send queue is full */
	}
	n->xf[xi].state = X_READ;
	n->xf[xi].tenant = (uint16_t)tid;
	if (ar == ARENA_LOCAL) {
		n->xf[xi].qt = (uint16_t)tid;
		t->stage_used += len;
	}
	fl->px = xi;
	fl->px_pos = m->pos;
	fl->px_h = m->h;
	return V_RETRY;
}

enum verdict nic_pay_tx(struct dg_nic *n, uint32_t tid, uint32_t f,
			struct msg *m)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	uint32_t pos = desc_pos(&m->h), len = m->h.len;
	uint64_t size = t->lay.pay_size;
	enum verdict v;

	m->px = NO_XFER;
	m->pay = NULL;
	if (fl->px != NO_XFER && fl->px_pos == m->pos) {
		/* Its READ was posted earlier: wait for it, then route it. */
		if (n->xf[fl->px].state == X_READ)
			return V_RETRY;
		/* As taken then, whatever the ring holds now. */
		m->h = fl->px_h;
		m->px = fl->px;
		m->pay = xfer_buf(n, &n->xf[fl->px]);
		pos = desc_pos(&m->h);
		len = m->h.len;
	} else if (!dg_pay_fits(pos, len, size)) {
		return refuse(n, tid, f, m, DG_ST_BAD_FRAME, true);
	} else if (t->direct) {
		/* In place: the engine copies straight out of it. */
		m->pay = t->hm->shadow + dg_pay_tx_off(&t->lay, f) +
			 (pos & (size - 1));
	} else {
		return fetch(n, tid, f, m, pos);
	}
	v = nic_tx_route(n, tid, f, m);
	if (v == V_RETRY)
		return V_RETRY; /* the bytes stay in the pool for next time */
	if (m->px != NO_XFER && n->xf[m->px].state == X_READY)
		xfer_free(n, m->px); /* copied, or the call was answered */
	fl->px = NO_XFER;
	/* The host may reuse its payload bytes (told with tx_head). */
	fl->pay_head = pos + len;
	fl->st.pay_tx++;
	return V_DONE;
}

/* ---- between engines ---------------------------------------------------- */

int nic_pay_peer_send(struct dg_nic *n, uint32_t pi, const struct msg *m,
		      uint32_t conn)
{
	struct peer_ref *p = &n->peers[pi];
	struct dg_pay_desc d = {0};
	struct dg_frame *slot;
	uint32_t xi = m->px;
	int rc, why;

	if (p->dead)
		return -ENOTCONN;
	if (dg_peer_room(p->link) < 1)
		return -EAGAIN;
	if (xi == NO_XFER || n->xf[xi].arena != ARENA_PEER) {
		/* Not in the send area yet: copied there. */
		xi = xfer_new(n, ARENA_PEER, m->h.len, &why);
		if (xi == NO_XFER)
			return why == -EMSGSIZE ? -EMSGSIZE : -EAGAIN;
		memcpy(xfer_buf(n, &n->xf[xi]), m->pay, m->h.len);
	}
	rc = dg_peer_reserve(p->link, 1, &slot);
	if (!rc) {
		*slot = m->h;
		slot->conn = conn;
		slot->stamp = 0;
		slot->csum = 0;
		d.pos = n->xf[xi].off;
		d.rsvd[0] = xi; /* echoed in its PAY_DONE */
		memcpy(slot->data, &d, sizeof(d));
		rc = dg_peer_commit(p->link, 1);
	}
	if (rc) {
		if (xi != m->px)
			xfer_free(n, xi);
		nic_peer_kill(n, pi, rc);
		return -ENOTCONN;
	}
	/* The peer READs it; it comes back with its PAY_DONE (or the link). */
	unquota(n, &n->xf[xi]);
	n->xf[xi].state = X_SENT;
	n->xf[xi].tenant = NO_IDX;
	n->xf[xi].peer = (uint16_t)pi;
	p->st.rpcs_tx++;
	p->st.frames_tx++;
	n->pay_bytes += m->h.len;
	return 0;
}

/* A READ from the peer's send area is done: tell the peer (PAY_DONE). */
static void peer_read_done(void *arg, uint32_t xi, int status)
{
	struct peer_ref *p = arg;
	struct dg_nic *n = p->nic;
	struct xfer *x;

	if (status || !n->xf || xi >= MAX_XFERS)
		return;
	x = &n->xf[xi];
	if (x->state != X_READ || x->peer != (uint16_t)(p - n->peers))
		return;
	x->state = X_READY;
	/* Room was made sure of before the READ was posted. */
	p->done_q[p->dq_tail % 16][0] = x->rpos;
	p->done_q[p->dq_tail % 16][1] = x->rtag;
	p->dq_tail++;
}

void nic_pay_peer_flush(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];

	while (p->dq_head != p->dq_tail && !p->dead &&
	       dg_peer_room(p->link) >= 1) {
		uint32_t *e = p->done_q[p->dq_head % 16];

		if (nic_peer_status(n, pi, DG_FF_CTRL, e[1], e[0], 0, 0,
				    PEER_PAY_DONE))
			break;
		p->dq_head++;
	}
}

/* The peer is done READing our transfer xi at send-area offset pos. */
void nic_pay_peer_done(struct dg_nic *n, uint32_t pi, uint32_t pos, uint32_t xi)
{
	struct xfer *x = n->xf && xi < MAX_XFERS ? &n->xf[xi] : NULL;

	if (!x || x->state != X_SENT || x->peer != pi || x->off != pos) {
		n->peers[pi].st.drops++;
		return;
	}
	xfer_free(n, xi);
}

enum verdict nic_pay_peer_rx(struct dg_nic *n, uint32_t pi, struct msg *m)
{
	struct peer_ref *p = &n->peers[pi];
	struct dg_pay_desc d;
	uint32_t xi, len = m->h.len;
	enum verdict v;
	int why, rc;

	memcpy(&d, m->h.data, sizeof(d));
	m->px = NO_XFER;
	m->pay = NULL;
	if (p->px != NO_XFER && p->px_pos == m->pos) {
		if (n->xf[p->px].state == X_READ)
			return V_RETRY;
		m->px = p->px;
		m->pay = xfer_buf(n, &n->xf[p->px]);
	} else if (d.pos > dg_peer_send_area(p->link) ||
		   len > dg_peer_send_area(p->link) - d.pos) {
		/* Not in its send area: a broken peer. Answered, counted. */
		p->st.drops++;
		m->h.flags &= (uint8_t)~DG_FF_PAY;
		m->h.len = 0;
		m->h.status = DG_ST_BAD_FRAME;
		if (m->h.flags & DG_FF_REQ)
			return nic_peer_status(n, pi, DG_FF_RESP, m->h.rpc_id,
					       m->h.conn, m->h.fn_id,
					       DG_ST_BAD_FRAME, 0) == -EAGAIN
				       ? V_RETRY
				       : V_DONE;
		return nic_peer_route(n, pi, m);
	} else {
		/* Room to tell the peer when done, then the READ. */
		if (p->dq_tail - p->dq_head >= 16)
			return V_RETRY;
		xi = xfer_new(n, ARENA_LOCAL, len, &why);
		if (xi == NO_XFER) {
			if (why != -EMSGSIZE)
				return V_RETRY;
			/* Over our staging: a clear refusal, and the peer's
			 * bytes are released at once. */
			p->done_q[p->dq_tail % 16][0] = d.pos;
			p->done_q[p->dq_tail % 16][1] = d.rsvd[0];
			p->dq_tail++;
			m->h.flags &= (uint8_t)~DG_FF_PAY;
			m->h.len = 0;
			m->h.status = DG_ST_TOO_BIG;
			if (m->h.flags & DG_FF_REQ) {
				nic_peer_status(n, pi, DG_FF_RESP, m->h.rpc_id,
						m->h.conn, m->h.fn_id,
						DG_ST_TOO_BIG, 0);
				return V_DONE;
			}
			return nic_peer_route(n, pi, m);
		}
		n->xf[xi].rpos = d.pos;
		n->xf[xi].rtag = d.rsvd[0];
		rc = dg_peer_read(p->link, xfer_buf(n, &n->xf[xi]), len, d.pos,
				  xi);
		if (rc) {
			xfer_free(n, xi);
			if (rc != -EAGAIN)
				nic_peer_kill(n, pi, rc);
			return V_RETRY;
		}
		n->xf[xi].state = X_READ;
		n->xf[xi].peer = (uint16_t)pi;
		p->px = xi;
		p->px_pos = m->pos;
		return V_RETRY;
	}
	v = nic_peer_route(n, pi, m);
	if (v == V_RETRY)
		return V_RETRY;
	if (m->px != NO_XFER && n->xf[m->px].state == X_READY)
		xfer_free(n, m->px);
	p->px = NO_XFER;
	return V_DONE;
}

void nic_peer_bulk(struct dg_nic *n, struct dg_peer_opts *po)
{
	/* Without a pool the link takes no large messages (TOO_BIG). */
	if (nic_pool_ensure(n))
		return;
	po->bulk = n->pool;
	po->bulk_len = n->pool_len;
	po->send_off = n->ar[ARENA_LOCAL].size;
	po->send_len = n->ar[ARENA_PEER].size;
}

void nic_pay_peer_init(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];

	p->nic = n;
	p->px = NO_XFER;
	dg_peer_set_read_cb(p->link, peer_read_done, p);
}
